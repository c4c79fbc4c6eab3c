#pragma once
/// Decoding, channel conversion and resampling of single PNG and JPEG images, for the
/// image-folder data source. stb_image (Debian's libstb-dev) is compiled into image_decoder.cpp
/// with internal linkage, so none of its symbols leave the plugin; no torch.

#include <cstdint>
#include <string>
#include <vector>

namespace vaelab::plugins::image_folder {

/// A decoded image, interleaved: height × width × channels bytes, rows top to bottom.
struct DecodedImage {
  int64_t width = 0;
  int64_t height = 0;
  int64_t channels = 0;         ///< 1 (grey) or 3 (RGB), as asked for
  int64_t stored_channels = 0;  ///< in the file: 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA
  std::vector<uint8_t> pixels;
};

/// The bytes of a file of at most 2 GiB (stb_image's limit). Throws vaelab::Error naming the file
/// when it cannot be read or is larger.
std::vector<uint8_t> read_image_file(const std::string& path);

/// Decodes the `bytes` of a PNG or JPEG file named `path` (recognised by content, not by name) to
/// `channels` (1 or 3): grey is replicated to RGB; RGB becomes grey with the BT.601 luma weights
/// (0.299, 0.587, 0.114, as stb_image computes them); an alpha channel is dropped, not composited;
/// 16-bit PNGs are reduced to 8 bits. The size is read from the header first and an image of more
/// than `max_pixels` pixels is refused before it is decoded.
///
/// Throws vaelab::Error "<path>: <what is wrong>" when the file is not a PNG or JPEG, is corrupt or
/// truncated, or is too large.
DecodedImage decode_image(const std::string& path, const std::vector<uint8_t>& bytes, int channels,
                          int64_t max_pixels);

/// Resamples an interleaved image to width × height with a triangle (bilinear) filter on pixel
/// centres whose support widens by the scale factor when shrinking, so that every source pixel
/// contributes (as Pillow's Image.resize with BILINEAR does). The aspect ratio is not kept.
/// Results are rounded to the nearest integer.
DecodedImage resize_bilinear(const DecodedImage& image, int64_t width, int64_t height);

/// Writes an interleaved image into `planes` (channels × height × width, planar, already zeroed)
/// centred on a canvas of canvas_width × canvas_height, the image no larger than the canvas; the
/// left and top margins are the smaller halves, as vaelab::pad_images places them.
void place_centred(const DecodedImage& image, int64_t canvas_width, int64_t canvas_height,
                   uint8_t* planes);

}  // namespace vaelab::plugins::image_folder
