#pragma once

#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <string>

#include <ATen/core/Generator.h>
#include <torch/types.h>

#include <vaelab/config.hpp>
#include <vaelab/train/augment.hpp>

namespace vaelab {

/// Where training batches come from (DESIGN.md §1): the training regime. One effective epoch is
/// |D_train| images, whatever the regime.
class TrainingStream {
 public:
  virtual ~TrainingStream() = default;
  /// "normal", "augment-naive", "augment-tuned", "synthetic", "mixed".
  virtual std::string regime() const = 0;
  /// Images per effective epoch.
  virtual int64_t epoch_size() const = 0;
  /// Starts effective epoch `epoch` (0-based).
  virtual void begin_epoch(int64_t epoch) = 0;
  /// The next batch of the epoch, float [B, C, H, W] on the CPU; false at the end of the epoch.
  virtual bool next_batch(torch::Tensor& batch) = 0;
};

/// Normal training: the real training set, reshuffled every epoch by a generator seeded with
/// `seed`. The last batch of an epoch may be smaller.
class RealDataStream final : public TrainingStream {
 public:
  RealDataStream(torch::Tensor data, int64_t batch_size, uint64_t seed);
  std::string regime() const override { return "normal"; }
  int64_t epoch_size() const override { return data_.size(0); }
  void begin_epoch(int64_t epoch) override;
  bool next_batch(torch::Tensor& batch) override;

 private:
  torch::Tensor data_;
  int64_t batch_size_;
  at::Generator generator_;
  torch::Tensor order_;
  int64_t position_ = 0;
};

/// The real training set, each batch augmented (augment.hpp) from its own seeded generator.
class AugmentedStream final : public TrainingStream {
 public:
  AugmentedStream(std::string regime, torch::Tensor data, int64_t batch_size, uint64_t seed,
                  AugmentSettings settings, PixelGrid grid);
  std::string regime() const override { return regime_; }
  int64_t epoch_size() const override { return real_.epoch_size(); }
  void begin_epoch(int64_t epoch) override { real_.begin_epoch(epoch); }
  bool next_batch(torch::Tensor& batch) override;

 private:
  std::string regime_;
  RealDataStream real_;
  AugmentSettings settings_;
  PixelGrid grid_;
  at::Generator generator_;
};

/// Draws images from a fixed set in passes: each pass is a fresh permutation, and a request may
/// span the end of one pass and the start of the next, so every image is used equally often.
class CyclingSampler {
 public:
  CyclingSampler(torch::Tensor data, uint64_t seed);
  torch::Tensor take(int64_t n);
  int64_t size() const { return data_.size(0); }
  /// The shape of one item.
  at::IntArrayRef sample_shape() const { return data_.sizes().slice(1); }

 private:
  torch::Tensor data_;
  at::Generator generator_;
  torch::Tensor order_;
  int64_t position_ = 0;
};

/// Synthetic and mixed training: each batch holds round(batch_size × real_fraction) real images
/// and synthetic ones for the rest (real_fraction = 0 is the paper's DMaaPx; a pool of
/// k × |D_train| images repeats after k effective epochs). An effective epoch is |D_train|
/// images; the last batch of an epoch may be smaller and keeps the ratio as nearly as it can.
class SyntheticStream final : public TrainingStream {
 public:
  /// Makes `n` new preprocessed synthetic images with seeds first_seed, first_seed + 1, ...
  using Producer = std::function<torch::Tensor(uint64_t first_seed, int64_t n)>;

  SyntheticStream(std::string regime, torch::Tensor real, torch::Tensor synthetic,
                  double real_fraction, int64_t batch_size, uint64_t seed);
  /// Fresh samples every effective epoch: epoch e trains on the images with seeds
  /// first_seed + e·m ... (m = the epoch's synthetic share), made by `producer` on a background
  /// thread while epoch e − 1 trains.
  SyntheticStream(std::string regime, torch::Tensor real, Producer producer, uint64_t first_seed,
                  double real_fraction, int64_t batch_size, uint64_t seed);
  ~SyntheticStream() override;
  std::string regime() const override { return regime_; }
  int64_t epoch_size() const override { return epoch_size_; }
  void begin_epoch(int64_t epoch) override;
  bool next_batch(torch::Tensor& batch) override;
  /// Real images served since construction (for tests and the log).
  int64_t real_served() const { return real_served_; }

 private:
  std::string regime_;
  int64_t epoch_size_;
  double real_fraction_;
  int64_t batch_size_;
  int64_t synthetic_per_epoch() const;
  std::future<torch::Tensor> produce(int64_t epoch);

  CyclingSampler real_;
  std::unique_ptr<CyclingSampler> synthetic_;
  uint64_t seed_;
  Producer producer_;
  uint64_t first_seed_ = 0;
  std::future<torch::Tensor> next_;
  int64_t next_epoch_ = -1;
  int64_t position_ = 0;
  int64_t real_served_ = 0;
};

/// What a regime needs to make its stream.
struct StreamInputs {
  std::string regime;        ///< train.regime
  torch::Tensor train;       ///< the real training set, preprocessed
  torch::Tensor synthetic;   ///< preprocessed synthetic images (synthetic and mixed regimes)
  /// Or fresh ones every epoch ([train.synthetic] fresh = true), from this producer.
  SyntheticStream::Producer producer;
  uint64_t first_seed = 0;
  int64_t batch_size = 0;
  uint64_t seed = 0;
  PixelGrid grid = PixelGrid::continuous;  ///< what augmented images are brought back to
};

/// Regimes vaelab knows.
const std::vector<std::string>& regime_names();

/// Whether `regime` trains on synthetic images (synthetic, mixed).
bool regime_needs_synthetic(const std::string& regime);

/// The stream for inputs.regime, configured by the [train] table (its augment and mixed
/// sub-tables). Throws ConfigError for an unknown regime or a bad setting.
std::unique_ptr<TrainingStream> make_training_stream(const StreamInputs& inputs,
                                                     const ConfigTable& train);

}  // namespace vaelab
