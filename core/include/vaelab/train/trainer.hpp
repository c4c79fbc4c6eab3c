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

class Distributed;
class RunStore;
struct TrainingCheckpoint;

/// [train.checkpoint]: when checkpoints/last.safetensors is written besides every evaluation
/// point (which includes the end of the run). 0 = off for each.
struct CheckpointOptions {
  int64_t every_epochs = 0;   ///< after every this many epochs
  double every_minutes = 0;   ///< wall-clock minutes since the last checkpoint, checked between steps
  int64_t every_steps = 0;    ///< optimizer steps (counted over the run), checked between steps
};

/// [train.nonfinite]: what a step with a non-finite loss or gradient does.
enum class NonfinitePolicy {
  stop,  ///< throw, naming the epoch, the step and the first parameter with a non-finite gradient
  skip,  ///< leave the weights and Adam's state as they are; stop after max_skips_in_row in a row
};

/// The [train] settings the trainer uses, and how often it evaluates.
struct TrainOptions {
  int64_t epochs = 1;
  double lr = 1e-3;
  bool fused_adam = true;  ///< [train] optimizer = "adam-fused" (FusedAdam where the parameters allow)
  int64_t eval_every_epochs = 1;  ///< also evaluated after the last epoch
  CheckpointOptions checkpoint;
  NonfinitePolicy nonfinite = NonfinitePolicy::stop;
  int64_t max_skips_in_row = 10;
};

struct TrainResult {
  int64_t epochs = 0;
  int64_t images_seen = 0;
  double train_seconds = 0;  ///< optimizer steps only, evaluation excluded
  double eval_seconds = 0;
  double elbo_trained_on_nats = 0;  ///< mean over the last epoch's batches, in training mode
  nlohmann::json last_eval;         ///< the metrics of the last evaluation point
  int64_t nonfinite_skipped_steps = 0;  ///< steps skipped by the "skip" policy, over the run
  int64_t checkpoints_written = 0;      ///< by this process
  double checkpoint_seconds = 0;        ///< writing them (excluded from train_seconds)
  int64_t checkpoint_bytes = 0;         ///< size of the last one
  int64_t resumed_at_step = -1;         ///< the run's global step it resumed at; -1 = not resumed
};

/// Adam on −ELBO over effective epochs. At each evaluation point the evaluator's metrics are
/// appended to the run store's metrics.jsonl and a training checkpoint (checkpoint.hpp: weights,
/// Adam state, random states, the stream's position, counters, the metrics so far) written to
/// checkpoints/last.safetensors; also every options.checkpoint interval, mid-epoch included.
/// Only finite weights are ever written.
///
/// Data-parallel (docs/distributed.md): with `distributed`, the stream must be sharded
/// (TrainingStream::set_shard) by the same rank and world size. Every step each process computes
/// the −ELBO of its share of the batch, summed and divided by the whole batch's size, with noise
/// drawn for the whole batch (so each image gets the noise it would get in a one-process run);
/// the gradients are summed over the processes (all-reduced) and every process takes the same
/// Adam step. Evaluation runs on every process alike; only the process that writes results
/// (rank 0) writes metrics and checkpoints.
class Trainer {
 public:
  Trainer(Model& model, const Likelihood& likelihood, Backend& backend, TrainOptions options,
          Distributed* distributed = nullptr);
  /// With `resume`, the model, optimizer, stream and global random state are first restored from
  /// it and training continues where it was written: on the CPU with deterministic kernels the
  /// final weights equal an uninterrupted run's bit for bit. The stream must be built from the
  /// same inputs as the run that wrote it.
  TrainResult fit(TrainingStream& stream, const Evaluator& evaluator, const EvalData& eval,
                  RunStore& store, const TrainingCheckpoint* resume = nullptr);
  /// The same; `store` null = this process writes nothing (a data-parallel rank other than 0).
  TrainResult fit(TrainingStream& stream, const Evaluator& evaluator, const EvalData& eval,
                  RunStore* store, const TrainingCheckpoint* resume);

 private:
  Model& model_;
  const Likelihood& likelihood_;
  Backend& backend_;
  TrainOptions options_;
  Distributed* distributed_;
};

}  // namespace vaelab
