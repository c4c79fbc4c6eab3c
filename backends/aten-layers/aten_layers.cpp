#include "aten_layers.hpp"

#include <string>

#include <torch/torch.h>

#include <vaelab/error.hpp>

#include "layer_checks.hpp"

namespace vaelab::aten_layers {
namespace {

torch::Tensor activate(const torch::Tensor& y, Activation activation) {
  return activation == Activation::relu ? torch::relu(y) : y;
}

/// x in the compute dtype (a cast that autograd differentiates through back to float32).
torch::Tensor in_compute(const torch::Tensor& x, Compute compute) {
  return compute == Compute::bf16 ? x.to(torch::kBFloat16) : x;
}

torch::Tensor maybe_in_compute(const torch::Tensor& x, Compute compute) {
  return x.defined() ? in_compute(x, compute) : x;
}

torch::Tensor to_f32(const torch::Tensor& y) {
  return y.scalar_type() == torch::kFloat32 ? y : y.to(torch::kFloat32);
}

std::vector<int64_t> pair(int64_t v) { return {v, v}; }

void require_positive(const std::string& what, int64_t value, const std::string& name) {
  if (value < 1) throw Error(what + ": " + name + " must be positive, got " + std::to_string(value));
}

void check_conv(const std::string& backend, const Conv2dOptions& o, bool transposed) {
  backend_checks::check_conv(o, backend + (transposed ? " conv_transpose2d" : " conv2d"), transposed);
}

/// y = act(x Wᵀ + b).
class DenseLayer final : public Layer {
 public:
  DenseLayer(const DenseOptions& o, Compute compute) : activation_(o.activation), compute_(compute) {
    linear_ = register_module(
        "linear", torch::nn::Linear(torch::nn::LinearOptions(o.in_features, o.out_features).bias(o.bias)));
  }
  torch::Tensor forward(const torch::Tensor& x) override {
    if (compute_ == Compute::f32) return activate(linear_->forward(x), activation_);
    return activate(to_f32(torch::linear(in_compute(x, compute_), in_compute(linear_->weight, compute_),
                                         maybe_in_compute(linear_->bias, compute_))),
                    activation_);
  }

 private:
  torch::nn::Linear linear_{nullptr};
  Activation activation_;
  Compute compute_;
};

/// y = act(conv2d(x, W) + b).
class Conv2dLayer final : public Layer {
 public:
  Conv2dLayer(const Conv2dOptions& o, Compute compute) : o_(o), compute_(compute) {
    conv_ = register_module(
        "conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(o.in_channels, o.out_channels, o.kernel_size)
                                      .stride(o.stride)
                                      .padding(o.padding)
                                      .bias(o.bias)));
  }
  torch::Tensor forward(const torch::Tensor& x) override {
    if (compute_ == Compute::f32) return activate(conv_->forward(x), o_.activation);
    return activate(to_f32(torch::conv2d(in_compute(x, compute_), in_compute(conv_->weight, compute_),
                                         maybe_in_compute(conv_->bias, compute_), pair(o_.stride), pair(o_.padding))),
                    o_.activation);
  }

 private:
  torch::nn::Conv2d conv_{nullptr};
  Conv2dOptions o_;
  Compute compute_;
};

/// y = act(conv_transpose2d(x, W) + b).
class ConvTranspose2dLayer final : public Layer {
 public:
  ConvTranspose2dLayer(const Conv2dOptions& o, Compute compute) : o_(o), compute_(compute) {
    conv_ = register_module(
        "conv", torch::nn::ConvTranspose2d(
                    torch::nn::ConvTranspose2dOptions(o.in_channels, o.out_channels, o.kernel_size)
                        .stride(o.stride)
                        .padding(o.padding)
                        .output_padding(o.output_padding)
                        .bias(o.bias)));
  }
  torch::Tensor forward(const torch::Tensor& x) override {
    if (compute_ == Compute::f32) return activate(conv_->forward(x), o_.activation);
    return activate(
        to_f32(torch::conv_transpose2d(in_compute(x, compute_), in_compute(conv_->weight, compute_),
                                       maybe_in_compute(conv_->bias, compute_), pair(o_.stride),
                                       pair(o_.padding), pair(o_.output_padding))),
        o_.activation);
  }

 private:
  torch::nn::ConvTranspose2d conv_{nullptr};
  Conv2dOptions o_;
  Compute compute_;
};

/// y = act(BN(x)): batch statistics in training mode, running ones in eval mode.
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

Compute precision_from(const ConfigTable& config) {
  if (!config.contains("precision")) return Compute::f32;  // a config written before the key existed
  return config.get_choice("precision", {"f32", "bf16"}) == "bf16" ? Compute::bf16 : Compute::f32;
}

const char* precision_name(Compute compute) { return compute == Compute::bf16 ? "bf16" : "f32"; }

std::shared_ptr<Layer> dense(const std::string& backend, const DenseOptions& options, Compute compute) {
  require_positive(backend + " dense", options.in_features, "in_features");
  require_positive(backend + " dense", options.out_features, "out_features");
  return std::make_shared<DenseLayer>(options, compute);
}

std::shared_ptr<Layer> conv2d(const std::string& backend, const Conv2dOptions& options, Compute compute) {
  check_conv(backend, options, false);
  return std::make_shared<Conv2dLayer>(options, compute);
}

std::shared_ptr<Layer> conv_transpose2d(const std::string& backend, const Conv2dOptions& options,
                                        Compute compute) {
  check_conv(backend, options, true);
  return std::make_shared<ConvTranspose2dLayer>(options, compute);
}

std::shared_ptr<Layer> batch_norm2d(const std::string& backend, const BatchNormOptions& options) {
  if (options.channels < 1) {
    throw Error(backend + " batch_norm2d: channels must be positive, got " + std::to_string(options.channels));
  }
  if (!(options.eps > 0) || !(options.momentum >= 0 && options.momentum <= 1)) {
    throw Error(backend + " batch_norm2d: need eps > 0 and momentum in [0, 1], got eps " +
                std::to_string(options.eps) + ", momentum " + std::to_string(options.momentum));
  }
  return std::make_shared<BatchNorm2dLayer>(options);
}

}  // namespace vaelab::aten_layers
