#pragma once
// Shared by the plugin tests: a scratch folder of this process's own (ctest runs the test cases
// as parallel processes), removed when the process exits.

#include <unistd.h>

#include <filesystem>
#include <string>
#include <system_error>

namespace vaelab::testing {

inline std::filesystem::path scratch_folder(const std::string& prefix) {
  struct Root {
    std::filesystem::path dir;
    ~Root() {
      std::error_code ignored;
      std::filesystem::remove_all(dir, ignored);
    }
  };
  static const Root root = [&prefix] {
    Root r{std::filesystem::temp_directory_path() / (prefix + "-" + std::to_string(::getpid()))};
    std::filesystem::create_directories(r.dir);
    return r;
  }();
  return root.dir;
}

}  // namespace vaelab::testing
