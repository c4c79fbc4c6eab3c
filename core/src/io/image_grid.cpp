// Results: PNG grids of images (samples.png, reconstructions.png).
#include <vaelab/io/image_grid.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include <vaelab/error.hpp>

// stb_image_write (Debian's libstb-dev), compiled here and nowhere else, with internal linkage so
// that none of its symbols leave vaelab-core.
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STB_IMAGE_WRITE_STATIC
#define STBI_WRITE_NO_STDIO
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wsign-compare"
#include <stb/stb_image_write.h>
#pragma GCC diagnostic pop

namespace vaelab {
namespace {

void append_bytes(void* context, void* data, int size) {
  auto* out = static_cast<std::vector<uint8_t>*>(context);
  const auto* bytes = static_cast<const uint8_t*>(data);
  out->insert(out->end(), bytes, bytes + size);
}

}  // namespace

ImageGrid make_image_grid(const ImageSet& images, const ImageGridOptions& options) {
  if (images.continuous()) throw Error("an image grid needs 8-bit images, not continuous ones");
  if (images.channels != 1 && images.channels != 3) {
    throw Error("an image grid needs 1 or 3 channels, not " + std::to_string(images.channels));
  }
  if (options.columns < 1 || options.max_images < 1 || options.padding_px < 0) {
    throw Error("an image grid needs columns >= 1, max_images >= 1 and padding_px >= 0");
  }
  const int64_t n = std::min(images.count, options.max_images);
  if (n < 1) throw Error("an image grid needs at least one image");
  const int64_t columns = std::min(options.columns, n);
  const int64_t rows = (n + columns - 1) / columns;
  const int64_t c = images.channels;
  const int64_t h = images.height;
  const int64_t w = images.width;
  const int64_t pad = options.padding_px;

  ImageGrid grid;
  grid.channels = c;
  grid.height = rows * (h + pad) + pad;
  grid.width = columns * (w + pad) + pad;
  grid.pixels.assign(static_cast<size_t>(grid.height * grid.width * c), options.padding_value);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t top = pad + (i / columns) * (h + pad);
    const int64_t left = pad + (i % columns) * (w + pad);
    const uint8_t* image = images.pixels.data() + i * images.image_bytes();
    for (int64_t ch = 0; ch < c; ++ch) {
      for (int64_t y = 0; y < h; ++y) {
        for (int64_t x = 0; x < w; ++x) {
          grid.pixels[static_cast<size_t>(((top + y) * grid.width + left + x) * c + ch)] =
              image[(ch * h + y) * w + x];
        }
      }
    }
  }
  return grid;
}

void write_image_grid(const std::filesystem::path& file, const ImageSet& images,
                      const ImageGridOptions& options) {
  const ImageGrid grid = make_image_grid(images, options);
  std::vector<uint8_t> png;
  const int ok =
      stbi_write_png_to_func(append_bytes, &png, static_cast<int>(grid.width),
                             static_cast<int>(grid.height), static_cast<int>(grid.channels),
                             grid.pixels.data(), static_cast<int>(grid.width * grid.channels));
  if (ok == 0) throw Error(file.string() + ": cannot encode the PNG");
  const std::string tmp = file.string() + ".tmp";
  std::FILE* out = std::fopen(tmp.c_str(), "wb");
  if (out == nullptr) throw Error(tmp + ": cannot write: " + std::strerror(errno));
  const size_t written = std::fwrite(png.data(), 1, png.size(), out);
  const bool closed = std::fclose(out) == 0;
  if (written != png.size() || !closed) {
    std::remove(tmp.c_str());
    throw Error(tmp + ": write failed");
  }
  if (std::rename(tmp.c_str(), file.c_str()) != 0) {
    const std::string reason = std::strerror(errno);
    std::remove(tmp.c_str());
    throw Error(file.string() + ": cannot move the new file into place: " + reason);
  }
}

}  // namespace vaelab
