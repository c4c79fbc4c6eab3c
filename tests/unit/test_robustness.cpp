#include <catch2/catch.hpp>

#include <chrono>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include <vaelab/error.hpp>
#include <vaelab/likelihood.hpp>
#include <vaelab/metrics/robustness.hpp>
#include <vaelab/model.hpp>
#include <vaelab/torch_shim.hpp>

namespace {

/// A small VAE for the attack tests: an MLP (or, with hidden = 0, linear) encoder to mean and
/// log-variance and an MLP decoder to Bernoulli logits. Weights are drawn from the global torch
/// generator seeded with `seed`; the encoder's weights are multiplied by `gain`. With
/// `ignore_input`, q(z|x) = N(mean_bias, exp(log_var_bias)) for every x.
class TestVae final : public vaelab::Model {
 public:
  struct Spec {
    int64_t channels = 1;
    int64_t height = 16;
    int64_t width = 16;
    int64_t latent = 8;
    int64_t hidden = 0;
    double gain = 1.0;
    bool ignore_input = false;
    double log_var_bias = -2.0;
    bool constant_log_var = false;  ///< log_var = log_var_bias for every x
    uint64_t seed = 0;
  };

  explicit TestVae(const Spec& spec) : spec_(spec), net_(std::make_shared<torch::nn::Module>()) {
    torch::manual_seed(spec.seed);
    const int64_t d = spec.channels * spec.height * spec.width;
    if (spec.ignore_input) {
      mean_bias_ = net_->register_parameter("mean_bias", 0.5 * torch::randn({spec.latent}));
      log_var_bias_ =
          net_->register_parameter("log_var_bias", torch::full({spec.latent}, spec.log_var_bias));
    } else {
      torch::nn::Sequential enc;
      if (spec.hidden > 0) {
        enc->push_back(torch::nn::Linear(d, spec.hidden));
        enc->push_back(torch::nn::ReLU());
        enc->push_back(torch::nn::Linear(spec.hidden, 2 * spec.latent));
      } else {
        enc->push_back(torch::nn::Linear(d, 2 * spec.latent));
      }
      torch::NoGradGuard no_grad;
      for (auto& p : enc->named_parameters()) {
        if (p.key().find("weight") != std::string::npos) p.value().mul_(spec.gain);
      }
      encoder_ = net_->register_module("encoder", enc);
    }
    torch::nn::Sequential dec;
    if (spec.hidden > 0) {
      dec->push_back(torch::nn::Linear(spec.latent, spec.hidden));
      dec->push_back(torch::nn::ReLU());
      dec->push_back(torch::nn::Linear(spec.hidden, d));
    } else {
      dec->push_back(torch::nn::Linear(spec.latent, d));
    }
    decoder_ = net_->register_module("decoder", dec);
  }

  void build(const vaelab::ModelSpec&, vaelab::Backend&) override {}

  vaelab::Posterior encode(const torch::Tensor& x) override {
    vaelab::Posterior q;
    if (spec_.ignore_input) {
      q.mean = mean_bias_.unsqueeze(0).expand({x.size(0), spec_.latent});
      q.log_var = log_var_bias_.unsqueeze(0).expand({x.size(0), spec_.latent});
      return q;
    }
    const torch::Tensor h = encoder_->forward(x.flatten(1));
    q.mean = h.narrow(1, 0, spec_.latent);
    q.log_var = spec_.constant_log_var ? torch::full_like(q.mean, spec_.log_var_bias)
                                       : h.narrow(1, spec_.latent, spec_.latent) + spec_.log_var_bias;
    return q;
  }

  torch::Tensor decode(const torch::Tensor& z) override {
    return decoder_->forward(z).view({z.size(0), spec_.channels, spec_.height, spec_.width});
  }

  torch::nn::Module& module() override { return *net_; }
  std::vector<std::string> latent_adjacent_parameters() const override { return {}; }
  std::vector<int64_t> latent_shape() const override { return {spec_.latent}; }

 private:
  Spec spec_;
  std::shared_ptr<torch::nn::Module> net_;
  torch::nn::Sequential encoder_{nullptr};
  torch::nn::Sequential decoder_{nullptr};
  torch::Tensor mean_bias_;
  torch::Tensor log_var_bias_;
};

/// Smooth test images in [0.1, 0.9]: [b, c, h, w], a different pattern per image and channel.
torch::Tensor smooth_images(int64_t b, int64_t c, int64_t h, int64_t w) {
  const auto opts = torch::TensorOptions().dtype(torch::kFloat);
  const torch::Tensor ys = torch::arange(h, opts).view({1, 1, h, 1});
  const torch::Tensor xs = torch::arange(w, opts).view({1, 1, 1, w});
  const torch::Tensor phase = torch::arange(b * c, opts).view({b, c, 1, 1});
  return 0.5 + 0.4 * torch::sin(ys / 3.0 + phase) * torch::cos(xs / 4.0 - 0.5 * phase);
}

torch::Tensor uniform_images(int64_t b, int64_t c, int64_t h, int64_t w, uint64_t seed) {
  at::Generator gen = vaelab::shim::make_cpu_generator(seed);
  return at::rand({b, c, h, w}, gen, torch::TensorOptions().dtype(torch::kFloat));
}

std::vector<torch::Tensor> snapshot(torch::nn::Module& m) {
  std::vector<torch::Tensor> copies;
  for (const auto& p : m.parameters()) copies.push_back(p.detach().clone());
  return copies;
}

}  // namespace

// ---- MS-SSIM ---------------------------------------------------------------------------------

TEST_CASE("MS-SSIM of identical images is exactly 1", "[robustness][msssim]") {
  for (const auto& x : {smooth_images(3, 1, 28, 28), uniform_images(2, 3, 32, 32, 1),
                        uniform_images(2, 1, 16, 16, 2)}) {
    const torch::Tensor s = vaelab::ms_ssim(x, x.clone());
    REQUIRE(s.sizes() == torch::IntArrayRef{x.size(0)});
    REQUIRE(s.scalar_type() == torch::kDouble);
    for (int64_t i = 0; i < s.size(0); ++i) REQUIRE(s[i].item<double>() == 1.0);
  }
}

TEST_CASE("MS-SSIM is symmetric and in [0, 1]", "[robustness][msssim]") {
  const torch::Tensor a = uniform_images(4, 3, 32, 32, 3);
  const torch::Tensor b = (smooth_images(4, 3, 32, 32) + 0.3 * (a - 0.5)).clamp(0, 1);
  const torch::Tensor ab = vaelab::ms_ssim(a, b);
  const torch::Tensor ba = vaelab::ms_ssim(b, a);
  REQUIRE(torch::allclose(ab, ba, 0, 1e-12));
  REQUIRE(ab.min().item<double>() >= 0.0);
  REQUIRE(ab.max().item<double>() <= 1.0);
  REQUIRE(ab.max().item<double>() < 0.999);  // different images are not similar
  // An image against its negative: contrast-structure is negative at the finest scale, clamped to
  // 0 (normalize='relu'), so the product is exactly 0 rather than NaN.
  const torch::Tensor neg = vaelab::ms_ssim(a, 1.0 - a);
  for (int64_t i = 0; i < neg.size(0); ++i) REQUIRE(neg[i].item<double>() == 0.0);
}

TEST_CASE("MS-SSIM strictly decreases as Gaussian noise grows", "[robustness][msssim]") {
  for (int64_t channels : {1, 3}) {
    const torch::Tensor x = smooth_images(3, channels, 32, 32);
    at::Generator gen = vaelab::shim::make_cpu_generator(7);
    const torch::Tensor noise = at::randn(x.sizes(), gen, torch::TensorOptions().dtype(torch::kFloat));
    std::vector<torch::Tensor> scores;
    for (double sigma : {0.02, 0.05, 0.1, 0.2}) {
      scores.push_back(vaelab::ms_ssim(x, (x + sigma * noise).clamp(0, 1)));
    }
    for (size_t i = 0; i + 1 < scores.size(); ++i) {
      REQUIRE((scores[i] > scores[i + 1]).all().item<bool>());
    }
    REQUIRE((scores.front() < 1.0).all().item<bool>());
  }
}

TEST_CASE("MS-SSIM of constant images is the luminance term at the coarsest scale",
          "[robustness][msssim]") {
  // Variances and covariance vanish, so every contrast-structure term is C2 / C2 = 1 and only
  // l_5 = (2 μa μb + C1) / (μa² + μb² + C1), raised to w_5 = 0.1333, remains.
  const double c1 = 0.01 * 0.01;
  auto luminance = [&](double ma, double mb) { return (2 * ma * mb + c1) / (ma * ma + mb * mb + c1); };
  const auto f64 = torch::TensorOptions().dtype(torch::kDouble);  // 0.2f is not 0.2
  const torch::Tensor a = torch::full({1, 1, 32, 32}, 0.2, f64);
  const torch::Tensor b = torch::full({1, 1, 32, 32}, 0.6, f64);
  const double expected = std::pow(0.2401 / 0.4001, 0.1333);  // by hand: 0.24 + 1e-4, 0.40 + 1e-4
  REQUIRE(luminance(0.2, 0.6) == Approx(0.2401 / 0.4001).epsilon(1e-14));
  REQUIRE(vaelab::ms_ssim(a, b).item<double>() == Approx(expected).epsilon(1e-9));
  // Three channels: the SSIM map is averaged over channels before the power.
  const torch::Tensor a3 = torch::tensor({0.2, 0.5, 0.9}, f64).view({1, 3, 1, 1}).expand({1, 3, 28, 28});
  const torch::Tensor b3 = torch::tensor({0.6, 0.5, 0.1}, f64).view({1, 3, 1, 1}).expand({1, 3, 28, 28});
  const double mean_l = (luminance(0.2, 0.6) + luminance(0.5, 0.5) + luminance(0.9, 0.1)) / 3.0;
  REQUIRE(vaelab::ms_ssim(a3, b3).item<double>() == Approx(std::pow(mean_l, 0.1333)).epsilon(1e-9));
}

TEST_CASE("MS-SSIM clamps the window at small scales and checks its inputs", "[robustness][msssim]") {
  const torch::Tensor a = smooth_images(2, 3, 32, 32);
  const torch::Tensor b = (a + 0.1 * (uniform_images(2, 3, 32, 32, 5) - 0.5)).clamp(0, 1);
  vaelab::MsSsimOptions opts;
  const torch::Tensor s11 = vaelab::ms_ssim(a, b, opts);
  REQUIRE(torch::isfinite(s11).all().item<bool>());
  opts.window_size = 14;  // Kuzina et al.'s setting: clamped to 8, 4 and 2 px at scales 3–5
  const torch::Tensor s14 = vaelab::ms_ssim(a, b, opts);
  REQUIRE(torch::isfinite(s14).all().item<bool>());
  REQUIRE_FALSE(torch::allclose(s11, s14, 0, 1e-6));
  opts.window_size = 64;  // larger than the image: clamped to 32 already at the first scale
  REQUIRE(torch::isfinite(vaelab::ms_ssim(a, b, opts)).all().item<bool>());
  // 16 px is the smallest side with 5 scales; 15 px is refused, as are mismatched shapes.
  REQUIRE(vaelab::ms_ssim(a.narrow(2, 0, 16).narrow(3, 0, 16), b.narrow(2, 0, 16).narrow(3, 0, 16))
              .size(0) == 2);
  REQUIRE_THROWS_AS(vaelab::ms_ssim(a.narrow(2, 0, 15), b.narrow(2, 0, 15)), vaelab::Error);
  REQUIRE_THROWS_AS(vaelab::ms_ssim(a, b.narrow(1, 0, 1)), vaelab::Error);
}

// ---- Symmetric KL and Table 2 ------------------------------------------------------------------

TEST_CASE("symmetric KL matches the average of the two closed-form KLs", "[robustness]") {
  const torch::Tensor m1 = torch::tensor({{0.3, -1.0}}, torch::kDouble);
  const torch::Tensor v1 = torch::tensor({{-0.5, 0.2}}, torch::kDouble);
  const torch::Tensor m2 = torch::tensor({{-0.1, 0.4}}, torch::kDouble);
  const torch::Tensor v2 = torch::tensor({{0.1, -1.0}}, torch::kDouble);
  double kl12 = 0;
  double kl21 = 0;
  const double mu1[] = {0.3, -1.0}, lv1[] = {-0.5, 0.2}, mu2[] = {-0.1, 0.4}, lv2[] = {0.1, -1.0};
  for (int i = 0; i < 2; ++i) {
    const double s1 = std::exp(lv1[i]), s2 = std::exp(lv2[i]), d = mu1[i] - mu2[i];
    kl12 += 0.5 * (std::log(s2 / s1) + (s1 + d * d) / s2 - 1);
    kl21 += 0.5 * (std::log(s1 / s2) + (s2 + d * d) / s1 - 1);
  }
  const double skl = vaelab::symmetric_kl({m1, v1}, {m2, v2}).item<double>();
  REQUIRE(skl == Approx(0.5 * (kl12 + kl21)).epsilon(1e-12));
  REQUIRE(vaelab::symmetric_kl({m2, v2}, {m1, v1}).item<double>() == Approx(skl).epsilon(1e-12));
  REQUIRE(vaelab::symmetric_kl({m1, v1}, {m1, v1}).item<double>() == 0.0);
}

TEST_CASE("Table 2 attack settings by image kind", "[robustness]") {
  const vaelab::AttackOptions gray = vaelab::table2_attack_options(1);
  CHECK(gray.images == 50);
  CHECK(gray.restarts == 10);
  CHECK(gray.steps == 50);
  CHECK(gray.lr == 1.0);
  CHECK(gray.radius == 0.1);
  const vaelab::AttackOptions rgb = vaelab::table2_attack_options(3);
  CHECK(rgb.images == 20);
  CHECK(rgb.restarts == 10);
  CHECK(rgb.steps == 100);
  CHECK(rgb.lr == 1.0);
  CHECK(rgb.radius == 0.05);
  REQUIRE_THROWS_AS(vaelab::table2_attack_options(2), vaelab::Error);
}

// ---- The attack --------------------------------------------------------------------------------

TEST_CASE("the attack stays in the L-inf ball and in [0, 1] and raises the SKL", "[robustness][attack]") {
  TestVae::Spec spec;
  spec.gain = 3.0;
  TestVae model(spec);
  // Binary-ish images, so that many pixels sit on the [0, 1] boundary.
  const torch::Tensor x = (uniform_images(6, 1, 16, 16, 11) > 0.5).to(torch::kFloat);
  vaelab::AttackOptions opts;
  opts.restarts = 3;
  opts.steps = 30;
  opts.radius = 0.1;
  const torch::Device cpu(torch::kCPU);

  at::Generator g0 = vaelab::shim::make_cpu_generator(42);
  vaelab::AttackOptions start_only = opts;
  start_only.steps = 0;
  const vaelab::EncoderAttack start = vaelab::attack_encoder(model, x, start_only, g0, cpu);
  at::Generator g1 = vaelab::shim::make_cpu_generator(42);
  const vaelab::EncoderAttack attack = vaelab::attack_encoder(model, x, opts, g1, cpu);

  REQUIRE(attack.attacked.sizes() == torch::IntArrayRef{18, 1, 16, 16});
  REQUIRE(attack.skl.sizes() == torch::IntArrayRef{18});
  REQUIRE(torch::equal(attack.clean.narrow(0, 6, 6), x));  // restart-major rows
  const torch::Tensor eps = attack.attacked - attack.clean;
  REQUIRE(eps.abs().max().item<double>() <= opts.radius + 1e-6);
  REQUIRE(attack.attacked.min().item<double>() >= 0.0);
  REQUIRE(attack.attacked.max().item<double>() <= 1.0);
  // The start is small (|ε| ≤ 0.1 δ) and the attack moves far from it.
  REQUIRE((start.attacked - start.clean).abs().max().item<double>() <= 0.1 * opts.radius + 1e-6);
  REQUIRE(eps.abs().max().item<double>() > 0.9 * opts.radius);
  REQUIRE((attack.skl > start.skl).all().item<bool>());
  REQUIRE(attack.skl.mean().item<double>() > 10.0 * start.skl.mean().item<double>());
  // Better than a random corner of the ball (a sign error would do worse than this).
  at::Generator g2 = vaelab::shim::make_cpu_generator(3);
  const torch::Tensor signs =
      at::rand(attack.clean.sizes(), g2, torch::TensorOptions().dtype(torch::kFloat)).gt(0.5).to(torch::kFloat) * 2 - 1;
  const torch::Tensor corner = (attack.clean + opts.radius * signs).clamp(0, 1);
  torch::Tensor corner_skl;
  {
    torch::NoGradGuard no_grad;
    model.module().eval();
    corner_skl = vaelab::symmetric_kl(model.encode(corner), model.encode(attack.clean));
  }
  REQUIRE(attack.skl.mean().item<double>() > 2.0 * corner_skl.mean().item<double>());
}

TEST_CASE("one attack step is the hand-computed clamped SGD update", "[robustness][attack]") {
  // Linear mean μ(x) = W x + b and a constant variance σ²: SKL(ε) = ½ ‖W ε‖² / σ², so the gradient
  // of −SKL is −WᵀW ε / σ². One step: ε₁ = clip_δ(ε₀ − η · clip_δ(−WᵀW ε₀ / σ²)).
  TestVae::Spec spec;
  spec.constant_log_var = true;
  spec.log_var_bias = std::log(0.5);
  spec.gain = 4.0;  // gradients of order δ
  TestVae model(spec);
  const torch::Tensor w =
      model.module().named_parameters()["encoder.0.weight"].detach().narrow(0, 0, spec.latent);
  const torch::Tensor x = torch::full({2, 1, 16, 16}, 0.5);  // far from 0 and 1: no image clipping
  vaelab::AttackOptions opts;
  opts.restarts = 2;
  opts.radius = 0.1;
  opts.lr = 0.7;
  opts.start = 1.0;  // a large start, so that some gradients exceed δ and some do not
  at::Generator g0 = vaelab::shim::make_cpu_generator(8);
  at::Generator g1 = vaelab::shim::make_cpu_generator(8);
  opts.steps = 0;
  const auto start = vaelab::attack_encoder(model, x, opts, g0, torch::kCPU);
  opts.steps = 1;
  const auto one = vaelab::attack_encoder(model, x, opts, g1, torch::kCPU);
  const torch::Tensor eps0 = (start.attacked - start.clean).flatten(1);  // [4, 256]
  const torch::Tensor grad = -eps0.mm(w.t()).mm(w) / 0.5;
  const double delta = opts.radius;
  REQUIRE((grad.abs() > delta).any().item<bool>());
  REQUIRE((grad.abs() < 0.5 * delta).any().item<bool>());
  const torch::Tensor expected = (eps0 - opts.lr * grad.clamp(-delta, delta)).clamp(-delta, delta);
  const torch::Tensor got = (one.attacked - one.clean).flatten(1);
  REQUIRE(torch::allclose(got, expected, 1e-5, 1e-6));
  // The reported SKL is the closed form at the attacked images.
  const torch::Tensor skl = 0.5 * got.mm(w.t()).square().sum(1) / 0.5;
  REQUIRE(torch::allclose(one.skl, skl, 1e-4, 1e-7));
}

TEST_CASE("restarts differ and the attack is reproducible for a seed", "[robustness][attack]") {
  TestVae::Spec spec;
  spec.hidden = 32;
  spec.gain = 2.0;
  TestVae model(spec);
  const torch::Tensor x = smooth_images(4, 1, 16, 16);
  vaelab::AttackOptions opts;
  opts.restarts = 2;
  opts.steps = 10;
  const torch::Device cpu(torch::kCPU);
  at::Generator ga = vaelab::shim::make_cpu_generator(9);
  at::Generator gb = vaelab::shim::make_cpu_generator(9);
  at::Generator gc = vaelab::shim::make_cpu_generator(10);
  const auto a = vaelab::attack_encoder(model, x, opts, ga, cpu);
  const auto b = vaelab::attack_encoder(model, x, opts, gb, cpu);
  const auto c = vaelab::attack_encoder(model, x, opts, gc, cpu);
  REQUIRE(torch::equal(a.attacked, b.attacked));
  REQUIRE(torch::equal(a.skl, b.skl));
  REQUIRE_FALSE(torch::equal(a.attacked, c.attacked));
  REQUIRE_FALSE(torch::equal(a.attacked.narrow(0, 0, 4), a.attacked.narrow(0, 4, 4)));

  vaelab::BernoulliLikelihood lik;
  const auto r1 = vaelab::robustness_gap(model, lik, x, opts, 5, cpu);
  const auto r2 = vaelab::robustness_gap(model, lik, x, opts, 5, cpu);
  const auto r3 = vaelab::robustness_gap(model, lik, x, opts, 6, cpu);
  REQUIRE(r1.robustness_gap == r2.robustness_gap);
  REQUIRE(r1.skl_mean == r2.skl_mean);
  REQUIRE(r1.msssim_reconstructions == r2.msssim_reconstructions);
  REQUIRE(r1.msssim_reconstructions != r3.msssim_reconstructions);
}

TEST_CASE("the attack leaves the model's parameters, gradients and mode alone", "[robustness][attack]") {
  TestVae::Spec spec;
  spec.hidden = 16;
  TestVae model(spec);
  model.module().train();
  const std::vector<torch::Tensor> before = snapshot(model.module());
  vaelab::BernoulliLikelihood lik;
  vaelab::AttackOptions opts;
  opts.restarts = 2;
  opts.steps = 5;
  const auto result = vaelab::robustness_gap(model, lik, smooth_images(3, 1, 16, 16), opts, 1,
                                             torch::Device(torch::kCPU));
  REQUIRE(result.skl_mean > 0);
  REQUIRE(model.module().is_training());
  const auto params = model.module().parameters();
  REQUIRE(params.size() == before.size());
  for (size_t i = 0; i < params.size(); ++i) {
    REQUIRE(torch::equal(params[i], before[i]));
    REQUIRE_FALSE(params[i].grad().defined());
    REQUIRE(params[i].requires_grad());
  }
}

TEST_CASE("the attack works under a caller's NoGradGuard", "[robustness][attack]") {
  TestVae::Spec spec;
  spec.gain = 3.0;
  TestVae model(spec);
  const torch::Tensor x = smooth_images(2, 1, 16, 16);
  vaelab::AttackOptions opts;
  opts.restarts = 1;
  torch::NoGradGuard no_grad;
  at::Generator g0 = vaelab::shim::make_cpu_generator(1);
  at::Generator g1 = vaelab::shim::make_cpu_generator(1);
  opts.steps = 0;
  const auto start = vaelab::attack_encoder(model, x, opts, g0, torch::kCPU);
  opts.steps = 10;
  const auto attack = vaelab::attack_encoder(model, x, opts, g1, torch::kCPU);
  REQUIRE(attack.skl.mean().item<double>() > 10.0 * start.skl.mean().item<double>());
}

TEST_CASE("an encoder that ignores its input has SKL 0 and only the inputs' term in G_r",
          "[robustness][attack]") {
  TestVae::Spec spec;
  spec.ignore_input = true;
  spec.log_var_bias = -30.0;  // z is (numerically) the mean, so x̃_r = x̃_a
  TestVae model(spec);
  const torch::Tensor x = smooth_images(5, 1, 16, 16);
  vaelab::AttackOptions opts;
  opts.images = 3;
  opts.restarts = 2;
  opts.steps = 5;
  opts.radius = 0.1;
  vaelab::BernoulliLikelihood lik;
  const auto r = vaelab::robustness_gap(model, lik, x, opts, 3, torch::kCPU);
  REQUIRE(r.images == 3);
  REQUIRE(r.restarts == 2);
  REQUIRE(r.skl_mean == Approx(0.0).margin(1e-12));
  REQUIRE(r.msssim_reconstructions == Approx(1.0).margin(1e-6));
  REQUIRE(r.msssim_inputs < 1.0);
  REQUIRE(r.msssim_inputs > 0.5);
  REQUIRE(r.robustness_gap == Approx(r.msssim_inputs - 1.0).margin(1e-6));
  // No gradient reaches ε, so it stays at its small uniform start.
  at::Generator gen = vaelab::shim::make_cpu_generator(3);
  const auto a = vaelab::attack_encoder(model, x.narrow(0, 0, 3), opts, gen, torch::kCPU);
  REQUIRE((a.attacked - a.clean).abs().max().item<double>() <= opts.start * opts.radius + 1e-6);
  // More images asked for than there are: all of them are used.
  opts.images = 50;
  REQUIRE(vaelab::robustness_gap(model, lik, x, opts, 3, torch::kCPU).images == 5);
  // With unit posterior variance the two reconstructions come from different draws of z, so they
  // differ although q(z|x_r) = q(z|x_a): reconstructions use sampled z, not the mean.
  spec.log_var_bias = 0.0;
  TestVae wide(spec);
  const auto rw = vaelab::robustness_gap(wide, lik, x, opts, 3, torch::kCPU);
  REQUIRE(rw.skl_mean == Approx(0.0).margin(1e-12));
  REQUIRE(rw.msssim_reconstructions < 0.99);
}

TEST_CASE("a sensitive encoder has a positive robustness gap", "[robustness][attack]") {
  TestVae::Spec spec;
  spec.hidden = 64;
  spec.gain = 4.0;
  spec.log_var_bias = -6.0;
  TestVae model(spec);
  vaelab::AttackOptions opts;
  opts.images = 4;
  opts.restarts = 2;
  opts.steps = 20;
  vaelab::BernoulliLikelihood lik;
  const auto r = vaelab::robustness_gap(model, lik, smooth_images(4, 1, 16, 16), opts, 2, torch::kCPU);
  REQUIRE(r.msssim_inputs > 0.0);
  REQUIRE(r.msssim_inputs < 1.0);
  REQUIRE(r.msssim_reconstructions < r.msssim_inputs);
  REQUIRE(r.robustness_gap > 0.0);
  REQUIRE(r.robustness_gap == Approx(r.msssim_inputs - r.msssim_reconstructions).epsilon(1e-12));
  vaelab::AttackOptions bad = opts;
  bad.restarts = 0;
  REQUIRE_THROWS_AS(vaelab::robustness_gap(model, lik, smooth_images(4, 1, 16, 16), bad, 2, torch::kCPU),
                    vaelab::Error);
}

// ---- Timing at the paper's settings ------------------------------------------------------------

TEST_CASE("robustness gap at Table 2 settings on MLP VAEs (timing)", "[robustness][slow]") {
  struct Case {
    const char* name;
    int64_t channels;
    int64_t side;
  };
  for (const Case& c : {Case{"grayscale 28 px", 1, 28}, Case{"RGB 32 px", 3, 32}}) {
    TestVae::Spec spec;
    spec.channels = c.channels;
    spec.height = c.side;
    spec.width = c.side;
    spec.latent = 50;
    spec.hidden = 1000;
    spec.gain = 1.0;
    TestVae model(spec);
    int64_t params = 0;
    for (const auto& p : model.module().parameters()) params += p.numel();
    const vaelab::AttackOptions opts = vaelab::table2_attack_options(c.channels);
    const torch::Tensor x = uniform_images(opts.images, c.channels, c.side, c.side, 4);
    vaelab::BernoulliLikelihood lik;
    const auto t0 = std::chrono::steady_clock::now();
    const auto r = vaelab::robustness_gap(model, lik, x, opts, 0, torch::kCPU);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    WARN(c.name << ": " << params << " parameters, n_r " << opts.images << ", n_a "
                << opts.restarts << ", n_eps " << opts.steps << ": " << seconds << " s, G_r "
                << r.robustness_gap << ", SKL " << r.skl_mean);
    REQUIRE(std::isfinite(r.robustness_gap));
    REQUIRE(r.skl_mean > 0);
  }
}
