#pragma once
// The DCGAN networks (Radford, Metz & Chintala 2016) for square images of side 2^k, 8 <= 2^k <=
// 128.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Generator.h>
#include <torch/nn/module.h>

#include <vaelab/backend.hpp>

namespace vaelab::plugins {

/// The shapes both networks are built for.
struct DcganShape {
  int64_t channels = 1;
  int64_t side = 32;  ///< height = width
  int64_t latent = 100;
  int64_t generator_width = 64;
  int64_t discriminator_width = 64;

  /// Stride-2 stages between 4x4 and side x side (log2(side) - 2). Throws vaelab::Error naming the
  /// sizes when the images are not square with a power-of-two side in [8, 128], or have a channel
  /// count other than 1 or 3.
  static int64_t stages_for(int64_t channels, int64_t height, int64_t width);
};

/// z [B, latent] → dense → [B, g·2^(s-1), 4, 4] → BN+ReLU → s transposed convolutions (kernel 4,
/// stride 2, padding 1; BN+ReLU after all but the last) → tanh → [B, channels, side, side].
/// Built from the backend's layers.
class DcganGenerator final : public torch::nn::Module {
 public:
  DcganGenerator(const DcganShape& shape, Backend& backend);
  torch::Tensor forward(const torch::Tensor& z);
  /// DCGAN's initialization: weights of dense and convolution layers N(0, 0.02), batch-norm scales
  /// N(1, 0.02), biases 0; drawn from `init`.
  void initialize(at::Generator& init);

 private:
  DcganShape shape_;
  int64_t first_channels_;
  std::shared_ptr<Layer> input_;                   ///< dense latent → 4x4 feature maps
  std::vector<std::shared_ptr<Layer>> norms_;      ///< one per stage before the last convolution
  std::vector<std::shared_ptr<Layer>> upsamples_;  ///< the transposed convolutions
};

/// x [B, channels, side, side] → s convolutions (kernel 4, stride 2, padding 1; channels d, 2d,
/// ...) each followed by leaky ReLU (0.2) → dense to one logit [B]. With `spectral_norm` every
/// layer is a plain-LibTorch spectrally normalized one (spectral_norm.hpp); otherwise the
/// backend's.
class DcganDiscriminator final : public torch::nn::Module {
 public:
  DcganDiscriminator(const DcganShape& shape, Backend& backend, bool spectral_norm,
                     int64_t power_iterations, at::Generator& init);
  torch::Tensor forward(const torch::Tensor& x);
  /// Weights N(0, 0.02), biases 0 (the spectrally normalized layers start that way already).
  void initialize(at::Generator& init);

 private:
  std::vector<std::shared_ptr<Layer>> convs_;
  std::shared_ptr<Layer> output_;
  bool spectral_norm_;
};

}  // namespace vaelab::plugins
