#include <vaelab/log.hpp>

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <vaelab/build_info.h>
#include <vaelab/error.hpp>
#include <vaelab/log_levels.hpp>

namespace vaelab {
namespace {

std::shared_ptr<spdlog::logger> make_host_logger() {
  auto sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  auto made = std::make_shared<spdlog::logger>("vaelab", sink);
  made->set_pattern("%^[%H:%M:%S %l]%$ %v");
  made->set_level(spdlog::level::info);
  made->flush_on(spdlog::level::info);
  return made;
}

void host_log(void* /*context*/, vl_log_level level, const char* plugin, const char* message) {
  logger().log(to_spdlog_level(level), "[{}] {}", plugin != nullptr ? plugin : "plugin",
               message != nullptr ? message : "");
}

vl_host& host_struct() {
  static vl_host host = {sizeof(vl_host),   VL_ABI_VERSION_MAJOR, VL_ABI_VERSION_MINOR,
                         VAELAB_BUILD_FINGERPRINT, VAELAB_VERSION,  VL_LOG_LEVEL_INFO,
                         nullptr,           &host_log};
  return host;
}

std::mutex& file_sinks_mutex() {
  static std::mutex m;
  return m;
}
std::vector<spdlog::sink_ptr>& file_sinks() {
  static std::vector<spdlog::sink_ptr> sinks;
  return sinks;
}

}  // namespace

spdlog::logger& logger() {
  static const std::shared_ptr<spdlog::logger> instance = make_host_logger();
  return *instance;
}

void set_log_level(std::string_view level) {
  const auto parsed = spdlog::level::from_str(std::string(level));
  if (parsed == spdlog::level::off && level != "off") {
    throw Error("unknown log level '" + std::string(level) +
                "' (expected trace, debug, info, warn, error, critical or off)");
  }
  logger().set_level(parsed);
  host_struct().log_level = to_vl_level(parsed);
}

void add_log_file(const std::filesystem::path& file) {
  auto sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(file.string());
  sink->set_pattern("[%Y-%m-%d %H:%M:%S.%e %l] %v");
  const std::lock_guard<std::mutex> lock(file_sinks_mutex());
  logger().sinks().push_back(sink);
  file_sinks().push_back(sink);
}

void remove_log_files() {
  const std::lock_guard<std::mutex> lock(file_sinks_mutex());
  auto& sinks = logger().sinks();
  for (const auto& sink : file_sinks()) {
    sink->flush();
    sinks.erase(std::remove(sinks.begin(), sinks.end(), sink), sinks.end());
  }
  file_sinks().clear();
}

const vl_host* host_api() { return &host_struct(); }

}  // namespace vaelab
