#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <torch/nn/module.h>
#include <torch/types.h>

#include <vaelab/plugin_kind.hpp>

namespace vaelab {

/// An activation a backend may fuse into the layer before it.
enum class Activation { none, relu };

/// A layer made by a backend: a torch module with one input and one output. Models register it
/// with `register_module` like any other submodule; its parameters are ordinary torch parameters.
class Layer : public torch::nn::Module {
 public:
  virtual torch::Tensor forward(const torch::Tensor& x) = 0;
};

/// A fully-connected layer: [B, in_features] → [B, out_features].
struct DenseOptions {
  int64_t in_features = 0;
  int64_t out_features = 0;
  bool bias = true;
  Activation activation = Activation::none;  ///< applied after the affine map
};

/// A 2-D convolution or transposed convolution over [B, C, H, W] with a square kernel and the
/// same stride and padding along both axes; weights laid out as ATen's ([out, in, k, k] for a
/// convolution, [in, out, k, k] for a transposed one), so values can be compared across backends.
struct Conv2dOptions {
  int64_t in_channels = 0;
  int64_t out_channels = 0;
  int64_t kernel_size = 1;
  int64_t stride = 1;
  int64_t padding = 0;
  /// Extra rows and columns added on one side of a transposed convolution's output (must be
  /// smaller than stride); must be 0 for a convolution.
  int64_t output_padding = 0;
  bool bias = true;
  Activation activation = Activation::none;  ///< applied after the convolution (and bias)
};

/// Batch normalization over the channels of [B, C, H, W]: in training mode it normalizes with
/// the batch's statistics and updates the running ones; in eval mode it uses the running ones.
/// It has an affine weight and bias per channel.
struct BatchNormOptions {
  int64_t channels = 0;
  double eps = 1e-5;  ///< added to the variance before the square root
  /// PyTorch's convention: running = (1 − momentum) · running + momentum · batch statistic
  /// (the running variance uses the unbiased batch variance).
  double momentum = 0.1;
  Activation activation = Activation::none;  ///< applied after the normalization
};

/// A compute backend plugin (docs/architecture.md, "The interfaces"): where tensors live, how many threads compute, and a
/// layer factory so models are written once and run on every backend.
class Backend {
 public:
  virtual ~Backend() = default;
  virtual torch::Device device() const = 0;
  /// Applies the backend's thread settings to the process (intra-op threads, BLAS threads).
  /// The host calls it once, before any compute.
  virtual void apply_threads() = 0;
  /// Intra-op threads in use after apply_threads().
  virtual int threads() const = 0;
  /// Waits for queued work on the device (no-op on CPU).
  virtual void synchronize() = 0;
  /// A fully-connected layer y = act(x W^T + b) on [B, in_features] inputs.
  virtual std::shared_ptr<Layer> dense(const DenseOptions& options) = 0;
  /// A convolution y = act(conv(x, W) + b) on [B, in_channels, H, W] inputs; output size
  /// floor((H + 2·padding − kernel_size) / stride) + 1 per spatial axis.
  virtual std::shared_ptr<Layer> conv2d(const Conv2dOptions& options) = 0;
  /// A transposed convolution y = act(conv_transpose(x, W) + b) on [B, in_channels, H, W] inputs;
  /// output size (H − 1)·stride − 2·padding + kernel_size + output_padding per spatial axis.
  virtual std::shared_ptr<Layer> conv_transpose2d(const Conv2dOptions& options) = 0;
  /// Batch normalization y = act(BN(x)) on [B, channels, H, W] inputs; its running mean and
  /// variance are module buffers (saved with the parameters, moved with to(device)).
  virtual std::shared_ptr<Layer> batch_norm2d(const BatchNormOptions& options) = 0;
  /// One line: device, threads, library versions.
  virtual std::string describe() const = 0;
};

template <>
struct PluginKindOf<Backend> {
  static constexpr vl_plugin_kind value = VL_PLUGIN_KIND_BACKEND;
};

}  // namespace vaelab
