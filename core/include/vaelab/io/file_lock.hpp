#pragma once
// An exclusive advisory lock (flock) on a file, held for the lifetime of the object: how processes
// that share a cache (auto's backend measurement, the generator check's feature networks) take
// turns. Header-only, part of vaelab::core.

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <filesystem>

namespace vaelab {

/// Created (0644) if missing. held() is false when the file cannot be opened or locked; callers
/// then go on without the lock.
class FileLock {
 public:
  explicit FileLock(const std::filesystem::path& file)
      : fd_(::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644)) {
    if (fd_ >= 0 && ::flock(fd_, LOCK_EX) != 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }
  ~FileLock() {
    if (fd_ >= 0) ::close(fd_);  // closing releases the lock
  }
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;
  bool held() const { return fd_ >= 0; }

 private:
  int fd_;
};

}  // namespace vaelab
