#include <vaelab/log.hpp>

#include <algorithm>
#include <fstream>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/ringbuffer_sink.h>
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
std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt>& capture_sink() {
  static std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> sink;
  return sink;
}

constexpr const char* kFilePattern = "[%Y-%m-%d %H:%M:%S.%e %l] %v";
constexpr size_t kCaptureLines = 10000;

/// Detaches the capture sink (the caller holds file_sinks_mutex()); returns what it kept.
std::vector<std::string> end_capture() {
  auto& capture = capture_sink();
  if (!capture) return {};
  auto& sinks = logger().sinks();
  sinks.erase(std::remove(sinks.begin(), sinks.end(), capture), sinks.end());
  std::vector<std::string> lines = capture->last_formatted();
  capture.reset();
  return lines;
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

void begin_log_capture() {
  const std::lock_guard<std::mutex> lock(file_sinks_mutex());
  end_capture();
  capture_sink() = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(kCaptureLines);
  capture_sink()->set_pattern(kFilePattern);
  logger().sinks().push_back(capture_sink());
}

void add_log_file(const std::filesystem::path& file) {
  const std::lock_guard<std::mutex> lock(file_sinks_mutex());
  const std::vector<std::string> captured = end_capture();
  if (!captured.empty()) {
    std::ofstream out(file, std::ios::app | std::ios::binary);
    for (const auto& line : captured) out << line;
    if (!out) throw Error(file.string() + ": cannot write the log");
  }
  auto sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(file.string());
  sink->set_pattern(kFilePattern);
  logger().sinks().push_back(sink);
  file_sinks().push_back(sink);
}

void remove_log_files() {
  const std::lock_guard<std::mutex> lock(file_sinks_mutex());
  end_capture();
  auto& sinks = logger().sinks();
  for (const auto& sink : file_sinks()) {
    sink->flush();
    sinks.erase(std::remove(sinks.begin(), sinks.end(), sink), sinks.end());
  }
  file_sinks().clear();
}

const vl_host* host_api() { return &host_struct(); }

}  // namespace vaelab
