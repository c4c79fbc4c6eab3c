#include "torch_cpu_backend.hpp"

#include <algorithm>
#include <string>

#include <torch/torch.h>

#include <vaelab/error.hpp>
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

torch::Tensor activate(const torch::Tensor& y, Activation activation) {
  return activation == Activation::relu ? torch::relu(y) : y;
}

/// Refuses sizes ATen would only reject at the first forward (or not at all).
void check_conv(const Conv2dOptions& o, bool transposed) {
  const std::string what = transposed ? "conv_transpose2d" : "conv2d";
  const auto require = [&](bool ok, const std::string& message) {
    if (!ok) throw Error("torch-cpu " + what + ": " + message);
  };
  require(o.in_channels >= 1 && o.out_channels >= 1,
          "channels must be positive, got in " + std::to_string(o.in_channels) + ", out " +
              std::to_string(o.out_channels));
  require(o.kernel_size >= 1, "kernel_size must be positive, got " + std::to_string(o.kernel_size));
  require(o.stride >= 1, "stride must be positive, got " + std::to_string(o.stride));
  require(o.padding >= 0, "padding must not be negative, got " + std::to_string(o.padding));
  if (transposed) {
    require(o.output_padding >= 0 && o.output_padding < o.stride,
            "output_padding must be in [0, stride), got " + std::to_string(o.output_padding));
  } else {
    require(o.output_padding == 0,
            "output_padding is for transposed convolutions only, got " + std::to_string(o.output_padding));
  }
}

/// y = act(x Wᵀ + b) with ATen's linear.
class DenseLayer final : public Layer {
 public:
  explicit DenseLayer(const DenseOptions& o) : activation_(o.activation) {
    linear_ = register_module(
        "linear", torch::nn::Linear(torch::nn::LinearOptions(o.in_features, o.out_features).bias(o.bias)));
  }
  torch::Tensor forward(const torch::Tensor& x) override {
    return activate(linear_->forward(x), activation_);
  }

 private:
  torch::nn::Linear linear_{nullptr};
  Activation activation_;
};

/// y = act(conv2d(x, W) + b) with ATen's convolution.
class Conv2dLayer final : public Layer {
 public:
  explicit Conv2dLayer(const Conv2dOptions& o) : activation_(o.activation) {
    conv_ = register_module(
        "conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(o.in_channels, o.out_channels, o.kernel_size)
                                      .stride(o.stride)
                                      .padding(o.padding)
                                      .bias(o.bias)));
  }
  torch::Tensor forward(const torch::Tensor& x) override {
    return activate(conv_->forward(x), activation_);
  }

 private:
  torch::nn::Conv2d conv_{nullptr};
  Activation activation_;
};

/// y = act(conv_transpose2d(x, W) + b) with ATen's transposed convolution.
class ConvTranspose2dLayer final : public Layer {
 public:
  explicit ConvTranspose2dLayer(const Conv2dOptions& o) : activation_(o.activation) {
    conv_ = register_module(
        "conv", torch::nn::ConvTranspose2d(
                    torch::nn::ConvTranspose2dOptions(o.in_channels, o.out_channels, o.kernel_size)
                        .stride(o.stride)
                        .padding(o.padding)
                        .output_padding(o.output_padding)
                        .bias(o.bias)));
  }
  torch::Tensor forward(const torch::Tensor& x) override {
    return activate(conv_->forward(x), activation_);
  }

 private:
  torch::nn::ConvTranspose2d conv_{nullptr};
  Activation activation_;
};

/// y = act(BN(x)) with ATen's batch norm (batch statistics in training mode, running ones in
/// eval mode).
class BatchNorm2dLayer final : public Layer {
 public:
  explicit BatchNorm2dLayer(const BatchNormOptions& o) : activation_(o.activation) {
    bn_ = register_module("bn", torch::nn::BatchNorm2d(torch::nn::BatchNorm2dOptions(o.channels)
                                                           .eps(o.eps)
                                                           .momentum(o.momentum)
                                                           .affine(true)
                                                           .track_running_stats(true)));
  }
  torch::Tensor forward(const torch::Tensor& x) override {
    return activate(bn_->forward(x), activation_);
  }

 private:
  torch::nn::BatchNorm2d bn_{nullptr};
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

std::shared_ptr<Layer> TorchCpuBackend::conv2d(const Conv2dOptions& options) {
  check_conv(options, false);
  return std::make_shared<Conv2dLayer>(options);
}

std::shared_ptr<Layer> TorchCpuBackend::conv_transpose2d(const Conv2dOptions& options) {
  check_conv(options, true);
  return std::make_shared<ConvTranspose2dLayer>(options);
}

std::shared_ptr<Layer> TorchCpuBackend::batch_norm2d(const BatchNormOptions& options) {
  if (options.channels < 1) {
    throw Error("torch-cpu batch_norm2d: channels must be positive, got " + std::to_string(options.channels));
  }
  if (!(options.eps > 0) || !(options.momentum >= 0 && options.momentum <= 1)) {
    throw Error("torch-cpu batch_norm2d: need eps > 0 and momentum in [0, 1], got eps " +
                std::to_string(options.eps) + ", momentum " + std::to_string(options.momentum));
  }
  return std::make_shared<BatchNorm2dLayer>(options);
}

std::string TorchCpuBackend::describe() const {
  return "cpu, " + std::to_string(threads_) + " intra-op threads, " +
         std::to_string(blas_threads()) + " OpenBLAS threads, LibTorch " + shim::torch_version();
}

}  // namespace vaelab::plugins
