#pragma once
// The results of one conformance run: named checks, each passed, failed or skipped, with one line
// of detail. Torch-free.

#include <functional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace vaelab::conformance {

/// Thrown by a check that found the plugin wrong; the message is the table's detail column.
class CheckFailed : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Throws CheckFailed(message) unless `ok`.
inline void require(bool ok, const std::string& message) {
  if (!ok) throw CheckFailed(message);
}

enum class Outcome { pass, fail, skip };

struct CheckResult {
  std::string plugin;  ///< "kind name" of the descriptor checked
  std::string name;    ///< e.g. "model.decode_shape"
  Outcome outcome = Outcome::skip;
  std::string detail;
  double seconds = 0;
};

/// Runs checks in order and records what they found. A check returns a detail line on success and
/// throws on failure (any exception fails it, with its message). A check whose prerequisite
/// failed or that the user skipped is recorded as skipped, with the reason.
class CheckList {
 public:
  explicit CheckList(std::set<std::string> skipped) : skipped_(std::move(skipped)) {}

  /// The descriptor the next checks belong to.
  void set_plugin(std::string plugin) { plugin_ = std::move(plugin); }

  /// Runs `check` unless skipped by the user or unless one of `needs` did not pass. Returns true
  /// when it passed.
  bool run(const std::string& name, const std::function<std::string()>& check,
           const std::vector<std::string>& needs = {});

  /// Records a check that did not run.
  void skip(const std::string& name, const std::string& reason);

  /// True when the named check (of the current plugin) ran and passed.
  bool passed(const std::string& name) const;

  const std::vector<CheckResult>& results() const { return results_; }
  int count(Outcome outcome) const;
  /// Every check name the user asked to skip that no plugin has: a typo the run should not hide.
  std::vector<std::string> unknown_skips() const;

 private:
  std::set<std::string> skipped_;
  std::set<std::string> seen_;
  std::string plugin_;
  std::vector<CheckResult> results_;
};

std::string outcome_name(Outcome outcome);

}  // namespace vaelab::conformance
