// Evaluation: the robustness gap G_r under an L∞ PGD attack on the encoder.
#include <vaelab/metrics/robustness.hpp>

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include <torch/torch.h>

#include <vaelab/error.hpp>
#include <vaelab/torch_shim.hpp>

namespace vaelab {

namespace {

/// Puts a module in eval mode for its lifetime and restores the train flag afterwards.
class EvalModeGuard {
 public:
  explicit EvalModeGuard(torch::nn::Module& module)
      : module_(module), was_training_(module.is_training()) {
    module_.eval();
  }
  ~EvalModeGuard() {
    if (was_training_) module_.train();
  }
  EvalModeGuard(const EvalModeGuard&) = delete;
  EvalModeGuard& operator=(const EvalModeGuard&) = delete;

 private:
  torch::nn::Module& module_;
  bool was_training_;
};

std::string shape_string(const torch::Tensor& t) {
  std::string s = "[";
  for (int64_t d = 0; d < t.dim(); ++d) s += (d ? ", " : "") + std::to_string(t.size(d));
  return s + "]";
}

/// Normalised 2-D Gaussian window [1, 1, size, size], float64, centred on the window's middle.
torch::Tensor gaussian_window(int64_t size, double sigma) {
  const auto opts = torch::TensorOptions().dtype(torch::kDouble);
  const torch::Tensor x = torch::arange(size, opts) - static_cast<double>(size - 1) / 2.0;
  torch::Tensor g = (-(x * x) / (2.0 * sigma * sigma)).exp();
  g = g / g.sum();
  return torch::outer(g, g).view({1, 1, size, size});
}

/// Per-image means of the SSIM map and of the contrast-structure map at one scale: two [B].
std::pair<torch::Tensor, torch::Tensor> ssim_terms(const torch::Tensor& a, const torch::Tensor& b,
                                                   const MsSsimOptions& options) {
  const int64_t batch = a.size(0);
  const int64_t channels = a.size(1);
  const int64_t height = a.size(2);
  const int64_t width = a.size(3);
  const int64_t k = std::min({options.window_size, height, width});
  const torch::Tensor window = gaussian_window(k, options.sigma);
  // One depthwise filter over the five statistics' inputs, each channel as its own image.
  const torch::Tensor stacked =
      torch::cat({a, b, a * a, b * b, a * b}, 0).reshape({5 * batch * channels, 1, height, width});
  const torch::Tensor filtered = torch::conv2d(stacked, window)
                                     .reshape({5, batch, channels, height - k + 1, width - k + 1});
  const torch::Tensor mu_a = filtered[0];
  const torch::Tensor mu_b = filtered[1];
  const torch::Tensor mu_aa = mu_a * mu_a;
  const torch::Tensor mu_bb = mu_b * mu_b;
  const torch::Tensor mu_ab = mu_a * mu_b;
  const torch::Tensor var_a = filtered[2] - mu_aa;
  const torch::Tensor var_b = filtered[3] - mu_bb;
  const torch::Tensor cov = filtered[4] - mu_ab;
  const double c1 = (0.01 * options.data_range) * (0.01 * options.data_range);
  const double c2 = (0.03 * options.data_range) * (0.03 * options.data_range);
  const torch::Tensor v1 = 2.0 * cov + c2;
  const torch::Tensor v2 = var_a + var_b + c2;
  const torch::Tensor cs = v1 / v2;
  const torch::Tensor ssim = (2.0 * mu_ab + c1) * v1 / ((mu_aa + mu_bb + c1) * v2);
  return {ssim.flatten(1).mean(1), cs.flatten(1).mean(1)};
}

/// Clamps ε to [−radius, radius] and then so that x + ε lies in [0, 1].
torch::Tensor project(const torch::Tensor& eps, const torch::Tensor& x, double radius) {
  torch::Tensor e = eps.clamp(-radius, radius);
  return torch::maximum(torch::minimum(e, 1.0 - x), -x);
}

/// Repeats [n, ...] `times` times along dim 0 (restart-major).
torch::Tensor repeat_rows(const torch::Tensor& t, int64_t times) {
  return torch::cat(std::vector<torch::Tensor>(static_cast<size_t>(times), t), 0);
}

void check_attack_options(const AttackOptions& options) {
  if (options.restarts < 1)
    throw Error("attack: restarts (n_a) must be at least 1, got " + std::to_string(options.restarts));
  if (options.steps < 0)
    throw Error("attack: steps (n_eps) must be non-negative, got " + std::to_string(options.steps));
  if (!(options.lr >= 0)) throw Error("attack: lr (eta) must be non-negative");
  if (!(options.radius >= 0)) throw Error("attack: radius (delta) must be non-negative");
  if (!(options.start >= 0 && options.start <= 1)) throw Error("attack: start must be in [0, 1]");
}

void check_images(const torch::Tensor& images, const char* what) {
  if (!images.defined() || images.dim() != 4 || images.size(0) < 1)
    throw Error(std::string(what) + ": expected float images [N, C, H, W] with N >= 1, got " +
                (images.defined() ? shape_string(images) : std::string("none")));
  if (!images.is_floating_point()) throw Error(std::string(what) + ": images must be float");
}

}  // namespace

torch::Tensor ms_ssim(const torch::Tensor& a, const torch::Tensor& b, const MsSsimOptions& options) {
  if (!a.defined() || !b.defined() || a.dim() != 4 || a.sizes() != b.sizes())
    throw Error("ms_ssim: expected two images [B, C, H, W] of the same shape, got " +
                (a.defined() ? shape_string(a) : std::string("none")) + " and " +
                (b.defined() ? shape_string(b) : std::string("none")));
  constexpr int64_t kLevels = static_cast<int64_t>(kMsSsimWeights.size());
  constexpr int64_t kMinSide = int64_t{1} << (kLevels - 1);
  if (a.size(2) < kMinSide || a.size(3) < kMinSide)
    throw Error("ms_ssim: images must be at least " + std::to_string(kMinSide) + "x" +
                std::to_string(kMinSide) + " for " + std::to_string(kLevels) + " scales, got " +
                shape_string(a));
  if (options.window_size < 1) throw Error("ms_ssim: window_size must be at least 1");
  if (!(options.sigma > 0)) throw Error("ms_ssim: sigma must be positive");
  if (!(options.data_range > 0)) throw Error("ms_ssim: data_range must be positive");
  torch::NoGradGuard no_grad;
  const auto opts = torch::TensorOptions().dtype(torch::kDouble).device(torch::kCPU);
  torch::Tensor x = a.detach().to(opts);
  torch::Tensor y = b.detach().to(opts);
  torch::Tensor result = torch::ones({a.size(0)}, opts);
  for (int64_t level = 0; level < kLevels; ++level) {
    const auto [ssim, cs] = ssim_terms(x, y, options);
    const double weight = kMsSsimWeights[static_cast<size_t>(level)];
    if (level + 1 < kLevels) {
      result = result * cs.clamp_min(0.0).pow(weight);
      x = torch::avg_pool2d(x, {2, 2});
      y = torch::avg_pool2d(y, {2, 2});
    } else {
      result = result * ssim.clamp_min(0.0).pow(weight);
    }
  }
  return result;
}

torch::Tensor symmetric_kl(const Posterior& p, const Posterior& q) {
  const torch::Tensor log_ratio = p.log_var - q.log_var;
  const torch::Tensor diff = p.mean - q.mean;
  const torch::Tensor terms =
      0.25 * (log_ratio.exp() + (-log_ratio).exp() +
              diff * diff * ((-p.log_var).exp() + (-q.log_var).exp())) -
      0.5;
  return terms.flatten(1).sum(1);
}

AttackOptions table2_attack_options(int64_t channels) {
  AttackOptions options;
  if (channels == 1) {
    options.images = 50;
    options.restarts = 10;
    options.steps = 50;
    options.lr = 1.0;
    options.radius = 0.1;
  } else if (channels == 3) {
    options.images = 20;
    options.restarts = 10;
    options.steps = 100;
    options.lr = 1.0;
    options.radius = 0.05;
  } else {
    throw Error("attack: Table 2 has settings for 1 (grayscale) or 3 (RGB) channels, not " +
                std::to_string(channels));
  }
  return options;
}

EncoderAttack attack_encoder(Model& model, const torch::Tensor& images, const AttackOptions& options,
                             at::Generator& generator, const torch::Device& device) {
  check_attack_options(options);
  check_images(images, "attack");
  EvalModeGuard eval(model.module());
  torch::AutoGradMode grad_mode(true);

  const torch::Tensor x = images.detach().to(device);
  const torch::Tensor clean = repeat_rows(x, options.restarts);
  Posterior target;
  {
    torch::NoGradGuard no_grad;
    const Posterior q = model.encode(x);
    target.mean = repeat_rows(q.mean.detach(), options.restarts);
    target.log_var = repeat_rows(q.log_var.detach(), options.restarts);
  }

  const double delta = options.radius;
  // Uniform start in [−start·δ, start·δ], drawn on the CPU so a seed means the same on any device.
  torch::Tensor eps =
      at::rand(clean.sizes(), generator, torch::TensorOptions().dtype(clean.scalar_type()));
  eps = ((2.0 * eps - 1.0) * (options.start * delta)).to(device);
  eps = project(eps, clean, delta);

  for (int64_t step = 0; step < options.steps; ++step) {
    eps.requires_grad_(true);
    const Posterior q = model.encode(clean + eps);
    const torch::Tensor loss = -symmetric_kl(q, target).sum();
    torch::Tensor grad;
    if (loss.requires_grad()) {
      grad = torch::autograd::grad({loss}, {eps}, /*grad_outputs=*/{}, /*retain_graph=*/false,
                                   /*create_graph=*/false, /*allow_unused=*/true)[0];
    }
    torch::NoGradGuard no_grad;
    eps = eps.detach();
    if (!grad.defined()) continue;  // the encoder ignores its input: nothing to follow
    eps = project(eps - options.lr * grad.clamp(-delta, delta), clean, delta);
  }

  torch::NoGradGuard no_grad;
  EncoderAttack result;
  result.clean = clean;
  result.attacked = (clean + eps.detach()).clamp(0.0, 1.0);
  result.skl = symmetric_kl(model.encode(result.attacked), target);
  return result;
}

RobustnessResult robustness_gap(Model& model, const Likelihood& likelihood,
                                const torch::Tensor& test_images, const AttackOptions& options,
                                uint64_t seed, const torch::Device& device,
                                const MsSsimOptions& msssim) {
  check_images(test_images, "robustness gap");
  if (options.images < 1)
    throw Error("robustness gap: images (n_r) must be at least 1, got " +
                std::to_string(options.images));
  EvalModeGuard eval(model.module());
  at::Generator generator = shim::make_cpu_generator(seed);
  const int64_t n = std::min(options.images, test_images.size(0));
  const EncoderAttack attack =
      attack_encoder(model, test_images.slice(0, 0, n), options, generator, device);

  torch::NoGradGuard no_grad;
  auto reconstruct = [&](const torch::Tensor& x) {
    const Posterior q = model.encode(x);
    const torch::Tensor z =
        q.mean + (0.5 * q.log_var).exp() * shim::randn_like(q.mean, &generator);
    return likelihood.mean(model.decode(z));
  };
  const torch::Tensor rec_clean = reconstruct(attack.clean);
  const torch::Tensor rec_attacked = reconstruct(attack.attacked);

  RobustnessResult result;
  result.msssim_inputs = ms_ssim(attack.clean, attack.attacked, msssim).mean().item<double>();
  result.msssim_reconstructions = ms_ssim(rec_clean, rec_attacked, msssim).mean().item<double>();
  result.robustness_gap = result.msssim_inputs - result.msssim_reconstructions;
  result.skl_mean = attack.skl.to(torch::kDouble).mean().item<double>();
  result.images = n;
  result.restarts = options.restarts;
  return result;
}

}  // namespace vaelab
