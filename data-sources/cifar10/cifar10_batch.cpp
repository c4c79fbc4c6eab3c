#include "cifar10_batch.hpp"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>

#include <vaelab/io/binary_file.hpp>
#include <vaelab/error.hpp>

namespace vaelab::plugins::cifar10 {
namespace {

// CIFAR-100's binary records carry a coarse and a fine label byte before the image.
constexpr uint64_t kCifar100RecordBytes = 2 + kImageBytes;
// Files are read in chunks of this size, so a file that shrinks while it is read is noticed.
constexpr size_t kChunkBytes = size_t{4} << 20;

}  // namespace

Cifar10Batch read_cifar10_batch(const std::string& path, uint64_t max_bytes) {
  const OpenedFile opened = open_for_reading(path, "a batch file");
  const auto& file = opened.file;
  const uint64_t size = opened.size;

  if (size == 0) fail_at(path, 0, "empty file: a batch holds at least one 3073-byte record");
  if (size > max_bytes) {
    fail_at(path, 0,
            "file is " + std::to_string(size) +
                " bytes, more than max_bytes = " + std::to_string(max_bytes));
  }
  const uint64_t record_bytes = static_cast<uint64_t>(kRecordBytes);
  if (size % record_bytes != 0) {
    const uint64_t whole = size / record_bytes;
    std::string hint;
    if (size % kCifar100RecordBytes == 0) {
      hint =
          "; its size is a multiple of 3074, the record of CIFAR-100's binary files, which this "
          "plugin does not read";
    }
    fail_at(path, whole * record_bytes,
            "incomplete record " + std::to_string(whole) + ": the file ends after " +
                std::to_string(size - whole * record_bytes) + " of its 3073 bytes (the file is " +
                std::to_string(size) +
                " bytes, not a multiple of 3073, the size of a CIFAR-10 "
                "record: 1 label byte and 3072 pixel bytes)" +
                hint);
  }

  Cifar10Batch batch;
  batch.count = static_cast<int64_t>(size / record_bytes);
  batch.size_bytes = size;
  batch.pixels.resize(static_cast<size_t>(batch.count * kImageBytes));
  batch.labels.resize(static_cast<size_t>(batch.count));

  const int64_t records_per_chunk =
      std::min<int64_t>(static_cast<int64_t>(kChunkBytes) / kRecordBytes, batch.count);
  std::vector<uint8_t> chunk(static_cast<size_t>(records_per_chunk * kRecordBytes));
  uLong crc = crc32(0L, Z_NULL, 0);
  int64_t record = 0;
  while (record < batch.count) {
    const int64_t records = std::min(batch.count - record, records_per_chunk);
    const size_t want = static_cast<size_t>(records * kRecordBytes);
    const size_t got = std::fread(chunk.data(), 1, want, file.get());
    const uint64_t offset = static_cast<uint64_t>(record) * record_bytes;
    if (got < want) {
      if (std::ferror(file.get()) != 0) {
        fail_at(path, offset + got, std::string("read error: ") + std::strerror(errno));
      }
      fail_at(path, offset + got,
              "file ends early: it was " + std::to_string(size) +
                  " bytes when opened (is it being written?)");
    }
    crc = crc32(crc, chunk.data(), static_cast<uInt>(got));
    for (int64_t r = 0; r < records; ++r) {
      const uint8_t* in = chunk.data() + r * kRecordBytes;
      const int64_t index = record + r;
      if (in[0] >= kClasses) {
        fail_at(path, static_cast<uint64_t>(index) * record_bytes,
                "record " + std::to_string(index) + " has label " + std::to_string(in[0]) +
                    "; CIFAR-10 labels are 0 to 9");
      }
      batch.labels[static_cast<size_t>(index)] = in[0];
      std::memcpy(batch.pixels.data() + index * kImageBytes, in + 1, kImageBytes);
    }
    record += records;
  }
  batch.crc32 = crc32_hex(crc);
  return batch;
}

std::vector<std::string> read_class_names(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Error(path + ": cannot open: " + std::strerror(errno));
  std::vector<std::string> names;
  std::string line;
  int line_number = 0;
  while (std::getline(in, line)) {
    ++line_number;
    const size_t last = line.find_last_not_of(" \t\r");
    if (last == std::string::npos) continue;
    line.erase(last + 1);
    if (static_cast<int64_t>(names.size()) == kClasses) {
      throw Error(path + ":" + std::to_string(line_number) + ": an 11th class name ('" + line +
                  "'); CIFAR-10 has 10 classes");
    }
    names.push_back(line);
  }
  if (in.bad()) throw Error(path + ": read error: " + std::strerror(errno));
  if (static_cast<int64_t>(names.size()) != kClasses) {
    throw Error(path + ": names " + std::to_string(names.size()) +
                " classes; CIFAR-10 has 10, one per line");
  }
  return names;
}

}  // namespace vaelab::plugins::cifar10
