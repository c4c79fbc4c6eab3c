#pragma once

#include <cstdint>

#include <torch/types.h>

#include <vaelab/likelihood.hpp>
#include <vaelab/model.hpp>

namespace vaelab {

/// How q*(z|x) is found for the amortization gap (the paper does not say; these follow Cremer
/// et al. 2018 where it is cheap enough, and are documented in core/defaults.toml [eval.amortization]).
struct AmortizationOptions {
  int64_t images = 1000;        ///< test images (the first ones of the test split)
  int64_t batch_size = 1000;    ///< images optimized together: one Adam over [batch, latent] tensors
  int64_t steps = 200;          ///< most Adam steps per batch
  int64_t samples = 4;          ///< reparameterized samples per image per step
  double lr = 0.1;              ///< Adam learning rate (the first step's, under the cosine schedule)
  bool cosine = true;           ///< decay the learning rate to 0 over `steps` on a half cosine
  int64_t check_every = 50;     ///< steps between plateau checks
  int64_t patience = 2;         ///< checks without improvement before stopping early
  int64_t final_samples = 100;  ///< samples per image for the final ELBO and ELBO* estimates
};

struct AmortizationResult {
  double elbo_nats = 0;       ///< ELBO with the encoder's q(z|x), on the same images and samples
  double elbo_star_nats = 0;  ///< ELBO with the per-image optimized Gaussian q*(z|x)
  double amortization_gap_nats = 0;  ///< elbo_star − elbo (Eq. 4)
  int64_t images = 0;
  int64_t steps_run = 0;  ///< Adam steps actually run, summed over batches
};

/// The amortization gap (Xiao, Zenn & Bamler 2024, Eq. 4): per image, a diagonal Gaussian
/// q*(z|x) is optimized with the decoder frozen, starting from the encoder's output, so
/// ELBO* ≥ ELBO up to Monte Carlo error. All images of a batch are optimized at once by one Adam
/// over [batch, latent] mean and log-variance tensors; a batch stops at `steps`, or earlier when
/// its mean loss over the last `check_every` steps has not improved for `patience` checks. The
/// model is in eval mode and its parameters receive no gradients.
/// When `q_star` is given, it receives the optimized mean and log-variance of every image (CPU).
AmortizationResult amortization_gap(Model& model, const Likelihood& likelihood,
                                    const torch::Tensor& test, const AmortizationOptions& options,
                                    uint64_t seed, const torch::Device& device,
                                    Posterior* q_star = nullptr);

}  // namespace vaelab
