#pragma once

#include <stdexcept>
#include <string>

namespace vaelab {

/// A user-facing error: one line that names the file, key, plugin or byte offset at fault.
/// The CLI prints `what()` and exits non-zero; no stack dump.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message);
  ~Error() override;
};

/// A config value or file is wrong. The message starts with `file:line:col` or the key path.
class ConfigError : public Error {
 public:
  using Error::Error;
  ~ConfigError() override;
};

}  // namespace vaelab
