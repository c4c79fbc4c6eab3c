#pragma once

#include <cstdint>
#include <string>

#include <vaelab/config.hpp>
#include <vaelab/data_source.hpp>

namespace custom {

/// Procedural bars (defaults.toml). Torch-free.
class BarsSource final : public vaelab::DataSource {
 public:
  /// Reads and checks every key; a value out of range is a ConfigError naming the key.
  explicit BarsSource(const vaelab::ConfigTable& config);
  vaelab::Dataset open() override;

 private:
  vaelab::ImageSet make_split(int64_t count, uint64_t split) const;

  int64_t size_;
  int64_t train_size_;
  int64_t test_size_;
  int64_t max_bars_;
  int64_t thickness_;
  double noise_;
  uint64_t seed_;
  std::string name_;
};

}  // namespace custom
