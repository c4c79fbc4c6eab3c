// The compressed-file reader (core/src/compress/container.cpp) and the BB-ANS decoder behind it
// (bbans.cpp, quantize.cpp), with a stand-in model: every accepted file small enough is decoded
// in full. A file must be refused with one line naming it, or decode to images whose CRC-32 the
// header records; a decoder that returns other images is a finding.

#include <vector>

#include <vaelab/compress/container.hpp>

#include "fuzz_coding_model.hpp"
#include "fuzz_common.hpp"

namespace compress = vaelab::compress;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const vaelab::fuzz::InputFile file("compressed", ".vlz");
  const std::string& path = file.write(data, size);
  compress::CompressedFile parsed;
  try {
    parsed = compress::parse_compressed(path, data, size);
  } catch (const vaelab::Error& e) {
    vaelab::fuzz::check_refusal(e, path);
    return 0;
  }
  const compress::CompressedHeader& h = parsed.header;
  const compress::CodecSettings& s = h.settings;
  // Decoding costs count × (pixels × latent dims); keep each input well under the 10 s limit.
  if (h.count * static_cast<uint64_t>(s.image_symbols()) > 4096 || s.latent_dims > 32 || s.mixtures > 16 ||
      s.latent_precision > 12) {
    return 0;
  }
  std::vector<uint8_t> images(h.count * static_cast<uint64_t>(s.image_symbols()));
  vaelab::fuzz::StandInModel model(s);
  try {
    compress::bbans_decode(s, model, parsed.lanes, static_cast<int64_t>(h.count), h.seed, images.data());
  } catch (const vaelab::Error& e) {
    vaelab::fuzz::check_refusal(e);
    return 0;
  }
  if (compress::crc32_of(images.data(), images.size()) != h.images_crc32) {
    std::fprintf(stderr, "finding: a stream decoded to images that do not match the file's CRC-32\n");
    std::abort();
  }
  return 0;
}
