#include <vaelab/metrics/elbo.hpp>

#include <torch/torch.h>

#include <vaelab/error.hpp>
#include <vaelab/torch_shim.hpp>

namespace vaelab {

torch::Tensor gaussian_kl(const torch::Tensor& mean, const torch::Tensor& log_var) {
  return 0.5 * (mean.square() + log_var.exp() - 1.0 - log_var).flatten(1).sum(1);
}

ElboTerms elbo_terms(Model& model, const Likelihood& likelihood, const torch::Tensor& x,
                     int64_t samples, at::Generator* noise) {
  if (samples < 1) throw Error("ELBO needs at least one Monte Carlo sample, got " + std::to_string(samples));
  const Posterior q = model.encode(x);
  const torch::Tensor std_dev = (0.5 * q.log_var).exp();
  torch::Tensor log_likelihood;
  for (int64_t s = 0; s < samples; ++s) {
    const torch::Tensor z = q.mean + std_dev * shim::randn_like(q.mean, noise);
    const torch::Tensor ll = likelihood.log_prob(x, model.decode(z));
    log_likelihood = s == 0 ? ll : log_likelihood + ll;
  }
  if (samples > 1) log_likelihood = log_likelihood / static_cast<double>(samples);
  ElboTerms terms;
  terms.kl = gaussian_kl(q.mean, q.log_var);
  terms.log_likelihood = log_likelihood;
  terms.elbo = log_likelihood - terms.kl;
  return terms;
}

ElboSummary evaluate_elbo(Model& model, const Likelihood& likelihood, const torch::Tensor& data,
                          int64_t samples, int64_t batch_size, uint64_t seed,
                          const torch::Device& device) {
  torch::nn::Module& module = model.module();
  const bool was_training = module.is_training();
  module.eval();
  torch::NoGradGuard no_grad;
  at::Generator generator = shim::make_cpu_generator(seed);
  double elbo = 0;
  double ll = 0;
  double kl = 0;
  const int64_t n = data.size(0);
  for (int64_t start = 0; start < n; start += batch_size) {
    const int64_t end = std::min(n, start + batch_size);
    const torch::Tensor x = data.slice(0, start, end).to(device);
    const ElboTerms terms = elbo_terms(model, likelihood, x, samples, &generator);
    elbo += terms.elbo.sum().item<double>();
    ll += terms.log_likelihood.sum().item<double>();
    kl += terms.kl.sum().item<double>();
  }
  if (was_training) module.train();
  ElboSummary summary;
  summary.images = n;
  if (n > 0) {
    summary.elbo_nats = elbo / static_cast<double>(n);
    summary.log_likelihood_nats = ll / static_cast<double>(n);
    summary.kl_nats = kl / static_cast<double>(n);
  }
  return summary;
}

}  // namespace vaelab
