#pragma once
// PNG grids of images (samples, reconstructions) for people to look at. Torch-free.

#include <cstdint>
#include <filesystem>
#include <vector>

#include <vaelab/data_source.hpp>

namespace vaelab {

/// How images are laid out in a grid.
struct ImageGridOptions {
  int64_t columns = 8;          ///< images per row
  int64_t max_images = 64;      ///< the first this many images are shown
  int64_t padding_px = 2;       ///< gap between images and around the grid, in pixels
  uint8_t padding_value = 128;  ///< gray level of the gaps (mid-gray: visible on black and white)
};

/// A grid as interleaved pixels: height × width × channels bytes, row-major.
struct ImageGrid {
  int64_t height = 0;
  int64_t width = 0;
  int64_t channels = 0;  ///< 1 (gray) or 3 (RGB), as the images
  std::vector<uint8_t> pixels;
};

/// Lays out the first min(images.count, max_images) images row by row. Images must have 1 or 3
/// channels and there must be at least one; otherwise a vaelab::Error.
ImageGrid make_image_grid(const ImageSet& images, const ImageGridOptions& options = {});

/// Writes make_image_grid(images, options) as a PNG file, through a temporary file renamed into
/// place. Throws vaelab::Error naming the file when it cannot be written.
void write_image_grid(const std::filesystem::path& file, const ImageSet& images,
                      const ImageGridOptions& options = {});

}  // namespace vaelab
