// The compressed-file reader (core/src/compress/container.cpp) and the BB-ANS decoder behind it
// (bbans.cpp, quantize.cpp), with a stand-in model: every accepted file small enough is decoded
// in full, and its images checked against the header's CRC-32 as vaelab decompress does. A file
// must be refused with one line, or decode; a crash, hang or any other exception is a finding.
//
// Each input is tried twice: as it is (the reader's checks), and with its CRC-32s recomputed, so
// that mutated headers and streams get past the checksums and reach the decoder.

#include <algorithm>
#include <vector>

#include <vaelab/compress/container.hpp>

#include "fuzz_coding_model.hpp"
#include "fuzz_common.hpp"

namespace compress = vaelab::compress;

namespace {

uint64_t le(const uint8_t* p, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
void put_le32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

/// The input with every CRC-32 the format has recomputed where its layout allows.
std::vector<uint8_t> with_checksums(const uint8_t* data, size_t size) {
  std::vector<uint8_t> b(data, data + size);
  if (size < compress::kFixedHeaderBytes) return b;
  const uint64_t lanes = std::min<uint64_t>(le(b.data() + 44, 4), le(b.data() + 48, 8));
  if (lanes > 65536) return b;
  const uint64_t table_end = compress::kFixedHeaderBytes + lanes * compress::kLaneEntryBytes;
  if (size < table_end + 4) return b;
  uint64_t offset = table_end + 4;
  for (uint64_t i = 0; i < lanes; ++i) {
    uint8_t* entry = b.data() + compress::kFixedHeaderBytes + i * compress::kLaneEntryBytes;
    const uint64_t words = le(entry + 8, 8);
    if (words > (size - offset) / 4) break;
    put_le32(entry + 24, compress::crc32_of(b.data() + offset, 4 * words));
    offset += 4 * words;
  }
  put_le32(b.data() + table_end, compress::crc32_of(b.data(), table_end));
  return b;
}

void one_input(const std::string& path, const uint8_t* data, size_t size) {
  compress::CompressedFile parsed;
  try {
    parsed = compress::parse_compressed(path, data, size);
  } catch (const vaelab::Error& e) {
    vaelab::fuzz::check_refusal(e, path);
    return;
  }
  const compress::CompressedHeader& h = parsed.header;
  const compress::CodecSettings& s = h.settings;
  // Decoding costs count × (pixels × latent dims); keep each input well under the 10 s limit.
  if (h.count * static_cast<uint64_t>(s.image_symbols()) > 4096 || s.latent_dims > 32 || s.mixtures > 16 ||
      s.latent_precision > 12) {
    return;
  }
  std::vector<uint8_t> images(h.count * static_cast<uint64_t>(s.image_symbols()));
  vaelab::fuzz::StandInModel model(s);
  try {
    compress::bbans_decode(s, model, parsed.lanes, static_cast<int64_t>(h.count), h.seed, images.data());
    // As vaelab decompress: images that miss the header's CRC-32 are refused, never returned.
    compress::check_images_crc(path, h, images.data(), images.size());
  } catch (const vaelab::Error& e) {
    vaelab::fuzz::check_refusal(e);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const vaelab::fuzz::InputFile file("compressed", ".vlz");
  const std::string& path = file.write(data, size);
  one_input(path, data, size);
  const std::vector<uint8_t> repaired = with_checksums(data, size);
  if (repaired != std::vector<uint8_t>(data, data + size)) one_input(path, repaired.data(), repaired.size());
  return 0;
}
