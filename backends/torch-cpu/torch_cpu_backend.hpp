#pragma once

#include <memory>
#include <string>

#include <vaelab/backend.hpp>

#include "aten_layers.hpp"
#include <vaelab/config.hpp>

namespace vaelab::plugins {

/// The reference backend: ATen layers on the CPU.
class TorchCpuBackend final : public Backend {
 public:
  explicit TorchCpuBackend(const ConfigTable& config);
  /// Runs everywhere; `plugin = "auto"` prefers the faster backends that can run.
  static int32_t probe() { return 10; }
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
  std::string describe() const override;

 private:
  int threads_;
  int blas_threads_;
  int interop_threads_;
};

}  // namespace vaelab::plugins
