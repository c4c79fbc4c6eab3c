#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <vaelab/backend.hpp>
#include <vaelab/config.hpp>

#include "onednn_runtime.hpp"

namespace vaelab::plugins {

/// Layers whose forward and backward run oneDNN primitives on the CPU, on the tensors' own
/// memory. Parameter and buffer names, layouts and initialization are torch-cpu's, so
/// checkpoints move between the two backends.
class OnednnCpuBackend final : public Backend {
 public:
  explicit OnednnCpuBackend(const ConfigTable& config);
  /// `plugin = "auto"` prefers it to torch-cpu (10) and torch-cuda (30) to it, where oneDNN has a
  /// CPU engine.
  static int32_t probe();
  torch::Device device() const override { return torch::kCPU; }
  void apply_threads() override;
  int threads() const override { return threads_; }
  void synchronize() override {}
  /// Parameters: linear.weight [out, in], linear.bias.
  std::shared_ptr<Layer> dense(const DenseOptions& options) override;
  /// Parameters: conv.weight [out, in, k, k], conv.bias.
  std::shared_ptr<Layer> conv2d(const Conv2dOptions& options) override;
  /// Parameters: conv.weight [in, out, k, k], conv.bias.
  std::shared_ptr<Layer> conv_transpose2d(const Conv2dOptions& options) override;
  /// Parameters: bn.weight, bn.bias; buffers: bn.running_mean, bn.running_var,
  /// bn.num_batches_tracked.
  std::shared_ptr<Layer> batch_norm2d(const BatchNormOptions& options) override;
  /// Device, threads, precision, oneDNN version and ISA, and the primitive cache's counts
  /// ("primitive cache: N created, M held"; the tests read N).
  std::string describe() const override;

 private:
  int threads_;
  int interop_threads_;
  onednn::RuntimePtr runtime_;
};

}  // namespace vaelab::plugins
