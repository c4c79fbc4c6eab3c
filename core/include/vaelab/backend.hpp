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

struct DenseOptions {
  int64_t in_features = 0;
  int64_t out_features = 0;
  bool bias = true;
  Activation activation = Activation::none;
};

/// A compute backend plugin (DESIGN.md §4): where tensors live, how many threads compute, and a
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
  /// One line: device, threads, library versions.
  virtual std::string describe() const = 0;
};

template <>
struct PluginKindOf<Backend> {
  static constexpr vl_plugin_kind value = VL_PLUGIN_KIND_BACKEND;
};

}  // namespace vaelab
