// Evaluation: the ELBO and its terms (log-likelihood, KL) per image, Monte Carlo over z.
#include <vaelab/metrics/elbo.hpp>

#include <algorithm>
#include <utility>

#include <torch/torch.h>

#include <vaelab/error.hpp>
#include <vaelab/metrics/fused_loss.hpp>
#include <vaelab/torch_shim.hpp>

namespace vaelab {

torch::Tensor gaussian_kl(const torch::Tensor& mean, const torch::Tensor& log_var) {
  return 0.5 * (mean.square() + log_var.exp() - 1.0 - log_var).flatten(1).sum(1);
}

ElboTerms elbo_terms(Model& model, const Likelihood& likelihood, const torch::Tensor& x,
                     int64_t samples, at::Generator* noise) {
  if (samples < 1) throw Error("ELBO needs at least one Monte Carlo sample, got " + std::to_string(samples));
  const Posterior q = model.encode(x);
  // z = mean + σ·ε and the KL in one pass (metrics/fused_loss.hpp), the KL from the first draw.
  torch::Tensor log_likelihood;
  torch::Tensor kl;
  for (int64_t s = 0; s < samples; ++s) {
    const ReparameterizedKl r = reparameterize_kl(q.mean, q.log_var, shim::randn_like(q.mean, noise));
    if (s == 0) kl = r.kl;
    const torch::Tensor ll = likelihood.log_prob(x, model.decode(r.z));
    log_likelihood = s == 0 ? ll : log_likelihood + ll;
  }
  if (samples > 1) log_likelihood = log_likelihood / static_cast<double>(samples);
  ElboTerms terms;
  terms.kl = kl;
  terms.log_likelihood = log_likelihood;
  terms.elbo = log_likelihood - terms.kl;
  return terms;
}

ElboSummary evaluate_elbo(Model& model, const Likelihood& likelihood, const torch::Tensor& data,
                          int64_t samples, int64_t batch_size, uint64_t seed,
                          const torch::Device& device, bool keep_per_image) {
  torch::nn::Module& module = model.module();
  const bool was_training = module.is_training();
  module.eval();
  torch::NoGradGuard no_grad;
  at::Generator generator = shim::make_cpu_generator(seed);
  double elbo = 0;
  double ll = 0;
  double kl = 0;
  std::vector<double> per_image;
  const int64_t n = data.size(0);
  for (int64_t start = 0; start < n; start += batch_size) {
    const int64_t end = std::min(n, start + batch_size);
    const torch::Tensor x = data.slice(0, start, end).to(device);
    const ElboTerms terms = elbo_terms(model, likelihood, x, samples, &generator);
    elbo += terms.elbo.sum().item<double>();
    ll += terms.log_likelihood.sum().item<double>();
    kl += terms.kl.sum().item<double>();
    if (keep_per_image) {
      const torch::Tensor values = terms.elbo.to(torch::kCPU, torch::kDouble).contiguous();
      per_image.insert(per_image.end(), values.data_ptr<double>(), values.data_ptr<double>() + values.numel());
    }
  }
  if (was_training) module.train();
  ElboSummary summary;
  summary.images = n;
  summary.per_image = std::move(per_image);
  if (n > 0) {
    summary.elbo_nats = elbo / static_cast<double>(n);
    summary.log_likelihood_nats = ll / static_cast<double>(n);
    summary.kl_nats = kl / static_cast<double>(n);
  }
  return summary;
}

double auroc(const std::vector<double>& positives, const std::vector<double>& negatives) {
  if (positives.empty() || negatives.empty()) {
    throw Error("AUROC needs at least one positive and one negative score");
  }
  // Rank all scores together (ties share their mean rank); U = rank sum of positives − P(P+1)/2.
  std::vector<std::pair<double, bool>> all;
  all.reserve(positives.size() + negatives.size());
  for (double v : positives) all.emplace_back(v, true);
  for (double v : negatives) all.emplace_back(v, false);
  std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  double positive_rank_sum = 0;
  for (size_t i = 0; i < all.size();) {
    size_t j = i;
    while (j < all.size() && all[j].first == all[i].first) ++j;
    const double mean_rank = 0.5 * static_cast<double>(i + 1 + j);  // ranks i+1 .. j
    for (size_t k = i; k < j; ++k) {
      if (all[k].second) positive_rank_sum += mean_rank;
    }
    i = j;
  }
  const auto p = static_cast<double>(positives.size());
  const auto q = static_cast<double>(negatives.size());
  return (positive_rank_sum - p * (p + 1) / 2) / (p * q);
}

}  // namespace vaelab
