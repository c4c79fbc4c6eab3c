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

/// Adds a file sink (every line at the current level) to the host logger, e.g. a run's log.
void add_log_file(const std::filesystem::path& file);

/// Removes the file sinks added by add_log_file().
void remove_log_files();

/// The host description handed to every plugin's create(): ABI, fingerprint, log callback.
const vl_host* host_api();

}  // namespace vaelab
