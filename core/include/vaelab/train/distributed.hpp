#pragma once
// Data-parallel training (docs/distributed.md): the process group, the gradient all-reduce and the
// reduction of training metrics, in one place. The trainer calls it at a few marked points; a run
// with one process never makes one.
//
// No c10d or Gloo header is included here: they stay in core/src/train/distributed.cpp.

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <torch/types.h>

namespace vaelab {

class ConfigTable;

/// The environment of one process of a data-parallel run, as torchrun and `vaelab train --nproc`
/// set it: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT.
struct DistributedEnv {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;

  /// Reads the variables. Without WORLD_SIZE (or with WORLD_SIZE=1) the run has one process and
  /// the rest is not read. Throws ConfigError naming a malformed or missing variable.
  static DistributedEnv from_environment();
};

/// [train.distributed] (core/defaults.toml).
struct DistributedOptions {
  std::string backend = "auto";                 ///< auto | gloo | nccl
  std::chrono::milliseconds timeout{60000};     ///< rendezvous, and every collective
  int64_t bucket_bytes = 25LL << 20;            ///< gradients all-reduced per bucket

  /// From the [train.distributed] table; throws ConfigError for a bad value.
  static DistributedOptions from_config(const ConfigTable& table);
};

/// One process's membership of the group: rendezvous through a c10d TCPStore at
/// MASTER_ADDR:MASTER_PORT (rank 0 serves it), then a ProcessGroupGloo (CPU) or, where LibTorch
/// was built with CUDA and NCCL, a ProcessGroupNCCL. Every call is collective: all ranks make the
/// same calls in the same order. A peer that is gone or silent for longer than the timeout makes
/// the call throw vaelab::Error naming this rank, the operation and the step.
class Distributed {
 public:
  /// Joins the group; blocks until every rank has joined or the timeout has passed.
  Distributed(const DistributedEnv& env, const DistributedOptions& options, const torch::Device& device);
  ~Distributed();
  Distributed(const Distributed&) = delete;
  Distributed& operator=(const Distributed&) = delete;

  int rank() const { return rank_; }
  int world_size() const { return world_size_; }
  /// Rank 0 writes the run folder (results, checkpoints, log); the others write nothing.
  bool writes_results() const { return rank_ == 0; }
  /// "gloo" or "nccl".
  const std::string& backend_name() const { return backend_name_; }

  /// Sums, over all ranks, the gradients of `parameters` in place (flattened into buckets of at
  /// most bucket_bytes, all launched before any is waited for) and `scalars` (float64, e.g. the
  /// step's loss sum). A parameter without a gradient contributes zeros and gets the sum.
  /// `step` names the optimizer step in errors.
  void all_reduce_gradients(const std::vector<torch::Tensor>& parameters, std::vector<double>& scalars,
                            int64_t step);
  /// Sums `values` over all ranks (float64); `what` names the operation in errors.
  void all_reduce_sum(std::vector<double>& values, const std::string& what);
  /// Rank 0's values of `tensors` (parameters and buffers) copied into every rank's, in place.
  void broadcast_from_rank0(const std::vector<torch::Tensor>& tensors, const std::string& what);
  /// Every rank states whether its part of `step` went well (an empty `error`) and learns the
  /// others': throws vaelab::Error quoting the first rank that failed, on every rank. Through the
  /// store, so it also works before the first collective.
  void agree(const std::string& step, const std::string& error);
  /// Throws vaelab::Error on every rank unless all ranks hold the same `value` (e.g. the resolved
  /// config); `what` names it in the message.
  void check_same(const std::string& what, const std::string& value);
  /// Seconds spent in all_reduce_gradients so far (flattening, communication, waiting for the
  /// slowest rank, copying back).
  double gradient_seconds() const { return gradient_seconds_; }
  /// Leaves this rank's error in the store for the others' messages (best effort, never throws).
  void report_failure(const std::string& message) noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int rank_ = 0;
  int world_size_ = 1;
  std::string backend_name_;
  int64_t agree_round_ = 0;
  double gradient_seconds_ = 0;
  std::string failure_hint() const;
};

/// Whether this LibTorch can run NCCL process groups (built with CUDA and NCCL, and a GPU seen).
/// `why` says what is missing when it cannot.
bool nccl_available(std::string& why);

/// A TCP port on `address` that was free a moment ago (bound to port 0, then released): for
/// MASTER_PORT of a local group.
int free_tcp_port(const std::string& address = "127.0.0.1");

}  // namespace vaelab
