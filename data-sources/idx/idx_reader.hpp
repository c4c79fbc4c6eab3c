#pragma once
/// A reader for IDX files (the format of MNIST and Fashion-MNIST), raw or gzip-compressed. It
/// needs only zlib and vaelab::Error: no torch, no plugin machinery.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <vaelab/io/binary_file.hpp>  // fail_at

namespace vaelab::plugins {

/// The contents of one IDX file of unsigned bytes.
struct IdxArray {
  std::vector<int64_t> dims;  ///< 1 to 4 sizes, outermost first, none of them 0
  std::vector<uint8_t> data;  ///< the product of `dims` bytes, row-major

  /// Offset of the first data byte in the decoded stream: the 4-byte magic plus 4 bytes per
  /// dimension.
  uint64_t data_offset_bytes() const { return 4 + 4 * static_cast<uint64_t>(dims.size()); }
};

/// The size and checksum of a file as stored (compressed if it is), for provenance.
struct FileDigest {
  uint64_t size_bytes = 0;
  std::string crc32;  ///< zlib's CRC-32, 8 lowercase hex digits
};

/// Reads an IDX file of unsigned bytes (data type 0x08). A file starting with the gzip magic
/// 0x1f 0x8b is decompressed on the fly, whatever its name. Everything is validated before it is
/// trusted: the magic, the data type, the dimension count (1 to 4), that no dimension is 0, and
/// that the declared size neither overflows nor exceeds `max_bytes` (checked before any
/// allocation); the data must then be exactly the declared size (neither short nor followed by
/// trailing bytes). Memory grows with the bytes actually read, so a header that lies about its
/// size cannot cause a large allocation.
///
/// Throws vaelab::Error "<path>: byte <offset>: <what is wrong>", the offset counted in the decoded
/// stream. `content` names the data in messages ("image", "label"), e.g.
/// "<path>: byte 16: file ends after 1234 of 47040000 image bytes".
IdxArray read_idx(const std::string& path, uint64_t max_bytes, std::string_view content = "data");

/// The stored size and CRC-32 of a file. Throws vaelab::Error naming the path if it cannot be read.
FileDigest digest_file(const std::string& path);

/// "60000x28x28".
std::string join_dims(const std::vector<int64_t>& dims);

/// A readable name for an IDX data type byte, e.g. "unsigned byte", "float32", or "unknown".
const char* idx_type_name(uint8_t type);

}  // namespace vaelab::plugins
