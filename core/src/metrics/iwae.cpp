// Evaluation: the importance-weighted bound (IWAE), the log-likelihood estimate.
#include <vaelab/metrics/iwae.hpp>

#include <cmath>

#include <torch/torch.h>

#include <vaelab/error.hpp>
#include <vaelab/torch_shim.hpp>

namespace vaelab {
namespace {

constexpr double kLogTwoPi = 1.8378770664093453;

/// Σ over latent dims of log N(z; mean, exp(log_var)), for z [S, B, ...] and mean [B, ...].
torch::Tensor log_normal(const torch::Tensor& z, const torch::Tensor& mean,
                         const torch::Tensor& log_var) {
  return (-0.5 * ((z - mean).square() * (-log_var).exp() + log_var + kLogTwoPi)).flatten(2).sum(2);
}

}  // namespace

torch::Tensor importance_log_weights(Model& model, const Likelihood& likelihood,
                                     const torch::Tensor& x, int64_t samples, int64_t chunk,
                                     at::Generator* noise) {
  if (samples < 1) throw Error("IWAE needs at least one importance sample");
  if (chunk < 1) throw Error("IWAE chunk must be at least 1");
  torch::NoGradGuard no_grad;
  const Posterior q = model.encode(x);
  const torch::Tensor std_dev = (0.5 * q.log_var).exp();
  const int64_t b = x.size(0);
  std::vector<torch::Tensor> parts;
  for (int64_t start = 0; start < samples; start += chunk) {
    const int64_t c = std::min(chunk, samples - start);
    // [c, B, latent...] draws from q, decoded as one batch of c·B latents.
    auto shape = q.mean.sizes().vec();
    shape.insert(shape.begin(), c);
    const torch::Tensor eps = shim::randn(shape, q.mean.options(), noise);
    const torch::Tensor z = q.mean.unsqueeze(0) + std_dev.unsqueeze(0) * eps;
    const torch::Tensor flat_z = z.flatten(0, 1);
    auto x_sizes = x.sizes().vec();
    x_sizes.insert(x_sizes.begin(), c);
    const torch::Tensor xs = x.unsqueeze(0).expand(x_sizes).flatten(0, 1);
    const torch::Tensor log_px_z = likelihood.log_prob(xs, model.decode(flat_z)).view({c, b});
    const torch::Tensor log_pz = (-0.5 * (z.square() + kLogTwoPi)).flatten(2).sum(2);
    const torch::Tensor log_qz = log_normal(z, q.mean.unsqueeze(0), q.log_var.unsqueeze(0));
    parts.push_back(log_px_z + log_pz - log_qz);
  }
  return torch::cat(parts, 0);
}

torch::Tensor iwae_bound(Model& model, const Likelihood& likelihood, const torch::Tensor& x,
                         int64_t samples, int64_t chunk, at::Generator* noise) {
  const torch::Tensor log_w = importance_log_weights(model, likelihood, x, samples, chunk, noise);
  return torch::logsumexp(log_w.to(torch::kFloat64), 0) - std::log(static_cast<double>(samples));
}

IwaeSummary evaluate_iwae(Model& model, const Likelihood& likelihood, const torch::Tensor& data,
                          int64_t samples, int64_t batch_size, int64_t chunk, uint64_t seed,
                          const torch::Device& device) {
  torch::nn::Module& module = model.module();
  const bool was_training = module.is_training();
  module.eval();
  at::Generator generator = shim::make_cpu_generator(seed);
  double total = 0;
  const int64_t n = data.size(0);
  for (int64_t start = 0; start < n; start += batch_size) {
    const torch::Tensor x = data.slice(0, start, std::min(n, start + batch_size)).to(device);
    total += iwae_bound(model, likelihood, x, samples, chunk, &generator).sum().item<double>();
  }
  if (was_training) module.train();
  IwaeSummary s;
  s.images = n;
  s.samples = samples;
  s.iwae_nats = n > 0 ? total / static_cast<double>(n) : 0;
  return s;
}

}  // namespace vaelab
