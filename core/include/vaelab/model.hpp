#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <torch/nn/module.h>
#include <torch/types.h>

#include <vaelab/backend.hpp>
#include <vaelab/plugin_kind.hpp>

namespace vaelab {

/// What the host tells a model before it builds its layers.
struct ModelSpec {
  int64_t channels = 0;  ///< of the (preprocessed) input images
  int64_t height = 0;
  int64_t width = 0;
  /// Channels the decoder must output per image: the likelihood's parameters
  /// (Likelihood::param_channels), laid out [B, param_channels, height, width].
  int64_t param_channels = 0;
};

/// The encoder's diagonal Gaussian q(z|x), shaped like latent_shape() with a batch dimension.
struct Posterior {
  torch::Tensor mean;
  torch::Tensor log_var;
};

/// A VAE plugin (docs/architecture.md, "The interfaces"). Made by `create` from its config table, then built once with
/// build(); the prior is N(0, I) and the likelihood is the host's (core/likelihood.hpp).
class Model {
 public:
  virtual ~Model() = default;
  /// Creates the layers through the backend's factory. Called once, after the global torch seed
  /// is set, so initialisation is reproducible.
  virtual void build(const ModelSpec& spec, Backend& backend) = 0;
  /// x: float [B, C, H, W] in the likelihood's input scale.
  virtual Posterior encode(const torch::Tensor& x) = 0;
  /// z: [B, latent_shape...] → likelihood parameters [B, param_channels, H, W].
  virtual torch::Tensor decode(const torch::Tensor& z) = 0;
  /// The module that owns every parameter and buffer (train/eval mode, to(device), state).
  virtual torch::nn::Module& module() = 0;
  /// Θ_z: names (as in module().named_parameters()) of the parameters of the layers that touch z
  /// (the encoder's last layer and the decoder's first). Everything else is Θ_¬z.
  virtual std::vector<std::string> latent_adjacent_parameters() const = 0;
  /// Shape of one latent code, without the batch dimension.
  virtual std::vector<int64_t> latent_shape() const = 0;
};

template <>
struct PluginKindOf<Model> {
  static constexpr vl_plugin_kind value = VL_PLUGIN_KIND_MODEL;
};

}  // namespace vaelab
