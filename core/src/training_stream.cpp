#include <vaelab/train/training_stream.hpp>

#include <torch/torch.h>

#include <vaelab/error.hpp>
#include <vaelab/torch_shim.hpp>

namespace vaelab {

RealDataStream::RealDataStream(torch::Tensor data, int64_t batch_size, uint64_t seed)
    : data_(std::move(data)), batch_size_(batch_size), generator_(shim::make_cpu_generator(seed)) {
  if (batch_size_ < 1) throw ConfigError("train.batch_size: must be at least 1");
  if (data_.size(0) == 0) throw Error("the training set is empty");
}

void RealDataStream::begin_epoch(int64_t /*epoch*/) {
  order_ = shim::randperm(data_.size(0), generator_);
  position_ = 0;
}

bool RealDataStream::next_batch(torch::Tensor& batch) {
  const int64_t n = data_.size(0);
  if (position_ >= n) return false;
  const int64_t end = std::min(n, position_ + batch_size_);
  batch = data_.index_select(0, order_.slice(0, position_, end));
  position_ = end;
  return true;
}

std::unique_ptr<TrainingStream> make_training_stream(const std::string& regime,
                                                     const torch::Tensor& train,
                                                     int64_t batch_size, uint64_t seed) {
  if (regime == "normal") return std::make_unique<RealDataStream>(train, batch_size, seed);
  throw ConfigError("train.regime: '" + regime +
                    "' is not available in this build (available: normal)");
}

}  // namespace vaelab
