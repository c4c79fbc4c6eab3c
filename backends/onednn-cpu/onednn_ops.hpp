#pragma once
// The onednn-cpu layers' compute: autograd functions whose forward and backward run oneDNN
// primitives on the tensors' own memory. The layers (onednn_cpu_backend.cpp) check shapes,
// dtypes and devices before calling these.

#include <cstdint>
#include <string>

#include <torch/types.h>

#include "onednn_runtime.hpp"

namespace vaelab::plugins::onednn {

/// What every operation carries into its autograd node: the runtime and a label naming the
/// layer in error messages ("onednn-cpu dense(784→512, relu)").
struct Op : torch::CustomClassHolder {
  Op(RuntimePtr runtime, std::string label) : rt(std::move(runtime)), label(std::move(label)) {}
  RuntimePtr rt;
  std::string label;
};

struct DenseOp final : Op {
  DenseOp(RuntimePtr runtime, std::string label, int64_t in, int64_t out, bool bias, bool relu)
      : Op(std::move(runtime), std::move(label)), in_features(in), out_features(out), bias(bias), relu(relu) {}
  int64_t in_features, out_features;
  bool bias, relu;
};

/// A convolution, or (transposed = true) a transposed convolution, with a square kernel.
struct ConvOp final : Op {
  ConvOp(RuntimePtr runtime, std::string label) : Op(std::move(runtime), std::move(label)) {}
  bool transposed = false;
  int64_t in_channels = 0, out_channels = 0, kernel = 1, stride = 1, padding = 0, output_padding = 0;
  bool bias = true, relu = false;
};

struct BatchNormOp final : Op {
  BatchNormOp(RuntimePtr runtime, std::string label, int64_t channels, double eps, double momentum, bool relu)
      : Op(std::move(runtime), std::move(label)), channels(channels), eps(eps), momentum(momentum), relu(relu) {}
  int64_t channels;
  double eps, momentum;
  bool relu;
};

/// y = act(x Wᵀ + b); x [B, in] float32, w [out, in], b [out] or undefined.
torch::Tensor dense(const c10::intrusive_ptr<DenseOp>& op, const torch::Tensor& x, const torch::Tensor& w,
                    const torch::Tensor& b);

/// Output height (or width) of `op` for an input of `size` rows; may be < 1 for a too small input.
int64_t conv_output_size(const ConvOp& op, int64_t size);

/// y = act(conv(x, W) + b) or act(conv_transpose(x, W) + b); x [B, C, H, W] float32, w in ATen's
/// layout ([out, in, k, k], transposed: [in, out, k, k]), b [out] or undefined.
torch::Tensor conv(const c10::intrusive_ptr<ConvOp>& op, const torch::Tensor& x, const torch::Tensor& w,
                   const torch::Tensor& b);

/// y = act(BN(x)) over x [B, C, H, W] float32. Training: batch statistics, and the running ones
/// (and num_batches_tracked) updated in place with PyTorch's momentum convention; eval: the
/// running statistics.
torch::Tensor batch_norm(const c10::intrusive_ptr<BatchNormOp>& op, const torch::Tensor& x, const torch::Tensor& w,
                         const torch::Tensor& b, const torch::Tensor& running_mean, const torch::Tensor& running_var,
                         const torch::Tensor& num_batches_tracked, bool training);

}  // namespace vaelab::plugins::onednn
