#pragma once
// EDM (Karras et al. 2022): preconditioning, training noise and loss weighting, and the Heun
// sampler, shared by gen-diffusion (its own denoiser networks) and gen-torchscript (a denoiser
// exported from Python). Part of vaelab::core.

#include <cstdint>
#include <functional>
#include <limits>
#include <vector>

#include <torch/types.h>

namespace vaelab::edm {

/// The preconditioning coefficients for noise levels `sigma` (any shape), Karras et al. Table 1:
/// c_skip = σd²/(σ²+σd²), c_out = σ·σd/√(σ²+σd²), c_in = 1/√(σ²+σd²), c_noise = ¼ ln σ.
struct Preconditioning {
  torch::Tensor c_skip, c_out, c_in, c_noise;
};
Preconditioning preconditioning(const torch::Tensor& sigma, double sigma_data);

/// The EDM loss weight λ(σ) = (σ² + σd²) / (σ·σd)².
torch::Tensor loss_weight(const torch::Tensor& sigma, double sigma_data);

/// Training noise levels: ln σ ~ N(p_mean, p_std²), one per row of a batch of `n`.
torch::Tensor sample_training_sigma(int64_t n, double p_mean, double p_std, at::Generator& gen);

/// D(x, σ): the denoised estimate of x [B, ...] at noise levels sigma [B] (float64 or float32).
using Denoiser = std::function<torch::Tensor(const torch::Tensor& x, const torch::Tensor& sigma)>;

/// Wraps a raw network F(c_in·x, c_noise) into the preconditioned D = c_skip·x + c_out·F.
Denoiser precondition(std::function<torch::Tensor(const torch::Tensor&, const torch::Tensor&)> raw,
                      double sigma_data);

struct SamplerSettings {
  int64_t steps = 18;
  double sigma_min = 0.002;
  double sigma_max = 80.0;
  double rho = 7.0;
  // Stochastic churn (Karras et al. Algorithm 2); s_churn = 0 is the deterministic sampler.
  double s_churn = 0.0;
  double s_tmin = 0.0;
  double s_tmax = std::numeric_limits<double>::infinity();
  double s_noise = 1.0;
};

/// The steps + 1 noise levels t_0 > ... > t_{steps-1} > t_steps = 0 (float64).
torch::Tensor sigma_schedule(const SamplerSettings& settings);

/// The 2nd-order Heun sampler. Image i starts from, and draws its churn noise from, a generator
/// seeded with seeds[i] alone, so it is reproducible whatever the batch. `image_shape` excludes
/// the batch dimension. Returns float [seeds.size(), image_shape...] in the data's scale.
torch::Tensor heun_sample(const Denoiser& denoiser, const std::vector<int64_t>& image_shape,
                          const std::vector<uint64_t>& seeds, const SamplerSettings& settings,
                          torch::Device device = torch::kCPU);

}  // namespace vaelab::edm
