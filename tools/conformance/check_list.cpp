#include "check_list.hpp"

#include <chrono>
#include <exception>

namespace vaelab::conformance {

bool CheckList::run(const std::string& name, const std::function<std::string()>& check,
                    const std::vector<std::string>& needs) {
  seen_.insert(name);
  if (skipped_.count(name) != 0) {
    skip(name, "skipped on the command line (--skip " + name + ")");
    return false;
  }
  for (const auto& need : needs) {
    if (!passed(need)) {
      skip(name, "needs " + need + ", which did not pass");
      return false;
    }
  }
  CheckResult result;
  result.plugin = plugin_;
  result.name = name;
  const auto start = std::chrono::steady_clock::now();
  try {
    result.detail = check();
    result.outcome = Outcome::pass;
  } catch (const std::exception& e) {
    result.detail = e.what();
    result.outcome = Outcome::fail;
  } catch (...) {
    result.detail = "threw something that is not a std::exception";
    result.outcome = Outcome::fail;
  }
  result.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  // One line per check in the table (a LibTorch error's backtrace follows its first line).
  result.detail = result.detail.substr(0, result.detail.find_first_of("\r\n"));
  results_.push_back(result);
  return result.outcome == Outcome::pass;
}

void CheckList::skip(const std::string& name, const std::string& reason) {
  seen_.insert(name);
  CheckResult result;
  result.plugin = plugin_;
  result.name = name;
  result.outcome = Outcome::skip;
  result.detail = reason;
  results_.push_back(result);
}

bool CheckList::passed(const std::string& name) const {
  for (const auto& r : results_) {
    if (r.plugin == plugin_ && r.name == name) return r.outcome == Outcome::pass;
  }
  return false;
}

int CheckList::count(Outcome outcome) const {
  int n = 0;
  for (const auto& r : results_) n += r.outcome == outcome ? 1 : 0;
  return n;
}

std::vector<std::string> CheckList::unknown_skips() const {
  std::vector<std::string> unknown;
  for (const auto& s : skipped_) {
    if (seen_.count(s) == 0) unknown.push_back(s);
  }
  return unknown;
}

std::string outcome_name(Outcome outcome) {
  switch (outcome) {
    case Outcome::pass: return "pass";
    case Outcome::fail: return "FAIL";
    case Outcome::skip: return "skip";
  }
  return "?";
}

}  // namespace vaelab::conformance
