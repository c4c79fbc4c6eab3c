#pragma once
/// A reader for CIFAR-10 binary batch files. Needs only zlib and vaelab::Error: no torch, no plugin
/// machinery.

#include <cstdint>
#include <string>
#include <vector>

namespace vaelab::plugins::cifar10 {

constexpr int64_t kClasses = 10;
constexpr int64_t kChannels = 3;
constexpr int64_t kSide = 32;
constexpr int64_t kImageBytes = kChannels * kSide * kSide;  ///< 3072: R, G, B planes
constexpr int64_t kRecordBytes = 1 + kImageBytes;           ///< 3073: label byte + image

/// The records of one batch file.
struct Cifar10Batch {
  int64_t count = 0;            ///< records in the file
  std::vector<uint8_t> pixels;  ///< count × 3 × 32 × 32 bytes (R, G, B planes, row-major)
  std::vector<int64_t> labels;  ///< count labels, each 0 to 9
  uint64_t size_bytes = 0;      ///< of the file
  std::string crc32;            ///< of the whole file, zlib's CRC-32, 8 lowercase hex digits
};

/// Reads a batch file. Everything is checked before it is trusted: the file must be non-empty and
/// at most `max_bytes` long (checked before anything is allocated), its size a multiple of 3073
/// (else the error gives the offset of the incomplete last record), and every label at most 9 (else
/// the error gives the record and its offset).
///
/// Throws vaelab::Error "<path>: byte <offset>: <what is wrong>", or "<path>: <what>" when the file
/// cannot be opened or read at all.
Cifar10Batch read_cifar10_batch(const std::string& path, uint64_t max_bytes);

/// The class names in a batches.meta.txt file: its non-blank lines, trailing white space removed.
/// Throws vaelab::Error naming the file (and the line, where one is at fault) unless it names
/// exactly 10 classes.
std::vector<std::string> read_class_names(const std::string& path);

}  // namespace vaelab::plugins::cifar10
