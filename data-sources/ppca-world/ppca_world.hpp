#pragma once
// A world whose true distribution is known: probabilistic PCA (Tipping & Bishop 1999),
//   x = mean + Q diag(s) z + noise · ε,  z ~ N(0, I_d), ε ~ N(0, I_D),
// with orthonormal columns Q, so its log-density is closed-form (defaults.toml explains the keys).

#include <cstdint>
#include <string>
#include <vector>

#include <vaelab/config.hpp>
#include <vaelab/data_source.hpp>

namespace vaelab::plugins {

struct PpcaSettings {
  int64_t channels = 1;
  int64_t height = 32;
  int64_t width = 32;
  int64_t latent = 16;
  double noise = 0.1;
  double signal = 0.25;
  double decay = 0.85;
  double smoothness = 1.5;
  double mean = 0.5;
  uint64_t seed = 0;

  /// Reads and checks the keys of defaults.toml (sizes excepted); ConfigError names the key.
  static PpcaSettings from_config(const ConfigTable& config);
};

/// The model itself: its parameters, its samples and its exact log-density.
class PpcaWorld {
 public:
  explicit PpcaWorld(const PpcaSettings& settings);

  int64_t dims() const { return dims_; }
  int64_t latent() const { return settings_.latent; }
  double noise() const { return settings_.noise; }
  double mean() const { return settings_.mean; }
  /// Q, D × d row-major, orthonormal columns.
  const std::vector<double>& basis() const { return basis_; }
  /// s_1 ≥ ... ≥ s_d > 0.
  const std::vector<double>& scales() const { return scales_; }
  /// W = Q diag(s), D × d row-major.
  std::vector<double> weights() const;

  /// Images [first, first + n) of stream `split` (0 = train, 1 = test): image i is drawn from a
  /// generator seeded by (seed, split, i) alone. Continuous: `values` set, `pixels` empty.
  ImageSet sample(int64_t first, int64_t n, uint64_t split) const;

  /// log N(x; mean, W Wᵀ + noise² I) per image, in nats. Throws vaelab::Error when `images` is
  /// not continuous or not of this world's shape.
  std::vector<double> log_likelihood(const ImageSet& images) const;

 private:
  PpcaSettings settings_;
  int64_t dims_;
  std::vector<double> basis_;
  std::vector<double> scales_;
};

/// The data-source plugin: a PpcaWorld plus split sizes.
class PpcaWorldSource final : public DataSource {
 public:
  explicit PpcaWorldSource(const ConfigTable& config);
  Dataset open() override;
  std::vector<double> exact_log_likelihood(const ImageSet& images) const override;

 private:
  PpcaWorld world_;
  int64_t train_size_;
  int64_t test_size_;
  std::string name_;
};

}  // namespace vaelab::plugins
