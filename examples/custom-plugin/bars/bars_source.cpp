#include "bars_source.hpp"

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include <vaelab/error.hpp>
#include <vaelab/plugin.hpp>

namespace custom {
namespace {

/// SplitMix64: one well-mixed 64-bit seed per (seed, split, image).
uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace

BarsSource::BarsSource(const vaelab::ConfigTable& config)
    : size_(config.get_int_in("size", 4, 256)),
      train_size_(config.get_int_in("train_size", 1, 1000000)),
      test_size_(config.get_int_in("test_size", 1, 1000000)),
      max_bars_(config.get_int_in("max_bars", 1, 16)),
      thickness_(config.get_int("thickness")),
      noise_(config.get_double("noise")),
      seed_(static_cast<uint64_t>(config.get_int("seed"))),
      name_(config.get_string("name")) {
  if (thickness_ < 1 || thickness_ > size_ / 2) {
    throw vaelab::ConfigError(config.key_path("thickness") + ": must be in [1, size/2 = " +
                              std::to_string(size_ / 2) + "], got " + std::to_string(thickness_));
  }
  if (!(noise_ >= 0 && noise_ <= 64)) {
    throw vaelab::ConfigError(config.key_path("noise") + ": must be in [0, 64], got " + std::to_string(noise_));
  }
  if (name_.empty()) throw vaelab::ConfigError(config.key_path("name") + ": must not be empty");
}

vaelab::ImageSet BarsSource::make_split(int64_t count, uint64_t split) const {
  vaelab::ImageSet set;
  set.count = count;
  set.channels = 1;
  set.height = size_;
  set.width = size_;
  set.pixels.resize(static_cast<size_t>(count * size_ * size_));
  set.labels.resize(static_cast<size_t>(count));
  std::vector<double> image(static_cast<size_t>(size_ * size_));
  for (int64_t i = 0; i < count; ++i) {
    std::mt19937_64 rng(mix(mix(seed_) ^ mix(split) ^ static_cast<uint64_t>(i)));
    std::uniform_int_distribution<int64_t> bars(1, max_bars_);
    std::uniform_int_distribution<int64_t> position(0, size_ - thickness_);
    std::uniform_real_distribution<double> brightness(160.0, 255.0);
    std::normal_distribution<double> noise(0.0, 1.0);
    std::fill(image.begin(), image.end(), 0.0);
    bool horizontal = false;
    bool vertical = false;
    const int64_t n = bars(rng);
    for (int64_t b = 0; b < n; ++b) {
      const bool is_horizontal = (rng() & 1U) == 0;
      const int64_t at = position(rng);
      const double level = brightness(rng);
      (is_horizontal ? horizontal : vertical) = true;
      for (int64_t t = at; t < at + thickness_; ++t) {
        for (int64_t k = 0; k < size_; ++k) {
          double& px = is_horizontal ? image[static_cast<size_t>(t * size_ + k)]
                                     : image[static_cast<size_t>(k * size_ + t)];
          px = std::max(px, level);
        }
      }
    }
    uint8_t* out = set.pixels.data() + i * size_ * size_;
    for (size_t p = 0; p < image.size(); ++p) {
      const double v = image[p] + (noise_ > 0 ? noise_ * noise(rng) : 0.0);
      out[p] = static_cast<uint8_t>(std::clamp(std::round(v), 0.0, 255.0));
    }
    set.labels[static_cast<size_t>(i)] = horizontal && vertical ? 2 : (vertical ? 1 : 0);
  }
  return set;
}

vaelab::Dataset BarsSource::open() {
  vaelab::Dataset data;
  data.name = name_;
  data.num_classes = 3;
  data.train = make_split(train_size_, 1);
  data.test = make_split(test_size_, 2);
  vaelab::sdk::log().info("bars: {} train and {} test images of {}x{}", train_size_, test_size_, size_, size_);
  return data;
}

}  // namespace custom
