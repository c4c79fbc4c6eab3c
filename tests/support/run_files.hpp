#pragma once
// Shared by the end-to-end tests: a run folder's metrics.jsonl, and the `vaelab` command
// (VAELAB_TEST_EXE) started in the background, to be killed mid-run.

#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace vaelab::testing {

/// The run's evaluation records, one JSON object per line of metrics.jsonl.
inline std::vector<nlohmann::json> metrics_of(const std::filesystem::path& run) {
  std::vector<nlohmann::json> out;
  std::ifstream in(run / "metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  }
  return out;
}

/// Starts `vaelab ARGS...` in a child process with its output discarded; returns its pid.
inline pid_t start_vaelab(const std::vector<std::string>& args) {
  const pid_t pid = fork();
  if (pid == 0) {
    const int null_fd = ::open("/dev/null", O_WRONLY);
    dup2(null_fd, 1);
    dup2(null_fd, 2);
    std::vector<char*> argv = {const_cast<char*>(VAELAB_TEST_EXE)};
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(VAELAB_TEST_EXE, argv.data());
    _exit(127);
  }
  return pid;
}

}  // namespace vaelab::testing
