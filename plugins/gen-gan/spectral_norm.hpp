#pragma once
// Spectrally normalized layers (Miyato, Kataoka, Koyama & Yoshida 2018) for the discriminator.
// The backend's layer factory has no spectral norm: its layers own their weight and apply it
// themselves, while spectral norm must divide the weight by its largest singular value inside the
// autograd graph at every forward. So these two layers are written in plain LibTorch (ATen's
// conv2d and linear on the backend's device) rather than built by the backend; the rest of the
// GAN uses the backend's layers.

#include <ATen/core/Generator.h>
#include <torch/types.h>

#include <vaelab/backend.hpp>

namespace vaelab::plugins {

/// W / σ(W), σ estimated by power iteration on W reshaped to [out, in·k·k]. In training mode
/// `iterations` steps refine the left singular vector `u` (updated in place, no gradient) first;
/// in eval mode `u` is used as it is. The gradient flows through W and σ (u and v held fixed),
/// as in Miyato et al.
torch::Tensor spectrally_normalized(const torch::Tensor& weight, torch::Tensor& u,
                                    int64_t iterations, bool training);

/// A convolution y = act(conv2d(x, W/σ(W)) + b). Parameters: `weight` [out, in, k, k], `bias`;
/// buffer `u` [out].
class SpectralNormConv2d final : public Layer {
 public:
  SpectralNormConv2d(const Conv2dOptions& options, int64_t power_iterations, at::Generator& init);
  torch::Tensor forward(const torch::Tensor& x) override;

 private:
  Conv2dOptions options_;
  int64_t iterations_;
  torch::Tensor weight_, bias_, u_;
};

/// A fully-connected layer y = act(x (W/σ(W))ᵀ + b). Parameters: `weight` [out, in], `bias`;
/// buffer `u` [out].
class SpectralNormDense final : public Layer {
 public:
  SpectralNormDense(const DenseOptions& options, int64_t power_iterations, at::Generator& init);
  torch::Tensor forward(const torch::Tensor& x) override;

 private:
  DenseOptions options_;
  int64_t iterations_;
  torch::Tensor weight_, bias_, u_;
};

}  // namespace vaelab::plugins
