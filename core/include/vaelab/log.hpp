#pragma once

#include <filesystem>
#include <string_view>

#include <spdlog/logger.h>

#include <vaelab/abi/plugin_abi.h>

namespace vaelab {

/// The host's logger: the one spdlog logger of the process. Plugins reach it through the host
/// callback in vl_host (see plugin.hpp), never through their own spdlog registry.
spdlog::logger& logger();

/// Sets the level by name ("trace", "debug", "info", "warn", "error", "off"); throws
/// vaelab::Error for any other word.
void set_log_level(std::string_view level);

/// From now on keeps the lines logged in memory (up to 10,000, the newest), so that the next
/// add_log_file() writes them first: a run's train.log then also holds the lines logged before
/// its folder existed. Ended by add_log_file() and remove_log_files().
void begin_log_capture();

/// Adds a file sink (every line at the current level) to the host logger, e.g. a run's log,
/// after appending the lines kept since begin_log_capture(), if it was called.
void add_log_file(const std::filesystem::path& file);

/// Removes the file sinks added by add_log_file() and ends a capture.
void remove_log_files();

/// begin_log_capture() for as long as it lives; remove_log_files() when it goes.
class LogCaptureScope {
 public:
  LogCaptureScope() { begin_log_capture(); }
  ~LogCaptureScope() { remove_log_files(); }
  LogCaptureScope(const LogCaptureScope&) = delete;
  LogCaptureScope& operator=(const LogCaptureScope&) = delete;
};

/// The host description handed to every plugin's create(): ABI, fingerprint, log callback.
const vl_host* host_api();

}  // namespace vaelab
