#pragma once

#include <cstdint>
#include <functional>

#include <torch/types.h>

#include <nlohmann/json.hpp>

#include <vaelab/backend.hpp>
#include <vaelab/likelihood.hpp>
#include <vaelab/metrics/evaluator.hpp>
#include <vaelab/model.hpp>
#include <vaelab/train/training_stream.hpp>

namespace vaelab {

class RunStore;

/// The [train] settings the trainer uses, and how often it evaluates.
struct TrainOptions {
  int64_t epochs = 1;
  double lr = 1e-3;
  int64_t eval_every_epochs = 1;  ///< also evaluated after the last epoch
};

struct TrainResult {
  int64_t epochs = 0;
  int64_t images_seen = 0;
  double train_seconds = 0;  ///< optimizer steps only, evaluation excluded
  double eval_seconds = 0;
  double elbo_trained_on_nats = 0;  ///< mean over the last epoch's batches, in training mode
  nlohmann::json last_eval;         ///< the metrics of the last evaluation point
};

/// Adam on −ELBO over effective epochs. At each evaluation point the evaluator's metrics are
/// appended to the run store's metrics.jsonl and the weights written to
/// checkpoints/last.safetensors.
class Trainer {
 public:
  Trainer(Model& model, const Likelihood& likelihood, Backend& backend, TrainOptions options);
  TrainResult fit(TrainingStream& stream, const Evaluator& evaluator, const EvalData& eval,
                  RunStore& store);

 private:
  Model& model_;
  const Likelihood& likelihood_;
  Backend& backend_;
  TrainOptions options_;
};

}  // namespace vaelab
