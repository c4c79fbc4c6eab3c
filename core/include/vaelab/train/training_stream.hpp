#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <ATen/core/Generator.h>
#include <torch/types.h>

namespace vaelab {

/// Where training batches come from (DESIGN.md §1): the training regime. One effective epoch is
/// |D_train| images, whatever the regime.
class TrainingStream {
 public:
  virtual ~TrainingStream() = default;
  /// "normal", ...
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

/// The stream for `regime` ([train].regime). Throws ConfigError for a regime not available.
std::unique_ptr<TrainingStream> make_training_stream(const std::string& regime,
                                                     const torch::Tensor& train,
                                                     int64_t batch_size, uint64_t seed);

}  // namespace vaelab
