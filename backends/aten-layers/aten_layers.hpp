#pragma once
// The ATen layers of the layer factory (core/include/vaelab/backend.hpp), shared by the torch-cpu
// and torch-cuda backends: one implementation, so the two differ only in where tensors live.

#include <memory>
#include <string>

#include <vaelab/backend.hpp>
#include <vaelab/config.hpp>

namespace vaelab::aten_layers {

/// The dtype matrix products and convolutions run in. Parameters, gradients and every layer's
/// output stay float32 either way ("master weights"): in bf16 a layer casts its input, weight
/// and bias to bfloat16, computes, and returns float32. Batch normalization always runs in f32.
enum class Compute { f32, bf16 };

/// The `precision` key of a backend's config ("f32" or "bf16"; f32 when the key is absent).
Compute precision_from(const ConfigTable& config);
const char* precision_name(Compute compute);

/// The factory's layers, each named as its torch::nn module ("linear", "conv", "bn") so
/// checkpoints move between backends. `backend` names the backend in error messages.
/// Parameters: linear.weight [out, in], linear.bias.
std::shared_ptr<Layer> dense(const std::string& backend, const DenseOptions& options, Compute compute);
/// Parameters: conv.weight [out, in, k, k], conv.bias.
std::shared_ptr<Layer> conv2d(const std::string& backend, const Conv2dOptions& options, Compute compute);
/// Parameters: conv.weight [in, out, k, k], conv.bias.
std::shared_ptr<Layer> conv_transpose2d(const std::string& backend, const Conv2dOptions& options,
                                        Compute compute);
/// Parameters: bn.weight, bn.bias; buffers: bn.running_mean, bn.running_var, bn.num_batches_tracked.
std::shared_ptr<Layer> batch_norm2d(const std::string& backend, const BatchNormOptions& options);

}  // namespace vaelab::aten_layers
