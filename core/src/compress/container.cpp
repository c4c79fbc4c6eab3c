#include <vaelab/compress/container.hpp>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <system_error>

#include <zlib.h>

#include <vaelab/io/binary_file.hpp>

namespace vaelab::compress {

namespace {

// The magic: a byte outside ASCII, the name, and line-ending bytes that a text transfer would
// change (as PNG's signature does).
constexpr uint8_t kMagic[8] = {0x89, 'V', 'L', 'Z', '\r', '\n', 0x1a, '\n'};

void put_u8(std::vector<uint8_t>& out, uint8_t v) { out.push_back(v); }
void put_u32(std::vector<uint8_t>& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void put_u64(std::vector<uint8_t>& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
uint32_t get_u32(const uint8_t* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
uint64_t get_u64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

}  // namespace

uint32_t crc32_of(const uint8_t* bytes, uint64_t size) {
  uLong crc = crc32_z(0L, Z_NULL, 0);
  return static_cast<uint32_t>(crc32_z(crc, bytes, static_cast<z_size_t>(size)));
}

uint64_t fnv1a(uint64_t hash, const void* bytes, uint64_t size) {
  const auto* p = static_cast<const uint8_t*>(bytes);
  for (uint64_t i = 0; i < size; ++i) hash = (hash ^ p[i]) * 0x100000001b3ULL;
  return hash;
}

std::vector<uint8_t> serialize(CompressedFile& file) {
  const CompressedHeader& h = file.header;
  const CodecSettings& s = h.settings;
  std::vector<uint8_t> out(kMagic, kMagic + 8);
  put_u32(out, kFormatVersion);
  put_u32(out, static_cast<uint32_t>(kFixedHeaderBytes));
  put_u8(out, static_cast<uint8_t>(s.likelihood));
  put_u8(out, h.binary_one);
  put_u8(out, static_cast<uint8_t>(s.latent_precision));
  put_u8(out, static_cast<uint8_t>(s.posterior_precision));
  put_u8(out, static_cast<uint8_t>(s.likelihood_precision));
  for (int i = 0; i < 3; ++i) put_u8(out, 0);
  put_u32(out, static_cast<uint32_t>(s.mixtures));
  put_u32(out, static_cast<uint32_t>(s.channels));
  put_u32(out, static_cast<uint32_t>(s.height));
  put_u32(out, static_cast<uint32_t>(s.width));
  put_u32(out, static_cast<uint32_t>(s.latent_dims));
  put_u32(out, static_cast<uint32_t>(s.lanes));
  put_u64(out, h.count);
  put_u64(out, h.seed);
  put_u64(out, h.checkpoint_hash);
  put_u64(out, h.numerics_hash);
  put_u32(out, h.images_crc32);
  put_u32(out, 0);
  const uint64_t table = out.size();
  for (const LaneStream& lane : file.lanes) {
    put_u64(out, lane.state);
    put_u64(out, lane.words.size());
    put_u64(out, lane.borrowed_words);
    put_u32(out, 0);  // the words' CRC-32, filled in below
    put_u32(out, 0);
  }
  const uint64_t table_end = out.size();
  put_u32(out, 0);  // the header's CRC-32
  file.lane_offsets.clear();
  for (size_t b = 0; b < file.lanes.size(); ++b) {
    const uint64_t begin = out.size();
    file.lane_offsets.push_back(begin);
    for (uint32_t w : file.lanes[b].words) put_u32(out, w);
    const uint32_t crc = crc32_of(out.data() + begin, out.size() - begin);
    for (int i = 0; i < 4; ++i) out[table + b * kLaneEntryBytes + 24 + i] = static_cast<uint8_t>(crc >> (8 * i));
  }
  const uint32_t header_crc = crc32_of(out.data(), table_end);
  for (int i = 0; i < 4; ++i) out[table_end + i] = static_cast<uint8_t>(header_crc >> (8 * i));
  file.size_bytes = out.size();
  return out;
}

CompressedFile parse_compressed(const std::string& path, const uint8_t* data, uint64_t size) {
  if (size < kFixedHeaderBytes) {
    fail_at(path, size, "the file ends inside its " + std::to_string(kFixedHeaderBytes) +
                            "-byte header (a truncated or not a vaelab compressed file)");
  }
  if (std::memcmp(data, kMagic, 8) != 0) fail_at(path, 0, "not a vaelab compressed file (wrong magic)");
  const uint32_t version = get_u32(data + 8);
  if (version != kFormatVersion) {
    fail_at(path, 8, "format version " + std::to_string(version) + "; this vaelab reads version " +
                         std::to_string(kFormatVersion));
  }
  if (get_u32(data + 12) != kFixedHeaderBytes) {
    fail_at(path, 12, "header size " + std::to_string(get_u32(data + 12)) + ", expected " +
                          std::to_string(kFixedHeaderBytes));
  }
  CompressedFile file;
  CompressedHeader& h = file.header;
  CodecSettings& s = h.settings;
  if (data[16] != 1 && data[16] != 2) fail_at(path, 16, "unknown likelihood code " + std::to_string(data[16]));
  s.likelihood = static_cast<LikelihoodKind>(data[16]);
  h.binary_one = data[17];
  if (s.likelihood == LikelihoodKind::bernoulli ? (h.binary_one != 1 && h.binary_one != 255)
                                                 : h.binary_one != 0) {
    fail_at(path, 17, "binary value " + std::to_string(h.binary_one) + " does not fit the likelihood");
  }
  s.latent_precision = data[18];
  s.posterior_precision = data[19];
  s.likelihood_precision = data[20];
  s.mixtures = static_cast<int>(std::min<uint32_t>(get_u32(data + 24), 1u << 20));
  s.channels = get_u32(data + 28);
  s.height = get_u32(data + 32);
  s.width = get_u32(data + 36);
  s.latent_dims = get_u32(data + 40);
  s.lanes = get_u32(data + 44);
  h.count = get_u64(data + 48);
  h.seed = get_u64(data + 56);
  h.checkpoint_hash = get_u64(data + 64);
  h.numerics_hash = get_u64(data + 72);
  h.images_crc32 = get_u32(data + 80);
  try {
    s.check();
  } catch (const Error& e) {
    fail_at(path, 16, e.what());
  }
  if (h.count < 1 || h.count > (uint64_t{1} << 32)) {
    fail_at(path, 48, "image count " + std::to_string(h.count) + " is out of range");
  }
  const uint64_t lanes = std::min<uint64_t>(static_cast<uint64_t>(s.lanes), h.count);
  const uint64_t table_end = kFixedHeaderBytes + lanes * kLaneEntryBytes;
  if (size < table_end + 4) {
    fail_at(path, size, "the file ends inside its chain table (" + std::to_string(lanes) +
                            " chains need " + std::to_string(table_end + 4) + " bytes)");
  }
  const uint32_t header_crc = get_u32(data + table_end);
  if (crc32_of(data, table_end) != header_crc) {
    fail_at(path, table_end, "the header's CRC-32 is " + crc32_hex(crc32_of(data, table_end)) +
                                 " but the file says " + crc32_hex(header_crc) + ": the header is corrupt");
  }
  uint64_t offset = table_end + 4;
  file.lanes.resize(lanes);
  std::vector<uint32_t> crcs(lanes);
  for (uint64_t b = 0; b < lanes; ++b) {
    const uint8_t* entry = data + kFixedHeaderBytes + b * kLaneEntryBytes;
    const uint64_t entry_offset = kFixedHeaderBytes + b * kLaneEntryBytes;
    LaneStream& lane = file.lanes[b];
    lane.state = get_u64(entry);
    if (lane.state < RansStack::kLow) fail_at(path, entry_offset, "chain " + std::to_string(b) + ": state below 2^32");
    const uint64_t words = get_u64(entry + 8);
    lane.borrowed_words = get_u64(entry + 16);
    if (lane.borrowed_words < 1) fail_at(path, entry_offset + 16, "chain " + std::to_string(b) + ": no initial state");
    crcs[b] = get_u32(entry + 24);
    if (words > (size - offset) / 4) {
      fail_at(path, size, "the file ends inside chain " + std::to_string(b) + "'s " +
                              std::to_string(words) + " words, which start at byte " + std::to_string(offset));
    }
    file.lane_offsets.push_back(offset);
    offset += 4 * words;
  }
  if (offset != size) {
    fail_at(path, offset, std::to_string(size - offset) + " bytes after the last chain's words");
  }
  for (uint64_t b = 0; b < lanes; ++b) {
    const uint64_t begin = file.lane_offsets[b];
    const uint64_t end = b + 1 < lanes ? file.lane_offsets[b + 1] : size;
    if (crc32_of(data + begin, end - begin) != crcs[b]) {
      fail_at(path, begin, "chain " + std::to_string(b) + "'s words (bytes " + std::to_string(begin) + ".." +
                               std::to_string(end) + ") fail their CRC-32: the data is corrupt");
    }
    LaneStream& lane = file.lanes[b];
    lane.words.resize((end - begin) / 4);
    for (size_t i = 0; i < lane.words.size(); ++i) lane.words[i] = get_u32(data + begin + 4 * i);
  }
  file.size_bytes = size;
  return file;
}

CompressedFile read_compressed(const std::string& path, uint64_t max_bytes) {
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  if (ec) throw Error(path + ": cannot read: " + ec.message());
  if (size > max_bytes) throw Error(path + ": " + std::to_string(size) + " bytes is more than the limit");
  std::ifstream in(path, std::ios::binary);
  std::vector<uint8_t> bytes(size);
  if (!in || !in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(size))) {
    throw Error(path + ": cannot read");
  }
  return parse_compressed(path, bytes.data(), bytes.size());
}

void check_images_crc(const std::string& path, const CompressedHeader& header, const uint8_t* images, uint64_t size) {
  const uint32_t crc = crc32_of(images, size);
  if (crc != header.images_crc32) {
    fail_at(path, 80, "the decoded images' CRC-32 is " + crc32_hex(crc) + " but the file says " +
                          crc32_hex(header.images_crc32) + ": the file is corrupt");
  }
}

std::string lane_bytes(const CompressedFile& file, size_t lane) {
  if (lane >= file.lane_offsets.size()) return "chain " + std::to_string(lane);
  const uint64_t begin = file.lane_offsets[lane];
  const uint64_t end = lane + 1 < file.lane_offsets.size() ? file.lane_offsets[lane + 1] : file.size_bytes;
  return "bytes " + std::to_string(begin) + ".." + std::to_string(end);
}

void write_file_atomically(const std::string& path, const std::vector<uint8_t>& bytes) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw Error(tmp + ": cannot write");
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    out.close();
    if (!out) {
      std::remove(tmp.c_str());
      throw Error(tmp + ": write failed");
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::remove(tmp.c_str());
    throw Error(path + ": cannot move the output into place: " + ec.message());
  }
}

}  // namespace vaelab::compress
