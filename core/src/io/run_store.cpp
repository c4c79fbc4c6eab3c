// Results: the run folder (config.toml, metrics.jsonl, summary.json, checkpoints/, train.log).
#include <vaelab/io/run_store.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <nlohmann/json.hpp>

#include <vaelab/error.hpp>

namespace fs = std::filesystem;

namespace vaelab {

namespace {

fs::path temporary_of(const fs::path& file) { return file.string() + ".tmp"; }

/// Opens the temporary file beside `file` for writing; throws naming it.
int open_temporary(const fs::path& file) {
  std::error_code ec;
  if (file.has_parent_path()) fs::create_directories(file.parent_path(), ec);
  const fs::path tmp = temporary_of(file);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw Error(tmp.string() + ": cannot write: " + std::strerror(errno));
  return fd;
}

}  // namespace

void check_writable(const fs::path& file) {
  const int fd = open_temporary(file);
  ::close(fd);
  std::error_code ec;
  fs::remove(temporary_of(file), ec);
}

void write_file_atomic(const fs::path& file, const std::string& content) {
  const fs::path tmp = temporary_of(file);
  const int fd = open_temporary(file);
  const auto fail = [&](const std::string& message) {
    ::close(fd);
    std::error_code ec;
    fs::remove(tmp, ec);
    throw Error(message);
  };
  size_t written = 0;
  while (written < content.size()) {
    const ssize_t n = ::write(fd, content.data() + written, content.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail(tmp.string() + ": write failed after " + std::to_string(written) + " bytes: " + std::strerror(errno));
    }
    written += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) fail(tmp.string() + ": cannot flush to disk: " + std::strerror(errno));
  if (::close(fd) != 0) {
    const std::string reason = std::strerror(errno);
    std::error_code ec;
    fs::remove(tmp, ec);
    throw Error(tmp.string() + ": write failed: " + reason);
  }
  std::error_code ec;
  fs::rename(tmp, file, ec);
  if (ec) {
    std::error_code ignored;
    fs::remove(tmp, ignored);
    throw Error(file.string() + ": cannot move the new file into place: " + ec.message());
  }
  // The rename itself is made durable by flushing the folder.
  const fs::path folder = file.has_parent_path() ? file.parent_path() : fs::path(".");
  const int dir_fd = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    ::fsync(dir_fd);
    ::close(dir_fd);
  }
}

RunStore RunStore::create(const fs::path& dir) {
  std::error_code ec;
  if (fs::exists(dir / "config.toml", ec) || fs::exists(dir / "metrics.jsonl", ec)) {
    throw Error(dir.string() + ": already holds a run; choose another --out");
  }
  if (fs::exists(dir, ec) && !fs::is_directory(dir, ec)) {
    throw Error(dir.string() + ": exists and is not a folder");
  }
  fs::create_directories(dir / "checkpoints", ec);
  if (ec) throw Error(dir.string() + ": cannot create the run folder: " + ec.message());
  RunStore store(dir);
  store.metrics_.open(store.metrics_path(), std::ios::out | std::ios::app);
  if (!store.metrics_) throw Error(store.metrics_path().string() + ": cannot open for writing");
  return store;
}

RunStore RunStore::open(const fs::path& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw Error(dir.string() + ": no such run folder");
  if (!fs::exists(dir / "config.toml", ec)) {
    throw Error(dir.string() + ": not a run folder (no config.toml)");
  }
  return RunStore(dir);
}

RunStore RunStore::resume(const fs::path& dir, const nlohmann::json& records) {
  RunStore store = open(dir);
  check_writable(store.checkpoint_path("last"));
  std::string text;
  if (!records.is_array()) throw Error(dir.string() + ": the checkpoint's metrics records are not a list");
  for (const auto& record : records) text += record.dump() + "\n";
  write_file_atomic(store.metrics_path(), text);
  store.metrics_.open(store.metrics_path(), std::ios::out | std::ios::app);
  if (!store.metrics_) throw Error(store.metrics_path().string() + ": cannot open for writing");
  return store;
}

void RunStore::write_config(const std::string& toml_text) const {
  write_file_atomic(config_path(), toml_text);
}

void RunStore::append_metrics(const nlohmann::json& record) {
  if (!metrics_.is_open()) {
    metrics_.open(metrics_path(), std::ios::out | std::ios::app);
  }
  metrics_ << record.dump() << '\n';
  metrics_.flush();
  if (!metrics_) throw Error(metrics_path().string() + ": write failed");
}

void RunStore::write_summary(const nlohmann::json& summary) const {
  write_file_atomic(summary_path(), summary.dump(2) + "\n");
}

}  // namespace vaelab
