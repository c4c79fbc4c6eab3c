#pragma once

#include <memory>
#include <string>

#include <vaelab/backend.hpp>
#include <vaelab/config.hpp>

#include "aten_layers.hpp"

namespace vaelab::plugins {

/// ATen layers on one CUDA device. Creation fails, saying why, when this LibTorch has no CUDA or
/// the device is not there; nothing falls back to the CPU.
class TorchCudaBackend final : public Backend {
 public:
  explicit TorchCudaBackend(const ConfigTable& config);
  /// Preferred over the CPU backends by `plugin = "auto"` when it can be created.
  static int32_t probe() { return 30; }
  torch::Device device() const override;
  void apply_threads() override;
  int threads() const override { return threads_; }
  void synchronize() override;
  std::shared_ptr<Layer> dense(const DenseOptions& options) override;
  std::shared_ptr<Layer> conv2d(const Conv2dOptions& options) override;
  std::shared_ptr<Layer> conv_transpose2d(const Conv2dOptions& options) override;
  std::shared_ptr<Layer> batch_norm2d(const BatchNormOptions& options) override;
  std::string describe() const override;

 private:
  int device_index_;
  int threads_;
  bool cudnn_benchmark_;
  bool allow_tf32_;
  aten_layers::Compute compute_;
};

/// Why a CUDA backend cannot run in this process ("" when it can), for device `index`.
std::string cuda_unavailable_reason(int index);

}  // namespace vaelab::plugins
