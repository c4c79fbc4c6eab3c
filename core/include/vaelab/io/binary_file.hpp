#pragma once
// Reading binary files with errors that say where (SDK, no torch): what every reader of a file
// format here shares, the data sources' (idx, npy, cifar10, image-folder), the sample pool's and
// the compressed container's.

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>

namespace vaelab {

/// Throws vaelab::Error "<path>: byte <offset>: <message>".
[[noreturn]] void fail_at(const std::string& path, uint64_t offset, const std::string& message);

/// Closes a C file when its owner goes.
struct FileCloser {
  void operator()(std::FILE* file) const noexcept { std::fclose(file); }
};

/// A file opened for binary reading, and its size in bytes.
struct OpenedFile {
  std::unique_ptr<std::FILE, FileCloser> file;
  uint64_t size = 0;
};

/// Opens `path` for binary reading and measures it, positioned at its start. A folder ("<path>:
/// is a folder, not <what>"), or a file that cannot be opened, sought or sized, is a
/// vaelab::Error naming the path and the system's reason.
OpenedFile open_for_reading(const std::string& path, const std::string& what);

/// A CRC-32 (zlib's; the low 32 bits of `crc`) as 8 lowercase hex digits, as file digests record it.
std::string crc32_hex(uint64_t crc);

}  // namespace vaelab
