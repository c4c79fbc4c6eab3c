// The run log: lines logged before a run's folder exists reach its train.log
// (begin_log_capture, add_log_file, remove_log_files in core/include/vaelab/log.hpp).
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <unistd.h>

#include <vaelab/log.hpp>

namespace fs = std::filesystem;
using namespace vaelab;

namespace {

fs::path fresh_file(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("vaelab-test-log-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const fs::path file = dir / name;
  fs::remove(file);
  return file;
}

std::string slurp(const fs::path& file) {
  std::ifstream in(file);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

TEST_CASE("a log file receives the captured lines first, then the new ones, in order", "[log]") {
  const fs::path file = fresh_file("run.log");
  logger().info("not captured: before the capture");
  begin_log_capture();
  logger().info("captured line one");
  logger().warn("captured line two");
  add_log_file(file);
  logger().info("written directly");
  remove_log_files();
  logger().info("after the file was removed");

  const std::string text = slurp(file);
  REQUIRE(text.find("not captured") == std::string::npos);
  REQUIRE(text.find("after the file was removed") == std::string::npos);
  const size_t one = text.find("captured line one");
  const size_t two = text.find("captured line two");
  const size_t direct = text.find("written directly");
  REQUIRE(one != std::string::npos);
  REQUIRE(two != std::string::npos);
  REQUIRE(direct != std::string::npos);
  REQUIRE(one < two);
  REQUIRE(two < direct);
  REQUIRE(text.find(" warning] captured line two") != std::string::npos);  // the file's own format
}

TEST_CASE("a capture ended without a file leaves nothing for the next one", "[log]") {
  const fs::path file = fresh_file("next.log");
  {
    const LogCaptureScope scope;
    logger().info("a run that failed before its folder existed");
  }
  begin_log_capture();
  logger().info("the next run's first line");
  add_log_file(file);
  remove_log_files();
  const std::string text = slurp(file);
  REQUIRE(text.find("failed before its folder") == std::string::npos);
  REQUIRE(text.find("the next run's first line") != std::string::npos);
}
