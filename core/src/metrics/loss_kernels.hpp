#pragma once

// The fused loss's per-row loops (metrics/fused_loss.hpp), without torch: one pass over a row of
// pixels (or latent dimensions) forward, one backward. Sums are accumulated in double.
#include <cstdint>

namespace vaelab::kernels {

/// Σ_i x_i·l_i − softplus(l_i): the Bernoulli log-likelihood of x given logits l.
double bernoulli_log_prob(const float* x, const float* logits, int64_t n);
/// d/dl = g·(x − σ(l)), computed without cancellation; d/dx = g·l (dx may be null).
void bernoulli_log_prob_backward(const float* x, const float* logits, int64_t n, float g, float* dlogits,
                                 float* dx);

/// Σ_i −½((x_i − m_i)/σ)², without the normalizing constant.
double gaussian_log_prob(const float* x, const float* mean, int64_t n, float inv_sigma);
/// d/dm = g·(x − m)/σ²; d/dx = −d/dm (either may be null).
void gaussian_log_prob_backward(const float* x, const float* mean, int64_t n, float g_over_var, float* dmean,
                                float* dx);

/// z_i = μ_i + exp(½ℓ_i)·ε_i; returns the KL ½Σ_i(μ_i² + exp(ℓ_i) − 1 − ℓ_i).
double reparameterize_kl(const float* mean, const float* log_var, const float* eps, int64_t n, float* z);
/// dμ = gz + g_kl·μ; dℓ = gz·½exp(½ℓ)·ε + g_kl·½(exp(ℓ) − 1) (gz may be null: no gradient into z).
void reparameterize_kl_backward(const float* mean, const float* log_var, const float* eps, int64_t n,
                                const float* gz, float g_kl, float* dmean, float* dlog_var);

/// exp(x) in float, vectorizable (range reduction by ln 2 and a degree-7 Taylor polynomial;
/// within 2 ulp of std::exp over the float range; 0 below −87.3, +inf above 88.7).
float fast_exp(float x);
/// log(1 + t) for t in [0, 1], vectorizable (within 2 ulp, accurate for tiny t).
float fast_log1p_unit(float t);

}  // namespace vaelab::kernels
