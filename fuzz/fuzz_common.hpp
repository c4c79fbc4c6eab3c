#pragma once
// Shared by the fuzz targets: the input written to a file (the readers read files), and the check
// every reader's refusal must pass. A refusal is a vaelab::Error whose message is one line naming
// the file; anything else escaping a reader (another exception, a sanitizer report, a timeout or
// an allocation beyond the fuzzer's limit) is a finding.
//
// VAELAB_FUZZ_VERBOSE=1 prints each refusal to stderr: handy to see why a seed is refused, and to
// read the message a reproducer gets.

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>

#include <vaelab/error.hpp>

namespace vaelab::fuzz {

/// The fuzz input as a file, rewritten for each input: one file per process and target.
class InputFile {
 public:
  explicit InputFile(const std::string& tag, const std::string& suffix = "")
      : path_((std::filesystem::temp_directory_path() /
               ("vaelab-fuzz-" + tag + "-" + std::to_string(::getpid()) + suffix))
                  .string()) {}
  ~InputFile() { std::remove(path_.c_str()); }
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;

  const std::string& write(const uint8_t* data, size_t size) const {
    std::FILE* f = std::fopen(path_.c_str(), "wb");
    if (f == nullptr || (size > 0 && std::fwrite(data, 1, size, f) != size)) {
      std::fprintf(stderr, "fuzz harness: cannot write %s\n", path_.c_str());
      std::abort();
    }
    std::fclose(f);
    return path_;
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

inline bool verbose() {
  static const bool on = [] {
    const char* v = std::getenv("VAELAB_FUZZ_VERBOSE");
    return v != nullptr && std::string_view(v) == "1";
  }();
  return on;
}

/// Aborts (a finding) unless `error` is one line that contains `must_name` (when not empty).
inline void check_refusal(const Error& error, std::string_view must_name = {}) {
  const std::string_view message = error.what();
  if (verbose()) std::fprintf(stderr, "refused: %s\n", error.what());
  if (message.empty()) {
    std::fprintf(stderr, "finding: an empty error message\n");
    std::abort();
  }
  if (message.find('\n') != std::string_view::npos) {
    std::fprintf(stderr, "finding: the error is not one line:\n%s\n", error.what());
    std::abort();
  }
  if (!must_name.empty() && message.find(must_name) == std::string_view::npos) {
    std::fprintf(stderr, "finding: the error does not name %.*s:\n%s\n",
                 static_cast<int>(must_name.size()), must_name.data(), error.what());
    std::abort();
  }
}

}  // namespace vaelab::fuzz
