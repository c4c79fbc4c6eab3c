#pragma once
// General-purpose lossless compressors on the same pixels, for `vaelab compress --compare`:
// gzip -9 (zlib), bzip2 -9 (libbz2), xz -9 (liblzma), zstd -19 (libzstd) and PNG (libpng).
// Torch-free.

#include <cstdint>
#include <string>
#include <vector>

namespace vaelab::compress {

/// Images as bytes, count × C×H×W, each value 0/1 when `binary`, else 0..255.
struct PixelBlock {
  const uint8_t* symbols = nullptr;
  int64_t count = 0;
  int64_t channels = 0;
  int64_t height = 0;
  int64_t width = 0;
  bool binary = false;
};

/// One compressor's result: the smaller of its two inputs for binary images.
struct BaselineResult {
  std::string name;    ///< "gzip -9", "bzip2 -9", "xz -9", "zstd -19", "png"
  std::string input;   ///< "raw bytes" or "bit-packed" (PNG: "8-bit" or "1-bit")
  uint64_t bytes = 0;  ///< compressed size
};

/// Every compressor on `block`: for binary images each on the raw bytes (one 0/1 byte per
/// value) and on the values bit-packed (8 per byte, most significant bit first, rows padded to
/// whole bytes), keeping the smaller; PNG codes the images as one grayscale image of count·H
/// rows (C = 1; RGB for C = 3), 1-bit or 8-bit deep, at zlib level 9, each row's filter chosen by
/// libpng.
std::vector<BaselineResult> run_baselines(const PixelBlock& block);

/// The values of `block` bit-packed as described above.
std::vector<uint8_t> pack_bits(const PixelBlock& block);

}  // namespace vaelab::compress
