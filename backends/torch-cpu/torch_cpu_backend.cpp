#include "torch_cpu_backend.hpp"

#include <algorithm>

#include <torch/torch.h>

#include <vaelab/plugin.hpp>
#include <vaelab/threads.hpp>
#include <vaelab/torch_shim.hpp>

namespace vaelab::plugins {
namespace {

// Measured with `vaelab bench threads examples/fmnist-mlp.toml` on the 2-core development
// machines (README, "Threads"): the MLP's time is in matrix products, which OpenBLAS runs in its
// own threads; OpenMP intra-op threads spinning beside them halve the throughput (2 × 2 ran at
// 0.45× of 1 × 1, while 1 intra-op × 2 BLAS threads ran at 1.3–1.5×). So by default: one
// intra-op thread, and every available CPU for BLAS.
constexpr int kMeasuredDefaultIntraOpThreads = 1;

/// y = act(x Wᵀ + b) with ATen's linear.
class DenseLayer final : public Layer {
 public:
  explicit DenseLayer(const DenseOptions& o) : activation_(o.activation) {
    linear_ = register_module(
        "linear", torch::nn::Linear(torch::nn::LinearOptions(o.in_features, o.out_features).bias(o.bias)));
  }
  torch::Tensor forward(const torch::Tensor& x) override {
    torch::Tensor y = linear_->forward(x);
    return activation_ == Activation::relu ? torch::relu(y) : y;
  }

 private:
  torch::nn::Linear linear_{nullptr};
  Activation activation_;
};

}  // namespace

TorchCpuBackend::TorchCpuBackend(const ConfigTable& config) {
  const int cpus = available_cpus();
  const auto threads = static_cast<int>(config.get_int_in("threads", 0, 4096));
  const auto blas = static_cast<int>(config.get_int_in("blas_threads", 0, 4096));
  interop_threads_ = static_cast<int>(config.get_int_in("interop_threads", 1, 4096));
  threads_ = threads > 0 ? threads : kMeasuredDefaultIntraOpThreads;
  blas_threads_ = blas > 0 ? blas : cpus;
}

void TorchCpuBackend::apply_threads() {
  at::set_num_threads(threads_);
  try {
    at::set_num_interop_threads(interop_threads_);
  } catch (const std::exception&) {
    // Only settable once per process, before inter-op work starts; keep what is there.
  }
  if (!set_blas_threads(blas_threads_)) {
    sdk::log().debug("OpenBLAS not found in the process; BLAS threads left as they are");
  }
}

std::shared_ptr<Layer> TorchCpuBackend::dense(const DenseOptions& options) {
  return std::make_shared<DenseLayer>(options);
}

std::string TorchCpuBackend::describe() const {
  return "cpu, " + std::to_string(threads_) + " intra-op threads, " +
         std::to_string(blas_threads()) + " OpenBLAS threads, LibTorch " + shim::torch_version();
}

}  // namespace vaelab::plugins
