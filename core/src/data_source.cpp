#include <vaelab/data_source.hpp>

#include <algorithm>
#include <numeric>
#include <random>
#include <string>

#include <vaelab/error.hpp>

namespace vaelab {

namespace {

template <typename T>
std::vector<T> pad_planes(const std::vector<T>& src_images, int64_t planes, int64_t src_h,
                          int64_t src_w, int64_t height, int64_t width) {
  const int64_t top = (height - src_h) / 2;
  const int64_t left = (width - src_w) / 2;
  std::vector<T> padded(static_cast<size_t>(planes * height * width), T{0});
  for (int64_t p = 0; p < planes; ++p) {
    for (int64_t y = 0; y < src_h; ++y) {
      const T* src = src_images.data() + (p * src_h + y) * src_w;
      T* dst = padded.data() + (p * height + y + top) * width + left;
      std::copy(src, src + src_w, dst);
    }
  }
  return padded;
}

template <typename T>
std::vector<T> gather_images(const std::vector<T>& src, const std::vector<int64_t>& order,
                             int64_t size) {
  std::vector<T> out(order.size() * static_cast<size_t>(size));
  for (size_t k = 0; k < order.size(); ++k) {
    std::copy_n(src.begin() + order[k] * size, size, out.begin() + static_cast<int64_t>(k) * size);
  }
  return out;
}

}  // namespace

void pad_images(ImageSet& images, int64_t height, int64_t width) {
  if (images.height == height && images.width == width) return;
  if (images.height > height || images.width > width) {
    throw Error("cannot pad " + std::to_string(images.height) + "x" +
                std::to_string(images.width) + " images to the smaller " + std::to_string(height) +
                "x" + std::to_string(width));
  }
  const int64_t planes = images.count * images.channels;
  if (images.continuous()) {
    images.values = pad_planes(images.values, planes, images.height, images.width, height, width);
  } else {
    images.pixels = pad_planes(images.pixels, planes, images.height, images.width, height, width);
  }
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

  keep_images(images, order);
}

void keep_images(ImageSet& images, const std::vector<int64_t>& order) {
  const int64_t size = images.image_bytes();
  if (images.continuous()) {
    images.values = gather_images(images.values, order, size);
  } else {
    images.pixels = gather_images(images.pixels, order, size);
  }
  const auto count = static_cast<int64_t>(order.size());
  std::vector<int64_t> labels(static_cast<size_t>(count), -1);
  for (int64_t k = 0; k < count; ++k) {
    const int64_t i = order[static_cast<size_t>(k)];
    if (static_cast<size_t>(i) < images.labels.size()) {
      labels[static_cast<size_t>(k)] = images.labels[static_cast<size_t>(i)];
    }
  }
  images.labels = std::move(labels);
  images.count = count;
}

ImageSet take_label(ImageSet& images, int64_t label) {
  std::vector<int64_t> held;
  std::vector<int64_t> kept;
  for (int64_t i = 0; i < images.count; ++i) {
    const bool match = static_cast<size_t>(i) < images.labels.size() && images.labels[static_cast<size_t>(i)] == label;
    (match ? held : kept).push_back(i);
  }
  ImageSet out = images;
  keep_images(out, held);
  keep_images(images, kept);
  return out;
}

}  // namespace vaelab
