#include "idx_reader.hpp"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>

#include <vaelab/io/binary_file.hpp>
#include <vaelab/error.hpp>

namespace vaelab::plugins {
namespace {

constexpr uint8_t kUnsignedByteType = 0x08;
constexpr int kMaxDims = 4;
// Data is read in chunks of this size; the buffer grows only as bytes actually arrive.
constexpr size_t kChunkBytes = size_t{4} << 20;
// How many bytes past the declared end are looked at to report trailing data.
constexpr size_t kTrailingProbeBytes = 4096;

std::string hex(uint64_t value, int digits) {
  char text[32];
  std::snprintf(text, sizeof text, "0x%0*llx", digits, static_cast<unsigned long long>(value));
  return text;
}

/// Sequential reads from a raw or gzip-compressed file, counting decoded bytes.
class ByteStream {
 public:
  explicit ByteStream(const std::string& path) : path_(path) {
    file_ = std::fopen(path.c_str(), "rb");
    if (file_ == nullptr) throw Error(path + ": cannot open: " + std::strerror(errno));
    uint8_t magic[2] = {0, 0};
    const size_t got = std::fread(magic, 1, sizeof magic, file_);
    if (got == sizeof magic && magic[0] == 0x1f && magic[1] == 0x8b) {
      std::fclose(file_);
      file_ = nullptr;
      gz_ = gzopen(path.c_str(), "rb");
      if (gz_ == nullptr) throw Error(path + ": cannot open: " + std::strerror(errno));
      gzbuffer(gz_, 1u << 18);
    } else if (std::ferror(file_) != 0) {
      const int error = errno;
      std::fclose(file_);
      throw Error(path + ": cannot read: " + std::strerror(error));
    } else {
      std::rewind(file_);
    }
  }
  ~ByteStream() {
    if (file_ != nullptr) std::fclose(file_);
    if (gz_ != nullptr) gzclose(gz_);
  }
  ByteStream(const ByteStream&) = delete;
  ByteStream& operator=(const ByteStream&) = delete;

  /// Reads up to `count` bytes; fewer only at the end of the data. Throws on I/O or gzip errors.
  size_t read(uint8_t* out, size_t count) {
    size_t total = 0;
    while (total < count) {
      const size_t want = std::min(count - total, size_t{1} << 30);
      size_t got = 0;
      if (gz_ != nullptr) {
        const int n = gzread(gz_, out + total, static_cast<unsigned>(want));
        if (n < 0) {
          int code = Z_OK;
          std::string message = gzerror(gz_, &code);
          if (code == Z_ERRNO) message = std::strerror(errno);
          // zlib prefixes its message with the path, which fail_at() already gives.
          const std::string prefix = path_ + ": ";
          if (message.compare(0, prefix.size(), prefix) == 0) message.erase(0, prefix.size());
          fail_at(path_, offset_bytes_ + total, "cannot decompress gzip data: " + message);
        }
        got = static_cast<size_t>(n);
        if (got < want) {
          // zlib reports a gzip stream cut off mid-member as Z_BUF_ERROR, not as a failed read.
          int code = Z_OK;
          gzerror(gz_, &code);
          gzip_cut_off_ = code == Z_BUF_ERROR;
        }
      } else {
        got = std::fread(out + total, 1, want, file_);
        if (got < want && std::ferror(file_) != 0) {
          fail_at(path_, offset_bytes_ + total + got, std::string("read error: ") + std::strerror(errno));
        }
      }
      total += got;
      if (got < want) break;
    }
    offset_bytes_ += total;
    return total;
  }

  /// Explains a short read: "" for a raw file or a gzip stream that ended properly.
  std::string end_note() const {
    return gzip_cut_off_ ? " (the gzip stream itself is cut off: the .gz file is truncated)" : "";
  }

 private:
  std::string path_;
  std::FILE* file_ = nullptr;
  gzFile gz_ = nullptr;
  uint64_t offset_bytes_ = 0;
  bool gzip_cut_off_ = false;
};

}  // namespace

const char* idx_type_name(uint8_t type) {
  switch (type) {
    case 0x08: return "unsigned byte";
    case 0x09: return "signed byte";
    case 0x0B: return "int16";
    case 0x0C: return "int32";
    case 0x0D: return "float32";
    case 0x0E: return "float64";
    default: return "unknown";
  }
}

IdxArray read_idx(const std::string& path, uint64_t max_bytes, std::string_view content) {
  ByteStream in(path);

  uint8_t magic[4];
  const size_t magic_got = in.read(magic, sizeof magic);
  if (magic_got < sizeof magic) {
    fail_at(path, 0, "file ends after " + std::to_string(magic_got) + " of 4 header bytes" +
                      in.end_note());
  }
  const uint32_t magic_value = (uint32_t{magic[0]} << 24) | (uint32_t{magic[1]} << 16) |
                               (uint32_t{magic[2]} << 8) | uint32_t{magic[3]};
  if (magic[0] != 0 || magic[1] != 0) {
    fail_at(path, 0, "bad magic " + hex(magic_value, 8) +
                      ": expected an IDX file, which starts with two zero bytes, a data type byte "
                      "and a dimension count (e.g. 0x00000803)");
  }
  if (magic[2] != kUnsignedByteType) {
    fail_at(path, 2, "data type " + hex(magic[2], 2) + " (" + idx_type_name(magic[2]) +
                      ") is not supported; only 0x08 (unsigned byte) is");
  }
  const int dim_count = magic[3];
  if (dim_count < 1 || dim_count > kMaxDims) {
    fail_at(path, 3, std::to_string(dim_count) + " dimensions; expected 1 to " +
                      std::to_string(kMaxDims));
  }

  uint8_t dim_bytes[4 * kMaxDims];
  const size_t dim_bytes_wanted = 4 * static_cast<size_t>(dim_count);
  const size_t dim_bytes_got = in.read(dim_bytes, dim_bytes_wanted);
  if (dim_bytes_got < dim_bytes_wanted) {
    fail_at(path, 4, "file ends after " + std::to_string(dim_bytes_got) + " of " +
                      std::to_string(dim_bytes_wanted) + " dimension bytes" + in.end_note());
  }

  IdxArray array;
  array.dims.resize(static_cast<size_t>(dim_count));
  uint64_t declared_bytes = 1;
  bool overflow = false;
  for (int i = 0; i < dim_count; ++i) {
    const uint8_t* b = dim_bytes + 4 * i;
    const uint32_t dim = (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) |
                         (uint32_t{b[2]} << 8) | uint32_t{b[3]};
    if (dim == 0) fail_at(path, 4 + 4 * static_cast<uint64_t>(i), "dimension " + std::to_string(i) + " is 0");
    array.dims[static_cast<size_t>(i)] = dim;
    if (declared_bytes > std::numeric_limits<uint64_t>::max() / dim) overflow = true;
    if (!overflow) declared_bytes *= dim;
  }
  if (overflow) {
    fail_at(path, 4, "dimensions " + join_dims(array.dims) + " declare more than 2^64 " +
                      std::string(content) + " bytes (max_bytes is " + std::to_string(max_bytes) +
                      ")");
  }
  if (declared_bytes > max_bytes) {
    fail_at(path, 4, "dimensions " + join_dims(array.dims) + " declare " +
                      std::to_string(declared_bytes) + " " + std::string(content) +
                      " bytes, more than max_bytes = " + std::to_string(max_bytes));
  }

  const uint64_t data_offset = array.data_offset_bytes();
  const size_t declared = static_cast<size_t>(declared_bytes);
  array.data.reserve(std::min(declared, kChunkBytes));
  size_t have = 0;
  while (have < declared) {
    const size_t want = std::min(declared - have, kChunkBytes);
    array.data.resize(have + want);
    const size_t got = in.read(array.data.data() + have, want);
    have += got;
    if (got < want) {
      fail_at(path, data_offset, "file ends after " + std::to_string(have) + " of " +
                                  std::to_string(declared) + " " + std::string(content) + " bytes" +
                                  in.end_note());
    }
  }

  uint8_t probe[kTrailingProbeBytes];
  const size_t trailing = in.read(probe, sizeof probe);
  if (trailing > 0) {
    fail_at(path, data_offset + declared,
         (trailing < sizeof probe ? std::to_string(trailing) : "at least " + std::to_string(trailing)) +
             " trailing bytes after the declared " + std::to_string(declared) + " " +
             std::string(content) + " bytes (dimensions " + join_dims(array.dims) + ")");
  }
  return array;
}

FileDigest digest_file(const std::string& path) {
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) throw Error(path + ": cannot open: " + std::strerror(errno));
  FileDigest digest;
  uLong crc = crc32(0L, Z_NULL, 0);
  std::vector<uint8_t> buffer(size_t{1} << 20);
  for (;;) {
    const size_t got = std::fread(buffer.data(), 1, buffer.size(), file);
    crc = crc32(crc, buffer.data(), static_cast<uInt>(got));
    digest.size_bytes += got;
    if (got < buffer.size()) break;
  }
  const bool failed = std::ferror(file) != 0;
  const int error = errno;
  std::fclose(file);
  if (failed) {
    fail_at(path, digest.size_bytes, std::string("read error: ") + std::strerror(error));
  }
  digest.crc32 = crc32_hex(crc);
  return digest;
}

std::string join_dims(const std::vector<int64_t>& dims) {
  std::string text;
  for (size_t i = 0; i < dims.size(); ++i) {
    if (i > 0) text += "x";
    text += std::to_string(dims[i]);
  }
  return text;
}

}  // namespace vaelab::plugins
