#include <vaelab/data_source.hpp>

#include <algorithm>
#include <numeric>
#include <random>
#include <string>

#include <vaelab/error.hpp>

namespace vaelab {

void pad_images(ImageSet& images, int64_t height, int64_t width) {
  if (images.height == height && images.width == width) return;
  if (images.height > height || images.width > width) {
    throw Error("cannot pad " + std::to_string(images.height) + "x" +
                std::to_string(images.width) + " images to the smaller " + std::to_string(height) +
                "x" + std::to_string(width));
  }
  const int64_t top = (height - images.height) / 2;
  const int64_t left = (width - images.width) / 2;
  const int64_t planes = images.count * images.channels;
  std::vector<uint8_t> padded(static_cast<size_t>(planes * height * width), 0);
  for (int64_t p = 0; p < planes; ++p) {
    for (int64_t y = 0; y < images.height; ++y) {
      const uint8_t* src = images.pixels.data() + (p * images.height + y) * images.width;
      uint8_t* dst = padded.data() + (p * height + y + top) * width + left;
      std::copy(src, src + images.width, dst);
    }
  }
  images.pixels = std::move(padded);
  images.height = height;
  images.width = width;
}

void select_subset(ImageSet& images, int64_t count, uint64_t seed) {
  if (count <= 0 || count >= images.count) return;
  std::vector<int64_t> order(static_cast<size_t>(images.count));
  std::iota(order.begin(), order.end(), 0);
  // A fixed algorithm (not std::shuffle, whose result differs between standard libraries).
  std::mt19937_64 rng(seed);
  for (int64_t i = images.count - 1; i > 0; --i) {
    const auto j = static_cast<int64_t>(rng() % static_cast<uint64_t>(i + 1));
    std::swap(order[static_cast<size_t>(i)], order[static_cast<size_t>(j)]);
  }
  order.resize(static_cast<size_t>(count));
  std::sort(order.begin(), order.end());

  const int64_t bytes = images.image_bytes();
  std::vector<uint8_t> pixels(static_cast<size_t>(count * bytes));
  std::vector<int64_t> labels(static_cast<size_t>(count), -1);
  for (int64_t k = 0; k < count; ++k) {
    const int64_t i = order[static_cast<size_t>(k)];
    std::copy_n(images.pixels.begin() + i * bytes, bytes, pixels.begin() + k * bytes);
    if (static_cast<size_t>(i) < images.labels.size()) {
      labels[static_cast<size_t>(k)] = images.labels[static_cast<size_t>(i)];
    }
  }
  images.pixels = std::move(pixels);
  images.labels = std::move(labels);
  images.count = count;
}

}  // namespace vaelab
