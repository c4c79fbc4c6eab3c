#pragma once

#include <cstdint>

#include <torch/types.h>

#include <vaelab/likelihood.hpp>
#include <vaelab/model.hpp>

namespace vaelab {

/// log p(z) − log q(z|x) + log p(x|z) for each of `samples` draws: the importance log-weights,
/// [samples, B]. Draws come in chunks of `chunk` so the decoder sees at most chunk × B latents at
/// a time (memory stays bounded for K = 5000). No gradients are kept.
torch::Tensor importance_log_weights(Model& model, const Likelihood& likelihood,
                                     const torch::Tensor& x, int64_t samples, int64_t chunk,
                                     at::Generator* noise);

/// The importance-weighted bound (Burda et al. 2016) per image, [B] nats:
/// IWAE_K(x) = log (1/K) Σ_k p(x, z_k) / q(z_k|x), z_k ~ q(z|x). ELBO ≤ IWAE_K ≤ log p(x) in
/// expectation, tightening as K grows.
torch::Tensor iwae_bound(Model& model, const Likelihood& likelihood, const torch::Tensor& x,
                         int64_t samples, int64_t chunk, at::Generator* noise);

struct IwaeSummary {
  double iwae_nats = 0;  ///< mean over images
  int64_t images = 0;
  int64_t samples = 0;
};

/// Mean IWAE_K over `data` (float [N, C, H, W], CPU) in eval mode, batches of `batch_size` images
/// moved to `device`, noise from a generator seeded with `seed`.
IwaeSummary evaluate_iwae(Model& model, const Likelihood& likelihood, const torch::Tensor& data,
                          int64_t samples, int64_t batch_size, int64_t chunk, uint64_t seed,
                          const torch::Device& device);

}  // namespace vaelab
