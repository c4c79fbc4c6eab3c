#pragma once
// Shared by the end-to-end tests: runs the `vaelab` command (VAELAB_TEST_EXE) in a scratch folder
// of this test process and captures its exit code and both streams.

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

namespace vaelab::testing {

struct CliResult {
  int code = -1;
  std::string out;
  std::string err;
};

/// A fresh folder under the temporary directory, one per test process, named after `prefix`.
inline std::filesystem::path scratch_dir(const std::string& prefix) {
  static const std::filesystem::path dir = [&prefix] {
    const std::filesystem::path d =
        std::filesystem::temp_directory_path() / (prefix + "-" + std::to_string(::getpid()));
    std::filesystem::remove_all(d);
    std::filesystem::create_directories(d);
    return d;
  }();
  return dir;
}

inline std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

/// Runs `vaelab ARGS` (shell words) with an optional environment prefix; stdout and stderr go
/// through files in `dir`.
inline CliResult run_cli(const std::filesystem::path& dir, const std::string& args,
                         const std::string& env = "") {
  static int counter = 0;
  const std::filesystem::path out = dir / ("out" + std::to_string(counter) + ".txt");
  const std::filesystem::path err = dir / ("err" + std::to_string(counter++) + ".txt");
  const std::string cmd = env + " '" VAELAB_TEST_EXE "' " + args + " >'" + out.string() + "' 2>'" +
                          err.string() + "' </dev/null";
  const int status = std::system(cmd.c_str());
  CliResult r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = slurp(out);
  r.err = slurp(err);
  return r;
}

}  // namespace vaelab::testing
