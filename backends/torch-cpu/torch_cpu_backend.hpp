#pragma once

#include <memory>
#include <string>

#include <vaelab/backend.hpp>
#include <vaelab/config.hpp>

namespace vaelab::plugins {

/// The reference backend: ATen layers on the CPU.
class TorchCpuBackend final : public Backend {
 public:
  explicit TorchCpuBackend(const ConfigTable& config);
  torch::Device device() const override { return torch::kCPU; }
  void apply_threads() override;
  int threads() const override { return threads_; }
  void synchronize() override {}
  std::shared_ptr<Layer> dense(const DenseOptions& options) override;
  std::string describe() const override;

 private:
  int threads_;
  int blas_threads_;
  int interop_threads_;
};

}  // namespace vaelab::plugins
