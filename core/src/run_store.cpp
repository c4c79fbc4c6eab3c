#include <vaelab/io/run_store.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <nlohmann/json.hpp>

#include <vaelab/error.hpp>

namespace fs = std::filesystem;

namespace vaelab {

void write_file_atomic(const fs::path& file, const std::string& content) {
  std::error_code ec;
  if (file.has_parent_path()) fs::create_directories(file.parent_path(), ec);
  const fs::path tmp = file.string() + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw Error(tmp.string() + ": cannot write: " + std::strerror(errno));
  size_t written = 0;
  while (written < content.size()) {
    const ssize_t n = ::write(fd, content.data() + written, content.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      const std::string reason = std::strerror(errno);
      ::close(fd);
      throw Error(tmp.string() + ": write failed after " + std::to_string(written) +
                  " bytes: " + reason);
    }
    written += static_cast<size_t>(n);
  }
  ::fsync(fd);
  ::close(fd);
  fs::rename(tmp, file, ec);
  if (ec) throw Error(file.string() + ": cannot move the new file into place: " + ec.message());
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
