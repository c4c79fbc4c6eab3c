#pragma once

#include <vector>

#include <cstdint>

#include <torch/types.h>

#include <vaelab/likelihood.hpp>
#include <vaelab/model.hpp>

namespace vaelab {

/// Per-image terms of the ELBO (Xiao, Zenn & Bamler 2024, Eq. 2), each [B], in nats:
/// elbo = log_likelihood − kl, with log_likelihood averaged over the Monte Carlo samples and the
/// KL between q(z|x) and the N(0, I) prior in closed form.
struct ElboTerms {
  torch::Tensor elbo;
  torch::Tensor log_likelihood;
  torch::Tensor kl;
};

/// KL(N(mean, exp(log_var)) || N(0, I)) per image, summed over latent dimensions: [B].
torch::Tensor gaussian_kl(const torch::Tensor& mean, const torch::Tensor& log_var);

/// ELBO terms for a batch with `samples` reparameterized draws per image. `noise` draws from
/// the given generator when not null (evaluation), else from the global one (training). Keeps the
/// autograd graph: the training loss is −elbo.mean().
ElboTerms elbo_terms(Model& model, const Likelihood& likelihood, const torch::Tensor& x,
                     int64_t samples, at::Generator* noise = nullptr);

/// Dataset means, nats per image.
struct ElboSummary {
  double elbo_nats = 0;
  double log_likelihood_nats = 0;
  double kl_nats = 0;
  int64_t images = 0;
  std::vector<double> per_image;  ///< the ELBO of each image, when asked for
};

/// Area under the ROC curve of `scores` separating `positives` from `negatives` (higher = more
/// positive): the probability that a random positive outscores a random negative, ties counting
/// one half (the Mann–Whitney U statistic over |P|·|N|). Throws when either set is empty.
double auroc(const std::vector<double>& positives, const std::vector<double>& negatives);

/// Mean ELBO over `data` (float [N, C, H, W] on the CPU) in eval mode without gradients, in
/// batches of `batch_size` moved to `device`. Noise comes from a generator seeded with `seed`, so
/// the same model and data give the same number. Restores the module's train/eval mode.
ElboSummary evaluate_elbo(Model& model, const Likelihood& likelihood, const torch::Tensor& data,
                          int64_t samples, int64_t batch_size, uint64_t seed,
                          const torch::Device& device, bool keep_per_image = false);

}  // namespace vaelab
