// Sample pools on disk (core/include/vaelab/io/pool.hpp); the format is docs/pool-format.md.

#include <vaelab/io/pool.hpp>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include <vaelab/error.hpp>
#include <vaelab/io/binary_file.hpp>

namespace vaelab {
namespace {

constexpr uint8_t kMagic[8] = {0x89, 'V', 'L', 'P', 'O', 'O', 'L', '\n'};
constexpr uint32_t kVersion = 1;
constexpr uint64_t kHeaderBytes = 128;
constexpr uint64_t kImageAlign = 4096;
constexpr uint64_t kChunkTargetBytes = uint64_t{1} << 20;

constexpr uint64_t kMaxChannels = 64;
constexpr uint64_t kMaxSide = 65536;
constexpr uint64_t kMaxImageBytes = uint64_t{1} << 28;
constexpr uint64_t kMaxCount = uint64_t{1} << 40;
constexpr uint64_t kMaxTotalImageBytes = uint64_t{1} << 50;
constexpr uint64_t kMaxMetaBytes = uint64_t{64} << 20;
constexpr uint64_t kMaxStringBytes = uint64_t{16} << 20;

// Field offsets in the fixed header.
constexpr size_t kOffVersion = 8;
constexpr size_t kOffHeaderBytes = 12;
constexpr size_t kOffCount = 16;
constexpr size_t kOffChannels = 24;
constexpr size_t kOffHeight = 28;
constexpr size_t kOffWidth = 32;
constexpr size_t kOffChunkImages = 36;
constexpr size_t kOffMetaOffset = 40;
constexpr size_t kOffMetaBytes = 48;
constexpr size_t kOffImagesOffset = 56;
constexpr size_t kOffSeedsOffset = 64;
constexpr size_t kOffChunksOffset = 72;
constexpr size_t kOffFileBytes = 80;
constexpr size_t kOffMetaCrc = 88;
constexpr size_t kOffSeedsCrc = 92;
constexpr size_t kOffChunksCrc = 96;
constexpr size_t kOffHeaderCrc = 124;

uint32_t crc32_of(const uint8_t* data, uint64_t bytes) {
  return static_cast<uint32_t>(crc32_z(0, data, static_cast<z_size_t>(bytes)));
}

uint32_t crc32_continue(uint32_t crc, const uint8_t* data, uint64_t bytes) {
  return static_cast<uint32_t>(crc32_z(crc, data, static_cast<z_size_t>(bytes)));
}

uint64_t round_up(uint64_t value, uint64_t align) { return (value + align - 1) / align * align; }

void put_u32(uint8_t* out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out[i] = static_cast<uint8_t>(v >> (8 * i));
}
void put_u64(uint8_t* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out[i] = static_cast<uint8_t>(v >> (8 * i));
}
uint32_t get_u32(const uint8_t* in) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | in[i];
  return v;
}
uint64_t get_u64(const uint8_t* in) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | in[i];
  return v;
}

/// Where everything lies, computed from the sizes (docs/pool-format.md, "Layout").
struct Layout {
  uint64_t image_bytes = 0;
  uint64_t chunks = 0;
  uint64_t meta_offset = kHeaderBytes;
  uint64_t images_offset = 0;
  uint64_t seeds_offset = 0;
  uint64_t chunks_offset = 0;
  uint64_t file_bytes = 0;
};

/// The caller has checked every size against the limits, so nothing here overflows.
Layout compute_layout(uint64_t count, uint64_t channels, uint64_t height, uint64_t width,
                      uint64_t chunk_images, uint64_t meta_bytes) {
  Layout l;
  l.image_bytes = channels * height * width;
  l.chunks = (count + chunk_images - 1) / chunk_images;
  l.images_offset = round_up(kHeaderBytes + meta_bytes, kImageAlign);
  l.seeds_offset = round_up(l.images_offset + count * l.image_bytes, 8);
  l.chunks_offset = l.seeds_offset + 8 * count;
  l.file_bytes = l.chunks_offset + 4 * l.chunks;
  return l;
}

/// The shape limits shared by writer and reader; "" when fine, else what is wrong.
std::string check_shape(uint64_t channels, uint64_t height, uint64_t width) {
  if (channels < 1 || channels > kMaxChannels) {
    return "channels " + std::to_string(channels) + " is outside 1.." +
           std::to_string(kMaxChannels);
  }
  if (height < 1 || height > kMaxSide) {
    return "height " + std::to_string(height) + " is outside 1.." + std::to_string(kMaxSide);
  }
  if (width < 1 || width > kMaxSide) {
    return "width " + std::to_string(width) + " is outside 1.." + std::to_string(kMaxSide);
  }
  if (channels * height * width > kMaxImageBytes) {
    return "an image of " + std::to_string(channels) + "x" + std::to_string(height) + "x" +
           std::to_string(width) + " bytes exceeds the limit of " + std::to_string(kMaxImageBytes);
  }
  return "";
}

std::vector<uint8_t> encode_meta(const PoolHeader& h) {
  std::vector<uint8_t> out;
  for (const std::string* s : {&h.generator, &h.generator_version, &h.config_hash, &h.provenance}) {
    uint8_t length[4];
    put_u32(length, static_cast<uint32_t>(s->size()));
    out.insert(out.end(), length, length + 4);
    out.insert(out.end(), s->begin(), s->end());
  }
  return out;
}

/// Writes all of `bytes` at the file's current position.
void write_all(int fd, const uint8_t* data, uint64_t bytes, const std::string& path) {
  uint64_t done = 0;
  while (done < bytes) {
    const ssize_t n =
        ::write(fd, data + done, static_cast<size_t>(std::min<uint64_t>(bytes - done, 1u << 30)));
    if (n < 0) {
      if (errno == EINTR) continue;
      throw Error(path + ": write failed: " + std::strerror(errno));
    }
    done += static_cast<uint64_t>(n);
  }
}

void write_zeros(int fd, uint64_t bytes, const std::string& path) {
  static const uint8_t zeros[4096] = {};
  while (bytes > 0) {
    const uint64_t n = std::min<uint64_t>(bytes, sizeof zeros);
    write_all(fd, zeros, n, path);
    bytes -= n;
  }
}

}  // namespace

std::string pool_config_hash(std::string_view config_toml) {
  uint64_t hash = 0xcbf29ce484222325ULL;
  for (const char c : config_toml) {
    hash ^= static_cast<uint8_t>(c);
    hash *= 0x100000001b3ULL;
  }
  char text[24];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(hash));
  return text;
}

// ---- PoolWriter -------------------------------------------------------------------------------

struct PoolWriter::State {
  std::string path;
  std::string tmp;
  PoolHeader header;
  int fd = -1;
  bool committed = false;
  uint64_t image_bytes = 0;
  uint64_t chunk_images = 0;
  uint64_t meta_bytes = 0;
  uint64_t images_offset = 0;
  uint32_t meta_crc = 0;
  std::vector<uint64_t> seeds;
  std::vector<uint32_t> chunk_crcs;
  uint32_t chunk_crc = 0;  // running CRC of the open chunk
  uint64_t in_chunk = 0;   // images in the open chunk
};

PoolWriter::PoolWriter(std::string path, PoolHeader header) : state_(std::make_unique<State>()) {
  State& s = *state_;
  s.path = std::move(path);
  s.tmp = s.path + ".tmp";
  s.header = std::move(header);
  const PoolHeader& h = s.header;
  if (h.channels < 0 || h.height < 0 || h.width < 0) {
    throw Error(s.path + ": cannot write a pool of negative image size");
  }
  const std::string shape_problem =
      check_shape(static_cast<uint64_t>(h.channels), static_cast<uint64_t>(h.height),
                  static_cast<uint64_t>(h.width));
  if (!shape_problem.empty()) throw Error(s.path + ": cannot write a pool: " + shape_problem);
  for (const std::string* str :
       {&h.generator, &h.generator_version, &h.config_hash, &h.provenance}) {
    if (str->size() > kMaxStringBytes) {
      throw Error(s.path + ": cannot write a pool: a header string of " +
                  std::to_string(str->size()) + " bytes exceeds the limit of " +
                  std::to_string(kMaxStringBytes));
    }
  }
  s.image_bytes = static_cast<uint64_t>(h.channels * h.height * h.width);
  s.chunk_images = std::max<uint64_t>(1, kChunkTargetBytes / s.image_bytes);
  const std::vector<uint8_t> meta = encode_meta(h);
  s.meta_bytes = meta.size();
  s.meta_crc = crc32_of(meta.data(), meta.size());
  s.images_offset = round_up(kHeaderBytes + s.meta_bytes, kImageAlign);

  s.fd = ::open(s.tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (s.fd < 0) throw Error(s.tmp + ": cannot create: " + std::strerror(errno));
  try {
    write_zeros(s.fd, kHeaderBytes, s.tmp);  // the real header is written by commit()
    write_all(s.fd, meta.data(), meta.size(), s.tmp);
    write_zeros(s.fd, s.images_offset - kHeaderBytes - s.meta_bytes, s.tmp);
  } catch (...) {
    ::close(s.fd);
    ::unlink(s.tmp.c_str());
    throw;
  }
}

PoolWriter::~PoolWriter() {
  if (state_ == nullptr) return;
  if (state_->fd >= 0) ::close(state_->fd);
  if (!state_->committed) ::unlink(state_->tmp.c_str());
}

int64_t PoolWriter::count() const { return static_cast<int64_t>(state_->seeds.size()); }

void PoolWriter::append(const ImageSet& images, const std::vector<uint64_t>& seeds) {
  State& s = *state_;
  if (s.committed || s.fd < 0) throw Error(s.path + ": append after commit");
  if (images.continuous()) {
    throw Error(s.path + ": a pool holds 8-bit images; these are continuous (ImageSet::values)");
  }
  const PoolHeader& h = s.header;
  if (images.channels != h.channels || images.height != h.height || images.width != h.width) {
    throw Error(s.path + ": cannot append " + std::to_string(images.channels) + "x" +
                std::to_string(images.height) + "x" + std::to_string(images.width) +
                " images to a pool of " + std::to_string(h.channels) + "x" +
                std::to_string(h.height) + "x" + std::to_string(h.width) + " images");
  }
  if (images.count < 0 || seeds.size() != static_cast<size_t>(images.count)) {
    throw Error(s.path + ": " + std::to_string(seeds.size()) + " seeds for " +
                std::to_string(images.count) + " images");
  }
  const uint64_t n = static_cast<uint64_t>(images.count);
  if (images.pixels.size() != n * s.image_bytes) {
    throw Error(s.path + ": an image set of " + std::to_string(n) + " images holds " +
                std::to_string(images.pixels.size()) + " bytes, expected " +
                std::to_string(n * s.image_bytes));
  }
  if (s.seeds.size() + n > kMaxCount ||
      (s.seeds.size() + n) > kMaxTotalImageBytes / s.image_bytes) {
    throw Error(s.path + ": a pool holds at most " + std::to_string(kMaxCount) + " images and " +
                std::to_string(kMaxTotalImageBytes) + " image bytes");
  }
  write_all(s.fd, images.pixels.data(), images.pixels.size(), s.tmp);
  for (uint64_t i = 0; i < n; ++i) {
    s.chunk_crc =
        crc32_continue(s.chunk_crc, images.pixels.data() + i * s.image_bytes, s.image_bytes);
    if (++s.in_chunk == s.chunk_images) {
      s.chunk_crcs.push_back(s.chunk_crc);
      s.chunk_crc = 0;
      s.in_chunk = 0;
    }
  }
  s.seeds.insert(s.seeds.end(), seeds.begin(), seeds.end());
}

void PoolWriter::commit() {
  State& s = *state_;
  if (s.committed || s.fd < 0) throw Error(s.path + ": commit called twice");
  if (s.in_chunk > 0) {
    s.chunk_crcs.push_back(s.chunk_crc);
    s.chunk_crc = 0;
    s.in_chunk = 0;
  }
  const uint64_t count = s.seeds.size();
  const Layout l = compute_layout(
      count, static_cast<uint64_t>(s.header.channels), static_cast<uint64_t>(s.header.height),
      static_cast<uint64_t>(s.header.width), s.chunk_images, s.meta_bytes);

  std::vector<uint8_t> seed_bytes(8 * count);
  for (uint64_t i = 0; i < count; ++i) put_u64(seed_bytes.data() + 8 * i, s.seeds[i]);
  std::vector<uint8_t> chunk_bytes(4 * s.chunk_crcs.size());
  for (size_t k = 0; k < s.chunk_crcs.size(); ++k)
    put_u32(chunk_bytes.data() + 4 * k, s.chunk_crcs[k]);
  write_zeros(s.fd, l.seeds_offset - (l.images_offset + count * l.image_bytes), s.tmp);
  write_all(s.fd, seed_bytes.data(), seed_bytes.size(), s.tmp);
  write_all(s.fd, chunk_bytes.data(), chunk_bytes.size(), s.tmp);

  uint8_t header[kHeaderBytes] = {};
  std::memcpy(header, kMagic, sizeof kMagic);
  put_u32(header + kOffVersion, kVersion);
  put_u32(header + kOffHeaderBytes, static_cast<uint32_t>(kHeaderBytes));
  put_u64(header + kOffCount, count);
  put_u32(header + kOffChannels, static_cast<uint32_t>(s.header.channels));
  put_u32(header + kOffHeight, static_cast<uint32_t>(s.header.height));
  put_u32(header + kOffWidth, static_cast<uint32_t>(s.header.width));
  put_u32(header + kOffChunkImages, static_cast<uint32_t>(s.chunk_images));
  put_u64(header + kOffMetaOffset, l.meta_offset);
  put_u64(header + kOffMetaBytes, s.meta_bytes);
  put_u64(header + kOffImagesOffset, l.images_offset);
  put_u64(header + kOffSeedsOffset, l.seeds_offset);
  put_u64(header + kOffChunksOffset, l.chunks_offset);
  put_u64(header + kOffFileBytes, l.file_bytes);
  put_u32(header + kOffMetaCrc, s.meta_crc);
  put_u32(header + kOffSeedsCrc, crc32_of(seed_bytes.data(), seed_bytes.size()));
  put_u32(header + kOffChunksCrc, crc32_of(chunk_bytes.data(), chunk_bytes.size()));
  put_u32(header + kOffHeaderCrc, crc32_of(header, kOffHeaderCrc));
  if (::pwrite(s.fd, header, kHeaderBytes, 0) != static_cast<ssize_t>(kHeaderBytes)) {
    throw Error(s.tmp + ": cannot write the header: " + std::strerror(errno));
  }
  if (::fsync(s.fd) != 0) throw Error(s.tmp + ": fsync failed: " + std::strerror(errno));
  const int fd = s.fd;
  s.fd = -1;
  if (::close(fd) != 0) throw Error(s.tmp + ": close failed: " + std::strerror(errno));
  if (::rename(s.tmp.c_str(), s.path.c_str()) != 0) {
    throw Error(s.path + ": cannot move " + s.tmp + " into place: " + std::strerror(errno));
  }
  s.committed = true;
  // Make the rename itself durable.
  std::string dir = std::filesystem::path(s.path).parent_path().string();
  if (dir.empty()) dir = ".";
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    ::fsync(dir_fd);
    ::close(dir_fd);
  }
}

// ---- PoolReader -------------------------------------------------------------------------------

struct PoolReader::State {
  std::string path;
  PoolHeader header;
  std::string checksum;
  const uint8_t* map = nullptr;
  uint64_t map_bytes = 0;
  uint64_t count = 0;
  uint64_t image_bytes = 0;
  uint64_t images_offset = 0;
  uint64_t seeds_offset = 0;

  ~State() {
    if (map != nullptr) ::munmap(const_cast<uint8_t*>(map), map_bytes);
  }
};

PoolReader::PoolReader(std::string path) : state_(std::make_unique<State>()) {
  State& s = *state_;
  s.path = std::move(path);
  const std::string& p = s.path;

  const int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error(p + ": cannot open the pool: " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const std::string reason = std::strerror(errno);
    ::close(fd);
    throw Error(p + ": cannot stat: " + reason);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error(p + ": not a regular file");
  }
  const auto size = static_cast<uint64_t>(st.st_size);

  // The header is read with pread first, so nothing is mapped before the sizes are trusted.
  uint8_t header[kHeaderBytes] = {};
  const uint64_t want = std::min<uint64_t>(size, kHeaderBytes);
  uint64_t got = 0;
  while (got < want) {
    const ssize_t n = ::pread(fd, header + got, want - got, static_cast<off_t>(got));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const std::string reason = n < 0 ? std::strerror(errno) : "unexpected end of file";
      ::close(fd);
      fail_at(p, got, "read error: " + reason);
    }
    got += static_cast<uint64_t>(n);
  }
  // From here on every failure closes fd through this guard.
  struct FdGuard {
    int fd;
    ~FdGuard() { ::close(fd); }
  } guard{fd};

  if (size == 0) fail_at(p, 0, "empty file: not a vaelab sample pool");
  for (uint64_t i = 0; i < std::min<uint64_t>(size, sizeof kMagic); ++i) {
    if (header[i] != kMagic[i]) {
      fail_at(p, i,
              "bad magic: not a vaelab sample pool (expected the bytes \\x89VLPOOL\\n at byte 0)");
    }
  }
  if (size < kHeaderBytes) {
    fail_at(p, size,
            "file ends after " + std::to_string(size) + " bytes, inside the " +
                std::to_string(kHeaderBytes) + "-byte header (truncated)");
  }
  const uint32_t version = get_u32(header + kOffVersion);
  if (version > kVersion) {
    fail_at(p, kOffVersion,
            "pool format version " + std::to_string(version) +
                " is newer than this vaelab reads (version " + std::to_string(kVersion) +
                "); upgrade vaelab");
  }
  if (version < kVersion) {
    fail_at(p, kOffVersion,
            "pool format version " + std::to_string(version) +
                " is older than this vaelab reads (version " + std::to_string(kVersion) +
                "); sample the pool again with `vaelab generator sample`");
  }
  const uint32_t header_bytes = get_u32(header + kOffHeaderBytes);
  if (header_bytes != kHeaderBytes) {
    fail_at(p, kOffHeaderBytes,
            "header size " + std::to_string(header_bytes) + ", expected " +
                std::to_string(kHeaderBytes));
  }
  const uint32_t header_crc = crc32_of(header, kOffHeaderCrc);
  if (get_u32(header + kOffHeaderCrc) != header_crc) {
    fail_at(p, kOffHeaderCrc,
            "header checksum mismatch (stored " + crc32_hex(get_u32(header + kOffHeaderCrc)) +
                ", computed " + crc32_hex(header_crc) + "): the header is corrupt");
  }

  // Sizes, against fixed limits, before any arithmetic that could overflow.
  const uint64_t count = get_u64(header + kOffCount);
  const uint64_t channels = get_u32(header + kOffChannels);
  const uint64_t height = get_u32(header + kOffHeight);
  const uint64_t width = get_u32(header + kOffWidth);
  const uint64_t chunk_images = get_u32(header + kOffChunkImages);
  const uint64_t meta_bytes = get_u64(header + kOffMetaBytes);
  if (channels < 1 || channels > kMaxChannels)
    fail_at(p, kOffChannels, check_shape(channels, 1, 1));
  if (height < 1 || height > kMaxSide) fail_at(p, kOffHeight, check_shape(channels, height, 1));
  if (width < 1 || width > kMaxSide) fail_at(p, kOffWidth, check_shape(channels, 1, width));
  const std::string shape_problem = check_shape(channels, height, width);
  if (!shape_problem.empty()) fail_at(p, kOffChannels, shape_problem);
  if (chunk_images < 1) fail_at(p, kOffChunkImages, "chunk size of 0 images");
  if (count > kMaxCount) {
    fail_at(p, kOffCount,
            "absurd image count " + std::to_string(count) + " (the limit is " +
                std::to_string(kMaxCount) + ")");
  }
  const uint64_t image_bytes = channels * height * width;
  if (count > kMaxTotalImageBytes / image_bytes) {
    fail_at(p, kOffCount,
            "absurd size: " + std::to_string(count) + " images of " + std::to_string(image_bytes) +
                " bytes exceed the limit of " + std::to_string(kMaxTotalImageBytes) +
                " image bytes");
  }
  if (meta_bytes > kMaxMetaBytes) {
    fail_at(p, kOffMetaBytes,
            "absurd meta block size " + std::to_string(meta_bytes) + " (the limit is " +
                std::to_string(kMaxMetaBytes) + ")");
  }

  // Stored offsets against the computed layout.
  const Layout l = compute_layout(count, channels, height, width, chunk_images, meta_bytes);
  const struct {
    size_t field;
    const char* name;
    uint64_t expected;
  } offsets[] = {
      {kOffMetaOffset, "meta_offset", l.meta_offset},
      {kOffImagesOffset, "images_offset", l.images_offset},
      {kOffSeedsOffset, "seeds_offset", l.seeds_offset},
      {kOffChunksOffset, "chunks_offset", l.chunks_offset},
      {kOffFileBytes, "file_bytes", l.file_bytes},
  };
  for (const auto& o : offsets) {
    const uint64_t stored = get_u64(header + o.field);
    if (stored != o.expected) {
      fail_at(p, o.field,
              std::string(o.name) + " is " + std::to_string(stored) + " but the layout of " +
                  std::to_string(count) + " images of " + std::to_string(channels) + "x" +
                  std::to_string(height) + "x" + std::to_string(width) + " puts it at " +
                  std::to_string(o.expected));
    }
  }
  if (size < l.file_bytes) {
    fail_at(p, size,
            "file ends after " + std::to_string(size) + " bytes but the header (" +
                std::to_string(count) + " images of " + std::to_string(channels) + "x" +
                std::to_string(height) + "x" + std::to_string(width) + ") needs " +
                std::to_string(l.file_bytes) + " (truncated, or the count is wrong)");
  }
  if (size > l.file_bytes) {
    fail_at(p, l.file_bytes,
            std::to_string(size - l.file_bytes) + " bytes after the end the header declares (" +
                std::to_string(count) + " images): the count is wrong or the file was appended to");
  }

  // Map and check the tables and the images.
  void* map = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
  if (map == MAP_FAILED)
    throw Error(p + ": cannot map " + std::to_string(size) + " bytes: " + std::strerror(errno));
  s.map = static_cast<const uint8_t*>(map);
  s.map_bytes = size;
  const uint8_t* m = s.map;

  const uint32_t meta_crc = crc32_of(m + l.meta_offset, meta_bytes);
  if (meta_crc != get_u32(header + kOffMetaCrc)) {
    fail_at(p, l.meta_offset,
            "meta block checksum mismatch (stored " + crc32_hex(get_u32(header + kOffMetaCrc)) +
                ", computed " + crc32_hex(meta_crc) + ")");
  }
  uint64_t at = l.meta_offset;
  const uint64_t meta_end = l.meta_offset + meta_bytes;
  const char* names[] = {"generator", "generator_version", "config_hash", "provenance"};
  std::string* fields[] = {&s.header.generator, &s.header.generator_version, &s.header.config_hash,
                           &s.header.provenance};
  for (int i = 0; i < 4; ++i) {
    if (meta_end - at < 4)
      fail_at(p, at, std::string("meta block ends before the length of '") + names[i] + "'");
    const uint64_t length = get_u32(m + at);
    if (length > meta_end - at - 4) {
      fail_at(p, at,
              std::string("length ") + std::to_string(length) + " of '" + names[i] +
                  "' runs past the end of the meta block");
    }
    fields[i]->assign(reinterpret_cast<const char*>(m + at + 4), length);
    at += 4 + length;
  }
  if (at != meta_end)
    fail_at(p, at, std::to_string(meta_end - at) + " unused bytes at the end of the meta block");

  const uint32_t seeds_crc = crc32_of(m + l.seeds_offset, 8 * count);
  if (seeds_crc != get_u32(header + kOffSeedsCrc)) {
    fail_at(p, l.seeds_offset,
            "seed table checksum mismatch (stored " + crc32_hex(get_u32(header + kOffSeedsCrc)) +
                ", computed " + crc32_hex(seeds_crc) + ")");
  }
  const uint32_t chunks_crc = crc32_of(m + l.chunks_offset, 4 * l.chunks);
  if (chunks_crc != get_u32(header + kOffChunksCrc)) {
    fail_at(p, l.chunks_offset,
            "chunk table checksum mismatch (stored " + crc32_hex(get_u32(header + kOffChunksCrc)) +
                ", computed " + crc32_hex(chunks_crc) + ")");
  }
  for (uint64_t k = 0; k < l.chunks; ++k) {
    const uint64_t first = k * chunk_images;
    const uint64_t n = std::min(chunk_images, count - first);
    const uint64_t offset = l.images_offset + first * image_bytes;
    const uint32_t crc = crc32_of(m + offset, n * image_bytes);
    const uint32_t stored = get_u32(m + l.chunks_offset + 4 * k);
    if (crc != stored) {
      fail_at(p, offset,
              "checksum mismatch in image chunk " + std::to_string(k) + " (images " +
                  std::to_string(first) + ".." + std::to_string(first + n - 1) + "; stored " +
                  crc32_hex(stored) + ", computed " + crc32_hex(crc) + ")");
    }
  }

  s.header.channels = static_cast<int64_t>(channels);
  s.header.height = static_cast<int64_t>(height);
  s.header.width = static_cast<int64_t>(width);
  s.checksum = crc32_hex(header_crc);
  s.count = count;
  s.image_bytes = image_bytes;
  s.images_offset = l.images_offset;
  s.seeds_offset = l.seeds_offset;
}

PoolReader::~PoolReader() = default;

const PoolHeader& PoolReader::header() const { return state_->header; }
const std::string& PoolReader::path() const { return state_->path; }
const std::string& PoolReader::checksum() const { return state_->checksum; }
int64_t PoolReader::count() const { return static_cast<int64_t>(state_->count); }
int64_t PoolReader::image_bytes() const { return static_cast<int64_t>(state_->image_bytes); }

const uint8_t* PoolReader::image(int64_t i) const {
  const State& s = *state_;
  if (i < 0 || static_cast<uint64_t>(i) >= s.count) {
    throw Error(s.path + ": image " + std::to_string(i) + " is out of range (the pool holds " +
                std::to_string(s.count) + ")");
  }
  return s.map + s.images_offset + static_cast<uint64_t>(i) * s.image_bytes;
}

uint64_t PoolReader::seed(int64_t i) const {
  const State& s = *state_;
  if (i < 0 || static_cast<uint64_t>(i) >= s.count) {
    throw Error(s.path + ": seed " + std::to_string(i) + " is out of range (the pool holds " +
                std::to_string(s.count) + ")");
  }
  return get_u64(s.map + s.seeds_offset + 8 * static_cast<uint64_t>(i));
}

ImageSet PoolReader::read(int64_t first, int64_t n) const {
  const State& s = *state_;
  if (first < 0 || n < 0 || static_cast<uint64_t>(first) > s.count ||
      static_cast<uint64_t>(n) > s.count - static_cast<uint64_t>(first)) {
    throw Error(s.path + ": images [" + std::to_string(first) + ", " + std::to_string(first) +
                " + " + std::to_string(n) + ") are out of range (the pool holds " +
                std::to_string(s.count) + ")");
  }
  ImageSet out;
  out.count = n;
  out.channels = s.header.channels;
  out.height = s.header.height;
  out.width = s.header.width;
  const uint8_t* begin = s.map + s.images_offset + static_cast<uint64_t>(first) * s.image_bytes;
  out.pixels.assign(begin, begin + static_cast<uint64_t>(n) * s.image_bytes);
  out.labels.assign(static_cast<size_t>(n), -1);
  return out;
}

}  // namespace vaelab
