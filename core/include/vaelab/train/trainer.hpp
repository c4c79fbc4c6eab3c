#pragma once

#include <cstdint>
#include <functional>

#include <torch/types.h>

#include <vaelab/backend.hpp>
#include <vaelab/likelihood.hpp>
#include <vaelab/model.hpp>
#include <vaelab/train/training_stream.hpp>

namespace vaelab {

class RunStore;

/// [train] and [eval] settings the trainer uses.
struct TrainOptions {
  int64_t epochs = 1;
  double lr = 1e-3;
  uint64_t seed = 0;
  int64_t eval_every_epochs = 1;  ///< also evaluated after the last epoch
  int64_t elbo_samples = 1;
  int64_t eval_batch_size = 1000;
};

/// The sets an evaluation point measures: the real training set (or its fixed subset) and the
/// test set, float [N, C, H, W] on the CPU.
struct EvalSets {
  torch::Tensor train;
  torch::Tensor test;
};

struct TrainResult {
  int64_t epochs = 0;
  int64_t images_seen = 0;
  double train_seconds = 0;  ///< optimizer steps only, evaluation excluded
  double eval_seconds = 0;
  double elbo_train_nats = 0;
  double elbo_test_nats = 0;
  double elbo_trained_on_nats = 0;  ///< mean over the last epoch's batches, in training mode
};

/// Adam on −ELBO over effective epochs, with evaluation points written to the run store's
/// metrics.jsonl and the weights to checkpoints/last.safetensors at each one.
class Trainer {
 public:
  Trainer(Model& model, const Likelihood& likelihood, Backend& backend, TrainOptions options);
  TrainResult fit(TrainingStream& stream, const EvalSets& eval, RunStore& store);

 private:
  Model& model_;
  const Likelihood& likelihood_;
  Backend& backend_;
  TrainOptions options_;
};

}  // namespace vaelab
