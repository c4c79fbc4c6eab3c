// Generators: EDM preconditioning, training noise and loss weight, and the Heun sampler.
#include <vaelab/gen/edm.hpp>

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>

#include <torch/torch.h>

#include <vaelab/error.hpp>
#include <vaelab/torch_shim.hpp>

namespace vaelab::edm {
namespace {

void check_sigma_data(double sigma_data) {
  if (!(sigma_data > 0) || !std::isfinite(sigma_data)) {
    throw Error("edm: sigma_data must be a positive number, got " + std::to_string(sigma_data));
  }
}

void check_settings(const SamplerSettings& s) {
  if (s.steps < 1) throw Error("edm: the sampler needs at least 1 step, got " + std::to_string(s.steps));
  if (!(s.sigma_min > 0) || !(s.sigma_max > s.sigma_min) || !std::isfinite(s.sigma_max)) {
    throw Error("edm: need 0 < sigma_min < sigma_max < inf, got sigma_min = " +
                std::to_string(s.sigma_min) + ", sigma_max = " + std::to_string(s.sigma_max));
  }
  if (!(s.rho > 0) || !std::isfinite(s.rho)) {
    throw Error("edm: rho must be a positive number, got " + std::to_string(s.rho));
  }
  if (!(s.s_churn >= 0) || !std::isfinite(s.s_churn) || !(s.s_noise >= 0) ||
      !std::isfinite(s.s_noise)) {
    throw Error("edm: s_churn and s_noise must be finite and >= 0");
  }
}

/// sigma [B] reshaped to [B, 1, ...] so it broadcasts over x's other dimensions.
torch::Tensor per_row(const torch::Tensor& sigma, const torch::Tensor& x) {
  std::vector<int64_t> shape(static_cast<size_t>(x.dim()), 1);
  shape[0] = x.size(0);
  return sigma.to(x.options()).reshape(shape);
}

}  // namespace

Preconditioning preconditioning(const torch::Tensor& sigma, double sigma_data) {
  check_sigma_data(sigma_data);
  const double sd2 = sigma_data * sigma_data;
  const torch::Tensor total = sigma * sigma + sd2;  // σ² + σd²
  const torch::Tensor root = total.sqrt();
  return {sd2 / total, sigma * sigma_data / root, root.reciprocal(), sigma.log() / 4};
}

torch::Tensor loss_weight(const torch::Tensor& sigma, double sigma_data) {
  check_sigma_data(sigma_data);
  const torch::Tensor product = sigma * sigma_data;
  return (sigma * sigma + sigma_data * sigma_data) / (product * product);
}

torch::Tensor sample_training_sigma(int64_t n, double p_mean, double p_std, at::Generator& gen) {
  if (n < 0) throw Error("edm: cannot draw a negative number of noise levels");
  if (!(p_std >= 0) || !std::isfinite(p_std) || !std::isfinite(p_mean)) {
    throw Error("edm: the training noise distribution needs a finite p_mean and p_std >= 0");
  }
  const torch::Tensor normal = shim::randn({n}, torch::TensorOptions().dtype(torch::kFloat32), &gen);
  return (normal * p_std + p_mean).exp();
}

Denoiser precondition(std::function<torch::Tensor(const torch::Tensor&, const torch::Tensor&)> raw,
                      double sigma_data) {
  check_sigma_data(sigma_data);
  return [raw = std::move(raw), sigma_data](const torch::Tensor& x, const torch::Tensor& sigma) {
    const torch::Tensor s = sigma.to(x.options()).reshape({-1});
    if (s.size(0) != x.size(0)) {
      throw Error("edm: " + std::to_string(s.size(0)) + " noise levels for a batch of " +
                  std::to_string(x.size(0)));
    }
    const Preconditioning c = preconditioning(s, sigma_data);
    const torch::Tensor f = raw(x * per_row(c.c_in, x), c.c_noise).to(x.scalar_type());
    return x * per_row(c.c_skip, x) + f * per_row(c.c_out, x);
  };
}

torch::Tensor sigma_schedule(const SamplerSettings& settings) {
  check_settings(settings);
  const int64_t n = settings.steps;
  const double inv_rho = 1.0 / settings.rho;
  const double hi = std::pow(settings.sigma_max, inv_rho);
  const double lo = std::pow(settings.sigma_min, inv_rho);
  torch::Tensor t = torch::zeros({n + 1}, torch::kFloat64);
  auto a = t.accessor<double, 1>();
  for (int64_t i = 0; i < n; ++i) {
    // With one step the only level is sigma_max.
    const double frac = n > 1 ? static_cast<double>(i) / static_cast<double>(n - 1) : 0.0;
    a[i] = std::pow(hi + frac * (lo - hi), settings.rho);
  }
  a[n] = 0.0;
  return t;
}

torch::Tensor heun_sample(const Denoiser& denoiser, const std::vector<int64_t>& image_shape,
                          const std::vector<uint64_t>& seeds, const SamplerSettings& settings,
                          torch::Device device) {
  const torch::Tensor schedule = sigma_schedule(settings);
  const auto t = schedule.accessor<double, 1>();
  const int64_t n = static_cast<int64_t>(seeds.size());
  std::vector<int64_t> batch_shape{n};
  batch_shape.insert(batch_shape.end(), image_shape.begin(), image_shape.end());
  const auto options = torch::TensorOptions().dtype(torch::kFloat32).device(device);
  if (n == 0) return torch::zeros(batch_shape, options);

  // One generator per image: every draw for image i comes from seeds[i] alone, in the same order
  // whatever the batch.
  std::vector<at::Generator> generators;
  generators.reserve(seeds.size());
  for (const uint64_t seed : seeds) generators.push_back(shim::make_cpu_generator(seed));
  const auto cpu_float = torch::TensorOptions().dtype(torch::kFloat32);
  const auto draw = [&] {
    std::vector<torch::Tensor> rows;
    rows.reserve(generators.size());
    for (auto& gen : generators) rows.push_back(shim::randn(image_shape, cpu_float, &gen));
    return torch::stack(rows).to(device);
  };
  const auto denoise = [&](const torch::Tensor& x, double sigma) {
    const torch::Tensor d = denoiser(x, torch::full({n}, sigma, options));
    if (d.sizes() != x.sizes()) {
      throw Error("edm: the denoiser returned shape " + c10::str(d.sizes()) + " for input " +
                  c10::str(x.sizes()));
    }
    return d.to(options);
  };

  torch::NoGradGuard no_grad;
  const int64_t steps = settings.steps;
  const double max_gamma = std::sqrt(2.0) - 1.0;
  torch::Tensor x = draw() * t[0];
  for (int64_t i = 0; i < steps; ++i) {
    const double t_cur = t[i];
    const double t_next = t[i + 1];
    const bool churn = settings.s_churn > 0 && settings.s_tmin <= t_cur && t_cur <= settings.s_tmax;
    const double gamma = churn ? std::min(settings.s_churn / static_cast<double>(steps), max_gamma) : 0.0;
    const double t_hat = t_cur + gamma * t_cur;
    torch::Tensor x_hat = x;
    if (gamma > 0) {
      x_hat = x + std::sqrt(t_hat * t_hat - t_cur * t_cur) * settings.s_noise * draw();
    }
    const torch::Tensor d = (x_hat - denoise(x_hat, t_hat)) / t_hat;
    torch::Tensor x_next = x_hat + (t_next - t_hat) * d;
    if (t_next > 0) {  // the 2nd-order correction, skipped on the last step to σ = 0
      const torch::Tensor d_next = (x_next - denoise(x_next, t_next)) / t_next;
      x_next = x_hat + (t_next - t_hat) * (0.5 * d + 0.5 * d_next);
    }
    x = std::move(x_next);
  }
  return x;
}

}  // namespace vaelab::edm
