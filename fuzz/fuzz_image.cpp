// The image-folder decoder (data-sources/image-folder/image_decoder.cpp): decode_image on the
// input as a PNG or JPEG file, then resizing and padding what it accepts, as the image-folder
// source does with fit = resize and fit = pad. The pixel limit is smaller than the source's
// default (64 Mi pixels) so that each input decodes in milliseconds; the check is the same.

#include <algorithm>
#include <vector>

#include "fuzz_common.hpp"
#include "image_decoder.hpp"

namespace image = vaelab::plugins::image_folder;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const vaelab::fuzz::InputFile file("image", ".png");
  const std::string& path = file.write(data, size);
  constexpr int64_t kMaxPixels = int64_t{1} << 22;
  const int channels = size % 2 == 0 ? 3 : 1;
  try {
    const std::vector<uint8_t> bytes = image::read_image_file(path);
    if (bytes.size() != size) std::abort();
    const image::DecodedImage decoded = image::decode_image(path, bytes, channels, kMaxPixels);
    if (decoded.width < 1 || decoded.height < 1 || decoded.width * decoded.height > kMaxPixels ||
        decoded.channels != channels || decoded.stored_channels < 1 ||
        decoded.stored_channels > 4 ||
        decoded.pixels.size() !=
            static_cast<size_t>(decoded.width * decoded.height * decoded.channels)) {
      std::fprintf(stderr, "finding: inconsistent image %lldx%lldx%lld, %zu bytes\n",
                   static_cast<long long>(decoded.width), static_cast<long long>(decoded.height),
                   static_cast<long long>(decoded.channels), decoded.pixels.size());
      std::abort();
    }
    const image::DecodedImage small = image::resize_bilinear(decoded, 32, 32);
    if (small.pixels.size() != static_cast<size_t>(32 * 32 * channels)) std::abort();
    const image::DecodedImage half = image::resize_bilinear(
        decoded, std::max<int64_t>(1, decoded.width / 2), std::max<int64_t>(1, decoded.height / 2));
    // A canvas a little larger than the image, as fit = pad makes one (never larger than it needs).
    const int64_t canvas_width = half.width + 3;
    const int64_t canvas_height = half.height + 2;
    std::vector<uint8_t> planes(static_cast<size_t>(channels * canvas_width * canvas_height), 0);
    image::place_centred(half, canvas_width, canvas_height, planes.data());
  } catch (const vaelab::Error& e) {
    vaelab::fuzz::check_refusal(e, path);
  }
  return 0;
}
