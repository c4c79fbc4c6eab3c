#pragma once

#include <torch/types.h>

namespace vaelab {

/// The fused loss: the ELBO's element-wise work — reparameterization with the KL, and the
/// Bernoulli and Gaussian likelihoods — each one pass over the batch forward and one backward
/// (autograd functions with analytic gradients), threaded over images. Used where every tensor is
/// a float tensor on the CPU; elsewhere the same quantities come from torch operations.

/// True when the fused path computes on this tensor (float, on the CPU).
bool fused_loss_applies(const torch::Tensor& t);

/// z = mean + exp(log_var / 2) · eps, and KL(N(mean, exp(log_var)) ‖ N(0, I)) per image [B].
struct ReparameterizedKl {
  torch::Tensor z;
  torch::Tensor kl;
};
ReparameterizedKl reparameterize_kl(const torch::Tensor& mean, const torch::Tensor& log_var,
                                    const torch::Tensor& eps);

/// Σ_pixels x·l − softplus(l) per image [B] (Bernoulli with logits l).
torch::Tensor fused_bernoulli_log_prob(const torch::Tensor& x, const torch::Tensor& logits);
/// Σ_pixels log N(x; mean, sigma²) per image [B].
torch::Tensor fused_gaussian_log_prob(const torch::Tensor& x, const torch::Tensor& mean, double sigma);

}  // namespace vaelab
