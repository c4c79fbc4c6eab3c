// Training stream: where every batch comes from, per regime (real, augmented, synthetic, mixed).
#include <vaelab/train/training_stream.hpp>

#include <algorithm>
#include <cmath>
#include <mutex>
#include <sstream>

#include <torch/torch.h>

#include <vaelab/error.hpp>
#include <vaelab/torch_shim.hpp>

namespace vaelab {
namespace {

std::string shape_string(at::IntArrayRef shape) {
  std::ostringstream out;
  for (size_t i = 0; i < shape.size(); ++i) out << (i ? "x" : "") << shape[i];
  return out.str();
}

/// The first dimension of a saved order must match the data it permutes.
void check_order(const torch::Tensor& order, int64_t n, const std::string& key) {
  if (order.dim() != 1 || order.size(0) != n || order.scalar_type() != torch::kInt64) {
    throw Error("stream state: '" + key + "' is a permutation of " +
                (order.dim() == 1 ? std::to_string(order.size(0)) : std::string("?")) +
                " images, but this run's stream has " + std::to_string(n) +
                " (the checkpoint belongs to another dataset or regime)");
  }
}

}  // namespace

const torch::Tensor& StreamState::tensor(const std::string& key) const {
  const auto it = tensors.find(key);
  if (it == tensors.end()) throw Error("stream state: missing tensor '" + key + "'");
  return it->second;
}

int64_t StreamState::integer(const std::string& key) const {
  const auto it = values.find(key);
  if (it == values.end() || !it->is_number_integer()) {
    throw Error("stream state: missing integer '" + key + "'");
  }
  return it->get<int64_t>();
}

torch::Tensor generator_state(const at::Generator& generator) {
  at::Generator g = generator;  // a handle to the same generator
  const std::lock_guard<std::mutex> lock(g.mutex());
  return g.get_state();
}

void set_generator_state(at::Generator& generator, const torch::Tensor& state) {
  const std::lock_guard<std::mutex> lock(generator.mutex());
  generator.set_state(state);
}

namespace {

/// A shuffled pass over n items (RealDataStream, CyclingSampler): the generator that draws each
/// pass's order, the current order (undefined before the first pass) and the position in it,
/// under `prefix`.
void save_shuffle(StreamState& state, const std::string& prefix, const at::Generator& generator,
                  const torch::Tensor& order, int64_t position) {
  state.tensors[prefix + "generator"] = generator_state(generator);
  if (order.defined()) state.tensors[prefix + "order"] = order.clone();
  state.values[prefix + "position"] = position;
}

void load_shuffle(const StreamState& state, const std::string& prefix, int64_t n, at::Generator& generator,
                  torch::Tensor& order, int64_t& position) {
  set_generator_state(generator, state.tensor(prefix + "generator"));
  const auto it = state.tensors.find(prefix + "order");
  if (it != state.tensors.end()) {
    check_order(it->second, n, prefix + "order");
    order = it->second.clone();
  } else {
    order = torch::Tensor();
  }
  position = state.integer(prefix + "position");
  // A position inside a pass needs that pass's order.
  if (position < 0 || position > n || (position > 0 && !order.defined())) {
    throw Error("stream state: '" + prefix + "position' = " + std::to_string(position) +
                " is outside this run's " + std::to_string(n) + " images");
  }
}

}  // namespace

void TrainingStream::set_shard(int64_t rank, int64_t world) {
  if (world < 1 || rank < 0 || rank >= world) {
    throw Error("stream shard: rank " + std::to_string(rank) + " of " + std::to_string(world) + " is not valid");
  }
  shard_rank_ = rank;
  shard_world_ = world;
}

std::pair<int64_t, int64_t> TrainingStream::share_of(int64_t n) {
  last_batch_size_ = n;
  return {n * shard_rank_ / shard_world_, n * (shard_rank_ + 1) / shard_world_};
}

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
  const auto [first, last] = share_of(end - position_);
  batch = data_.index_select(0, order_.slice(0, position_ + first, position_ + last));
  position_ = end;
  return true;
}

void RealDataStream::save_state(StreamState& state, const std::string& prefix) const {
  save_shuffle(state, prefix, generator_, order_, position_);
}

void RealDataStream::load_state(const StreamState& state, const std::string& prefix) {
  load_shuffle(state, prefix, data_.size(0), generator_, order_, position_);
}

AugmentedStream::AugmentedStream(std::string regime, torch::Tensor data, int64_t batch_size,
                                 uint64_t seed, AugmentSettings settings, PixelGrid grid)
    : regime_(std::move(regime)),
      real_(std::move(data), batch_size, seed),
      settings_(settings),
      grid_(grid),
      // Its own stream, so the batch order is the same as normal training's with the same seed.
      generator_(shim::make_cpu_generator(seed ^ 0x61756720ULL)) {}

bool AugmentedStream::next_batch(torch::Tensor& batch) {
  torch::Tensor real;
  if (!real_.next_batch(real)) return false;
  // The whole batch is augmented (its random draws are per batch), then this process's share
  // kept: the same images as in a one-process run.
  batch = augment_batch(real, settings_, grid_, generator_);
  const auto [first, last] = share_of(real.size(0));
  if (shard_world() > 1) batch = batch.slice(0, first, last);
  return true;
}

void AugmentedStream::save_state(StreamState& state) const {
  real_.save_state(state, "real.");
  state.tensors["augment.generator"] = generator_state(generator_);
}

void AugmentedStream::load_state(const StreamState& state) {
  real_.load_state(state, "real.");
  set_generator_state(generator_, state.tensor("augment.generator"));
}

CyclingSampler::CyclingSampler(torch::Tensor data, uint64_t seed)
    : data_(std::move(data)), generator_(shim::make_cpu_generator(seed)) {}

torch::Tensor CyclingSampler::take(int64_t n) { return select(take_indices(n)); }

torch::Tensor CyclingSampler::select(const torch::Tensor& indices) const {
  if (indices.numel() == 0) return data_.slice(0, 0, 0);
  return data_.index_select(0, indices);
}

torch::Tensor CyclingSampler::take_indices(int64_t n) {
  std::vector<torch::Tensor> parts;
  while (n > 0) {
    if (!order_.defined() || position_ >= data_.size(0)) {
      order_ = shim::randperm(data_.size(0), generator_);
      position_ = 0;
    }
    const int64_t k = std::min(n, data_.size(0) - position_);
    parts.push_back(order_.slice(0, position_, position_ + k));
    position_ += k;
    n -= k;
  }
  if (parts.empty()) return torch::empty({0}, torch::kInt64);
  return parts.size() == 1 ? parts[0] : torch::cat(parts);
}

void CyclingSampler::save_state(StreamState& state, const std::string& prefix) const {
  save_shuffle(state, prefix, generator_, order_, position_);
}

void CyclingSampler::load_state(const StreamState& state, const std::string& prefix) {
  load_shuffle(state, prefix, data_.size(0), generator_, order_, position_);
}

SyntheticStream::SyntheticStream(std::string regime, torch::Tensor real, torch::Tensor synthetic,
                                 double real_fraction, int64_t batch_size, uint64_t seed)
    : regime_(std::move(regime)),
      epoch_size_(real.size(0)),
      real_fraction_(real_fraction),
      batch_size_(batch_size),
      real_(real, seed),
      seed_(seed) {
  if (batch_size_ < 1) throw ConfigError("train.batch_size: must be at least 1");
  if (real.size(0) == 0) throw Error("the training set is empty");
  if (real_fraction_ < 1 && synthetic.size(0) == 0) throw Error("the synthetic pool is empty");
  if (real_fraction_ < 1 && synthetic.sizes().slice(1) != real.sizes().slice(1)) {
    throw Error("synthetic images are " + shape_string(synthetic.sizes().slice(1)) +
                " but the training images are " + shape_string(real.sizes().slice(1)));
  }
  synthetic_ = std::make_unique<CyclingSampler>(synthetic, seed ^ 0x73796e74ULL);
}

SyntheticStream::SyntheticStream(std::string regime, torch::Tensor real, Producer producer,
                                 uint64_t first_seed, double real_fraction, int64_t batch_size,
                                 uint64_t seed)
    : regime_(std::move(regime)),
      epoch_size_(real.size(0)),
      real_fraction_(real_fraction),
      batch_size_(batch_size),
      real_(real, seed),
      seed_(seed),
      producer_(std::move(producer)),
      first_seed_(first_seed) {
  if (batch_size_ < 1) throw ConfigError("train.batch_size: must be at least 1");
  if (real.size(0) == 0) throw Error("the training set is empty");
}

SyntheticStream::~SyntheticStream() {
  // A sample still being made is waited for (and its error dropped): the producer must not
  // outlive what it uses.
  if (next_.valid()) {
    try {
      next_.wait();
    } catch (...) {
    }
  }
}

int64_t SyntheticStream::synthetic_per_epoch() const {
  return epoch_size_ - static_cast<int64_t>(std::llround(real_fraction_ * static_cast<double>(epoch_size_)));
}

std::future<torch::Tensor> SyntheticStream::produce(int64_t epoch) {
  const int64_t n = synthetic_per_epoch();
  const uint64_t first = first_seed_ + static_cast<uint64_t>(epoch) * static_cast<uint64_t>(n);
  return std::async(std::launch::async, [this, first, n] { return producer_(first, n); });
}

void SyntheticStream::begin_epoch(int64_t epoch) {
  position_ = 0;
  if (!producer_ || synthetic_per_epoch() == 0) return;
  if (!next_.valid() || next_epoch_ != epoch) {
    if (next_.valid()) next_.wait();
    next_ = produce(epoch);
  }
  const torch::Tensor images = next_.get();
  if (images.size(0) != synthetic_per_epoch() ||
      images.sizes().slice(1) != real_.sample_shape()) {
    throw Error("the synthetic producer made " + shape_string(images.sizes()) + " for an epoch that needs " +
                std::to_string(synthetic_per_epoch()) + " images of " + shape_string(real_.sample_shape()));
  }
  synthetic_ = std::make_unique<CyclingSampler>(images, seed_ ^ (0x73796e74ULL + static_cast<uint64_t>(epoch)));
  current_epoch_ = epoch;
  // The next epoch's images are made while this one trains.
  next_ = produce(epoch + 1);
  next_epoch_ = epoch + 1;
}

bool SyntheticStream::next_batch(torch::Tensor& batch) {
  if (position_ >= epoch_size_) return false;
  const int64_t end = std::min(epoch_size_, position_ + batch_size_);
  // Real images up to here: round(fraction × images so far), so the epoch's ratio is exact
  // however the batches divide it.
  const auto real_until = [&](int64_t images) {
    return static_cast<int64_t>(std::llround(real_fraction_ * static_cast<double>(images)));
  };
  const int64_t n_real = real_until(end) - real_until(position_);
  const int64_t n_synthetic = (end - position_) - n_real;
  if (n_synthetic > 0 && !synthetic_) throw Error("SyntheticStream: begin_epoch was not called");
  // The whole batch's images are drawn (real ones first), then this process's rows selected.
  const torch::Tensor real_indices = real_.take_indices(n_real);
  const torch::Tensor synthetic_indices =
      n_synthetic > 0 ? synthetic_->take_indices(n_synthetic) : torch::empty({0}, torch::kInt64);
  const auto [first, last] = share_of(n_real + n_synthetic);
  const torch::Tensor mine_real = real_indices.slice(0, std::min(first, n_real), std::min(last, n_real));
  const torch::Tensor mine_synthetic =
      synthetic_indices.slice(0, std::max<int64_t>(first - n_real, 0), std::max<int64_t>(last - n_real, 0));
  if (mine_real.numel() == 0 && mine_synthetic.numel() > 0) {
    batch = synthetic_->select(mine_synthetic);
  } else if (mine_synthetic.numel() == 0) {
    batch = real_.select(mine_real);
  } else {
    batch = torch::cat({real_.select(mine_real), synthetic_->select(mine_synthetic)});
  }
  real_served_ += n_real;
  position_ = end;
  return true;
}

void SyntheticStream::save_state(StreamState& state) const {
  state.values["synthetic.position"] = position_;
  state.values["synthetic.real_served"] = real_served_;
  state.values["synthetic.fresh_epoch"] = current_epoch_;
  real_.save_state(state, "synthetic.real.");
  if (synthetic_) synthetic_->save_state(state, "synthetic.pool.");
}

void SyntheticStream::load_state(const StreamState& state) {
  position_ = state.integer("synthetic.position");
  real_served_ = state.integer("synthetic.real_served");
  if (position_ < 0 || position_ > epoch_size_) {
    throw Error("stream state: 'synthetic.position' = " + std::to_string(position_) +
                " is outside this run's epoch of " + std::to_string(epoch_size_) + " images");
  }
  real_.load_state(state, "synthetic.real.");
  const bool has_pool = state.tensors.count("synthetic.pool.generator") > 0;
  if (!producer_) {
    if (has_pool && synthetic_) synthetic_->load_state(state, "synthetic.pool.");
    return;
  }
  // Fresh samples: a background sample of this stream is not the one the state expects.
  if (next_.valid()) {
    try {
      next_.wait();
      next_.get();
    } catch (...) {
    }
  }
  next_epoch_ = -1;
  synthetic_.reset();
  current_epoch_ = state.integer("synthetic.fresh_epoch");
  // Mid-epoch: this epoch's images again, from the same seeds, then the sampler's position.
  if (current_epoch_ >= 0 && has_pool && position_ < epoch_size_ && synthetic_per_epoch() > 0) {
    const int64_t n = synthetic_per_epoch();
    const uint64_t first = first_seed_ + static_cast<uint64_t>(current_epoch_) * static_cast<uint64_t>(n);
    const torch::Tensor images = producer_(first, n);
    if (images.size(0) != n || images.sizes().slice(1) != real_.sample_shape()) {
      throw Error("the synthetic producer made " + shape_string(images.sizes()) + " for an epoch that needs " +
                  std::to_string(n) + " images of " + shape_string(real_.sample_shape()));
    }
    synthetic_ = std::make_unique<CyclingSampler>(
        images, seed_ ^ (0x73796e74ULL + static_cast<uint64_t>(current_epoch_)));
    synthetic_->load_state(state, "synthetic.pool.");
  }
}

const std::vector<std::string>& regime_names() {
  static const std::vector<std::string> names = {"normal", "augment-naive", "augment-tuned",
                                                 "synthetic", "mixed"};
  return names;
}

bool regime_needs_synthetic(const std::string& regime) {
  return regime == "synthetic" || regime == "mixed";
}

std::unique_ptr<TrainingStream> make_training_stream(const StreamInputs& in,
                                                     const ConfigTable& train) {
  const auto& names = regime_names();
  if (std::find(names.begin(), names.end(), in.regime) == names.end()) {
    const std::string near = closest_match(in.regime, names);
    throw ConfigError(train.key_path("regime") + ": unknown regime '" + in.regime + "'" +
                      (near.empty() ? "" : " (did you mean '" + near + "'?)") +
                      "; known: normal, augment-naive, augment-tuned, synthetic, mixed");
  }
  if (in.regime == "normal") return std::make_unique<RealDataStream>(in.train, in.batch_size, in.seed);
  if (in.regime == "augment-naive" || in.regime == "augment-tuned") {
    const AugmentSettings settings =
        AugmentSettings::from_config(in.regime, in.train.size(1), train.sub("augment"));
    return std::make_unique<AugmentedStream>(in.regime, in.train, in.batch_size, in.seed,
                                             settings, in.grid);
  }
  if (!in.synthetic.defined() && !in.producer) {
    throw ConfigError(train.key_path("regime") + " = \"" + in.regime +
                      "\" needs synthetic images: set generator.directory or generator.pool");
  }
  double real_fraction = 0;
  if (in.regime == "mixed") {
    const ConfigTable mixed = train.sub("mixed");
    real_fraction = mixed.get_double("real_fraction");
    if (!(real_fraction >= 0 && real_fraction <= 1)) {
      throw ConfigError(mixed.key_path("real_fraction") + ": must be in [0, 1]");
    }
  }
  if (in.producer) {
    return std::make_unique<SyntheticStream>(in.regime, in.train, in.producer, in.first_seed,
                                             real_fraction, in.batch_size, in.seed);
  }
  return std::make_unique<SyntheticStream>(in.regime, in.train, in.synthetic, real_fraction,
                                           in.batch_size, in.seed);
}

}  // namespace vaelab
