#include "pool_generator.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include <vaelab/error.hpp>

namespace fs = std::filesystem;

namespace vaelab::plugins {
namespace {

std::unique_ptr<PoolReader> open_pool(const std::string& path) {
  auto pool = std::make_unique<PoolReader>(path);
  if (pool->count() == 0)
    throw Error(path + ": the pool holds no images; gen-pool cannot serve it");
  return pool;
}

/// Temporary file, fsync, rename: readers see the old file or the new one.
void write_atomic(const fs::path& file, const std::string& content) {
  const std::string tmp = file.string() + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw Error(tmp + ": cannot write: " + std::strerror(errno));
  size_t done = 0;
  while (done < content.size()) {
    const ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const std::string reason = std::strerror(errno);
      ::close(fd);
      ::unlink(tmp.c_str());
      throw Error(tmp + ": write failed: " + reason);
    }
    done += static_cast<size_t>(n);
  }
  const bool synced = ::fsync(fd) == 0;
  const bool closed = ::close(fd) == 0;
  if (!synced || !closed || ::rename(tmp.c_str(), file.c_str()) != 0) {
    const std::string reason = std::strerror(errno);
    ::unlink(tmp.c_str());
    throw Error(file.string() + ": cannot write: " + reason);
  }
}

}  // namespace

PoolGenerator::PoolGenerator(const ConfigTable& config) {
  const std::string path = config.get_string("path");
  if (!path.empty()) pool_ = open_pool(path);
}

void PoolGenerator::attach(Backend& /*backend*/) {}

void PoolGenerator::fit(const ImageSet& /*train*/, const FitBudget& /*budget*/,
                        const FitProgress& /*progress*/) {
  throw Error(
      "gen-pool serves a pool that is already sampled and is not fitted: use the pool directly "
      "(generator.pool = \"POOL\" in a run config, or `vaelab generator check POOL`)");
}

const PoolReader& PoolGenerator::pool() const {
  if (pool_ == nullptr) {
    throw Error("gen-pool has no pool: set generator.config.path, or load a folder it saved");
  }
  return *pool_;
}

void PoolGenerator::save(const std::string& directory) const {
  const PoolReader& p = pool();
  const nlohmann::json saved = {
      {"path", fs::absolute(p.path()).lexically_normal().string()},
      {"checksum", p.checksum()},
      {"count", p.count()},
      {"image_shape", {p.header().channels, p.header().height, p.header().width}},
      {"generator", p.header().generator},
      {"generator_version", p.header().generator_version},
  };
  write_atomic(fs::path(directory) / kSavedFile, saved.dump(2) + "\n");
}

void PoolGenerator::load(const std::string& directory) {
  const fs::path file = fs::path(directory) / kSavedFile;
  std::ifstream in(file);
  if (!in) throw Error(file.string() + ": cannot read (not a folder gen-pool saved)");
  std::stringstream text;
  text << in.rdbuf();
  std::string path;
  std::string checksum;
  try {
    const nlohmann::json saved = nlohmann::json::parse(text.str());
    path = saved.at("path").get<std::string>();
    checksum = saved.at("checksum").get<std::string>();
  } catch (const nlohmann::json::exception& e) {
    throw Error(file.string() + ": not a gen-pool save file: " + e.what());
  }
  std::unique_ptr<PoolReader> opened = open_pool(path);
  if (opened->checksum() != checksum) {
    throw Error(path + ": the pool changed since " + file.string() + " was written (checksum " +
                opened->checksum() + ", saved " + checksum + ")");
  }
  pool_ = std::move(opened);
}

ImageSet PoolGenerator::sample(int64_t n, uint64_t first_seed) {
  const PoolReader& p = pool();
  if (n < 0) throw Error("gen-pool: cannot sample " + std::to_string(n) + " images");
  const auto count = static_cast<uint64_t>(p.count());
  const int64_t bytes = p.image_bytes();
  ImageSet out;
  out.count = n;
  out.channels = p.header().channels;
  out.height = p.header().height;
  out.width = p.header().width;
  out.pixels.resize(static_cast<size_t>(n * bytes));
  out.labels.assign(static_cast<size_t>(n), -1);
  // (first_seed + i) mod count without overflowing first_seed + i.
  uint64_t index = first_seed % count;
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t* image = p.image(static_cast<int64_t>(index));
    std::copy_n(image, bytes, out.pixels.begin() + i * bytes);
    index = index + 1 == count ? 0 : index + 1;
  }
  return out;
}

std::string PoolGenerator::describe() const {
  nlohmann::json d = {{"what", "gen-pool: images served from a sample pool"},
                      {"parameters", 0},
                      {"fit_steps", 0},
                      {"fit_seconds", 0.0}};
  if (pool_ != nullptr) {
    d["what"] = "gen-pool: " + std::to_string(pool_->count()) + " images of " +
                std::to_string(pool_->header().channels) + "x" +
                std::to_string(pool_->header().height) + "x" +
                std::to_string(pool_->header().width) + " from " + pool_->header().generator + " " +
                pool_->header().generator_version;
    d["pool"] = fs::absolute(pool_->path()).lexically_normal().string();
    d["pool_checksum"] = pool_->checksum();
    d["pool_count"] = pool_->count();
    d["pool_generator"] = pool_->header().generator;
    d["pool_generator_version"] = pool_->header().generator_version;
    d["pool_config_hash"] = pool_->header().config_hash;
  }
  return d.dump();
}

}  // namespace vaelab::plugins
