#pragma once

#include <cstdint>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <string>
#include <utility>

#include <ATen/core/Generator.h>
#include <nlohmann/json.hpp>
#include <torch/types.h>

#include <vaelab/config.hpp>
#include <vaelab/train/augment.hpp>

namespace vaelab {

/// A stream's position, saved in a checkpoint so a resumed run draws exactly the batches the
/// uninterrupted run would have: named tensors (generator states, permutations) and JSON values
/// (positions, counters). Names are dotted paths chosen by each stream ("real.order").
struct StreamState {
  std::map<std::string, torch::Tensor> tensors;
  nlohmann::json values = nlohmann::json::object();

  /// The tensor or value `key`; throws vaelab::Error naming the key when it is missing.
  const torch::Tensor& tensor(const std::string& key) const;
  int64_t integer(const std::string& key) const;
};

/// A generator's state (a uint8 tensor for a CPU generator), and its restoration.
torch::Tensor generator_state(const at::Generator& generator);
void set_generator_state(at::Generator& generator, const torch::Tensor& state);

/// Where training batches come from (docs/architecture.md, stage "training stream"): the training regime. One effective epoch is
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
  /// Everything that decides the batches still to come (random states, orders, positions),
  /// mid-epoch included: a stream built from the same inputs that loads this state serves the
  /// same batches from here on, and continues with begin_epoch(next) as this one would.
  virtual void save_state(StreamState& state) const = 0;
  /// Restores save_state's output. Throws vaelab::Error naming a missing or mismatched key.
  virtual void load_state(const StreamState& state) = 0;

  /// Data-parallel training (docs/distributed.md): every process draws the same batches as a
  /// one-process run (same seeds, same order), and from now on next_batch serves only rows
  /// [b·rank/world, b·(rank+1)/world) of each batch of b images, so the processes' shares never
  /// overlap and together are the one-process batch. The state (save_state) is the whole
  /// stream's, the same on every process. Default: rank 0 of 1, the whole batch.
  void set_shard(int64_t rank, int64_t world);
  int64_t shard_rank() const { return shard_rank_; }
  int64_t shard_world() const { return shard_world_; }
  /// Images in the whole batch (all processes together) of which the last next_batch served
  /// this process's share; with one process, the batch's own size.
  int64_t last_batch_size() const { return last_batch_size_; }

 protected:
  /// Rows [first, second) of a batch of `n` images that are this process's share; records n.
  std::pair<int64_t, int64_t> share_of(int64_t n);

 private:
  int64_t shard_rank_ = 0;
  int64_t shard_world_ = 1;
  int64_t last_batch_size_ = 0;
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
  void save_state(StreamState& state) const override { save_state(state, "real."); }
  void load_state(const StreamState& state) override { load_state(state, "real."); }
  /// The same under key prefix `prefix` (AugmentedStream keeps its own keys beside these).
  void save_state(StreamState& state, const std::string& prefix) const;
  void load_state(const StreamState& state, const std::string& prefix);

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
  void save_state(StreamState& state) const override;
  void load_state(const StreamState& state) override;

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
  /// The indices take(n) would select (advancing the same way), and a selection of them.
  torch::Tensor take_indices(int64_t n);
  torch::Tensor select(const torch::Tensor& indices) const;
  int64_t size() const { return data_.size(0); }
  /// The shape of one item.
  at::IntArrayRef sample_shape() const { return data_.sizes().slice(1); }
  /// Its generator, current pass order and position, under key prefix `prefix`.
  void save_state(StreamState& state, const std::string& prefix) const;
  void load_state(const StreamState& state, const std::string& prefix);

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
  /// With fresh samples, a state saved mid-epoch makes load_state sample that epoch's images
  /// again (synchronously, same seeds); the next epoch's are made by begin_epoch.
  void save_state(StreamState& state) const override;
  void load_state(const StreamState& state) override;
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
  int64_t current_epoch_ = -1;  ///< the epoch whose fresh images synthetic_ holds
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
