#pragma once
// The file `vaelab compress` writes (format version 1; docs/compression.md has the byte layout):
// a fixed header with what decoding needs, one table entry per chain, a CRC-32 over both, then
// each chain's words with a CRC-32 per chain. Torch-free.

#include <cstdint>
#include <string>
#include <vector>

#include <vaelab/compress/bbans.hpp>

namespace vaelab::compress {

constexpr uint32_t kFormatVersion = 1;
constexpr uint64_t kFixedHeaderBytes = 88;
constexpr uint64_t kLaneEntryBytes = 32;

struct CompressedHeader {
  CodecSettings settings;
  /// 0: 8-bit images; 1 or 255: binary images, written back with this value for a 1.
  uint8_t binary_one = 0;
  uint64_t count = 0;            ///< images
  uint64_t seed = 0;             ///< of the initial random streams
  uint64_t checkpoint_hash = 0;  ///< FNV-1a 64 of the model's weights (names, shapes, bytes)
  uint64_t numerics_hash = 0;    ///< of the model's outputs on a fixed probe batch (docs/compression.md)
  uint32_t images_crc32 = 0;     ///< zlib's CRC-32 of the coded symbols, count × C×H×W bytes
};

struct CompressedFile {
  CompressedHeader header;
  std::vector<LaneStream> lanes;
  std::vector<uint64_t> lane_offsets;  ///< file offset of each chain's first word (set by parse)
  uint64_t size_bytes = 0;             ///< of the whole file (set by parse and serialize)
};

/// The file's bytes. Sets `file.lane_offsets` and `file.size_bytes`.
std::vector<uint8_t> serialize(CompressedFile& file);

/// Parses a whole file held in memory. Every size is checked against the bytes present before
/// anything is allocated; a wrong magic, an unknown version, a field out of range, a truncated or
/// over-long file, or a CRC mismatch is a vaelab::Error "<path>: byte <offset>: <what>".
CompressedFile parse_compressed(const std::string& path, const uint8_t* data, uint64_t size);

/// Reads and parses `path` (at most `max_bytes`).
CompressedFile read_compressed(const std::string& path, uint64_t max_bytes = uint64_t{1} << 36);

/// Throws vaelab::Error "<path>: byte 80: ..." unless `images` (the decoded symbols) have the
/// CRC-32 the header records.
void check_images_crc(const std::string& path, const CompressedHeader& header, const uint8_t* images, uint64_t size);

/// "bytes A..B" of chain `lane`'s words, for messages.
std::string lane_bytes(const CompressedFile& file, size_t lane);

/// Writes `bytes` to `path` through `path` + ".tmp" renamed into place: an existing file is
/// replaced only by a complete new one.
void write_file_atomically(const std::string& path, const std::vector<uint8_t>& bytes);

/// zlib's CRC-32 of `bytes`.
uint32_t crc32_of(const uint8_t* bytes, uint64_t size);

/// FNV-1a 64, continuing from `hash` (start with kFnvBasis).
constexpr uint64_t kFnvBasis = 0xcbf29ce484222325ULL;
uint64_t fnv1a(uint64_t hash, const void* bytes, uint64_t size);

}  // namespace vaelab::compress
