// Evaluation: the amortization gap G_a (per-image optimized posteriors against the encoder's).
#include <vaelab/metrics/amortization.hpp>

#include <cmath>
#include <limits>

#include <torch/torch.h>

#include <vaelab/error.hpp>
#include <vaelab/metrics/elbo.hpp>
#include <vaelab/torch_shim.hpp>

namespace vaelab {
namespace {

/// Mean over `samples` draws of log p(x|z) − KL(q || p), per image [B], for q = N(mean, exp(log_var)).
torch::Tensor elbo_of(Model& model, const Likelihood& likelihood, const torch::Tensor& x,
                      const torch::Tensor& mean, const torch::Tensor& log_var, int64_t samples,
                      at::Generator* noise) {
  auto shape = mean.sizes().vec();
  shape.insert(shape.begin(), samples);
  const torch::Tensor z =
      mean.unsqueeze(0) + (0.5 * log_var).exp().unsqueeze(0) * shim::randn(shape, mean.options(), noise);
  auto x_shape = x.sizes().vec();
  x_shape.insert(x_shape.begin(), samples);
  const torch::Tensor xs = x.unsqueeze(0).expand(x_shape).flatten(0, 1);
  const torch::Tensor log_px =
      likelihood.log_prob(xs, model.decode(z.flatten(0, 1))).view({samples, x.size(0)}).mean(0);
  return log_px - gaussian_kl(mean, log_var);
}

/// Sets requires_grad on every parameter and returns the previous flags.
std::vector<bool> freeze(torch::nn::Module& module) {
  std::vector<bool> flags;
  for (auto& p : module.parameters()) {
    flags.push_back(p.requires_grad());
    p.set_requires_grad(false);
  }
  return flags;
}

void unfreeze(torch::nn::Module& module, const std::vector<bool>& flags) {
  size_t i = 0;
  for (auto& p : module.parameters()) p.set_requires_grad(flags[i++]);
}

}  // namespace

AmortizationResult amortization_gap(Model& model, const Likelihood& likelihood,
                                    const torch::Tensor& test, const AmortizationOptions& o,
                                    uint64_t seed, const torch::Device& device, Posterior* q_star) {
  if (o.images < 1 || o.batch_size < 1 || o.steps < 0 || o.samples < 1 || o.final_samples < 1 ||
      o.check_every < 1 || o.patience < 1 || !(o.lr > 0)) {
    throw ConfigError("eval.amortization: images, batch_size, samples, final_samples, check_every "
                      "and patience must be at least 1, steps at least 0, lr positive");
  }
  torch::nn::Module& module = model.module();
  const bool was_training = module.is_training();
  module.eval();
  const std::vector<bool> flags = freeze(module);
  at::Generator generator = shim::make_cpu_generator(seed);

  AmortizationResult result;
  const int64_t n = std::min<int64_t>(o.images, test.size(0));
  double elbo_sum = 0;
  double star_sum = 0;
  std::vector<torch::Tensor> star_means;
  std::vector<torch::Tensor> star_log_vars;
  try {
    for (int64_t start = 0; start < n; start += o.batch_size) {
      const torch::Tensor x = test.slice(0, start, std::min(n, start + o.batch_size)).to(device);
      Posterior q;
      {
        torch::NoGradGuard no_grad;
        q = model.encode(x);
        elbo_sum += elbo_of(model, likelihood, x, q.mean, q.log_var, o.final_samples, &generator)
                        .sum()
                        .item<double>();
      }
      torch::Tensor mean = q.mean.detach().clone().set_requires_grad(true);
      torch::Tensor log_var = q.log_var.detach().clone().set_requires_grad(true);
      torch::optim::Adam adam({mean, log_var}, torch::optim::AdamOptions(o.lr));
      double best = std::numeric_limits<double>::infinity();
      double window = 0;
      int64_t stale = 0;
      auto& adam_options = static_cast<torch::optim::AdamOptions&>(adam.param_groups()[0].options());
      for (int64_t step = 1; step <= o.steps; ++step) {
        if (o.cosine) {
          const double progress = static_cast<double>(step - 1) / static_cast<double>(o.steps);
          adam_options.lr(o.lr * 0.5 * (1 + std::cos(M_PI * progress)));
        }
        adam.zero_grad();
        // Summed over images: each image's variables get the gradient of its own ELBO.
        const torch::Tensor loss =
            -elbo_of(model, likelihood, x, mean, log_var, o.samples, &generator).sum();
        loss.backward();
        adam.step();
        ++result.steps_run;
        window += loss.item<double>();
        if (step % o.check_every == 0) {
          if (window < best) {
            best = window;
            stale = 0;
          } else if (++stale >= o.patience) {
            break;
          }
          window = 0;
        }
      }
      torch::NoGradGuard no_grad;
      if (q_star != nullptr) {
        star_means.push_back(mean.detach().cpu());
        star_log_vars.push_back(log_var.detach().cpu());
      }
      star_sum += elbo_of(model, likelihood, x, mean, log_var, o.final_samples, &generator)
                      .sum()
                      .item<double>();
    }
  } catch (...) {
    unfreeze(module, flags);
    if (was_training) module.train();
    throw;
  }
  unfreeze(module, flags);
  if (was_training) module.train();
  result.images = n;
  if (q_star != nullptr && !star_means.empty()) {
    q_star->mean = torch::cat(star_means, 0);
    q_star->log_var = torch::cat(star_log_vars, 0);
  }
  if (n > 0) {
    result.elbo_nats = elbo_sum / static_cast<double>(n);
    result.elbo_star_nats = star_sum / static_cast<double>(n);
  }
  result.amortization_gap_nats = result.elbo_star_nats - result.elbo_nats;
  return result;
}

}  // namespace vaelab
