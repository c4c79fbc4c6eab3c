// EDM (Karras et al. 2022): preconditioning identities, the noise schedule, and the Heun sampler
// against the exact optimal denoiser of a Gaussian data distribution.

#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include <torch/torch.h>

#include <vaelab/error.hpp>
#include <vaelab/gen/edm.hpp>
#include <vaelab/torch_shim.hpp>

namespace edm = vaelab::edm;
using Catch::Detail::Approx;

namespace {

constexpr double kSigmaData = 0.5;

torch::Tensor sigmas() {
  return torch::tensor({0.002, 0.01, 0.1, 0.5, 1.0, 3.0, 20.0, 80.0}, torch::kFloat64);
}

double max_abs(const torch::Tensor& t) { return t.abs().max().item<double>(); }

/// The optimal denoiser of N(mu, s² I): E[y | y + n] with n ~ N(0, σ² I).
edm::Denoiser gaussian_denoiser(double mu, double s) {
  return [mu, s](const torch::Tensor& x, const torch::Tensor& sigma) {
    std::vector<int64_t> row(static_cast<size_t>(x.dim()), 1);
    row[0] = -1;
    const torch::Tensor v = (sigma * sigma).reshape(row).to(x.options());
    return (s * s * x + v * mu) / (s * s + v);
  };
}

std::vector<uint64_t> seed_range(uint64_t first, int64_t n) {
  std::vector<uint64_t> seeds;
  for (int64_t i = 0; i < n; ++i) seeds.push_back(first + static_cast<uint64_t>(i));
  return seeds;
}

}  // namespace

TEST_CASE("EDM preconditioning satisfies its defining identities", "[edm]") {
  const torch::Tensor s = sigmas();
  const edm::Preconditioning c = edm::preconditioning(s, kSigmaData);
  const double sd2 = kSigmaData * kSigmaData;
  // The network input has unit variance when x = y + n, y ~ N(0, σd²), n ~ N(0, σ²).
  CHECK(max_abs(c.c_in * c.c_in * (s * s + sd2) - 1) < 1e-12);
  // c_out² = σ² c_skip, and the loss weight undoes c_out² (λ c_out² = 1).
  CHECK(max_abs(c.c_out * c.c_out - s * s * c.c_skip) < 1e-12);
  CHECK(max_abs(edm::loss_weight(s, kSigmaData) * c.c_out * c.c_out - 1) < 1e-9);
  CHECK(max_abs(c.c_noise - s.log() / 4) < 1e-12);
  // The skip carries everything at small noise and nothing at large noise.
  const edm::Preconditioning tiny = edm::preconditioning(torch::tensor({1e-6}, torch::kFloat64), kSigmaData);
  CHECK(tiny.c_skip.item<double>() == Approx(1).margin(1e-10));
  CHECK(tiny.c_out.item<double>() == Approx(0).margin(1e-5));
  const edm::Preconditioning huge = edm::preconditioning(torch::tensor({1e6}, torch::kFloat64), kSigmaData);
  CHECK(huge.c_skip.item<double>() == Approx(0).margin(1e-10));
  CHECK(huge.c_out.item<double>() == Approx(kSigmaData).epsilon(1e-9));
  REQUIRE_THROWS_AS(edm::preconditioning(s, 0.0), vaelab::Error);
}

TEST_CASE("the EDM training target has unit variance for Gaussian data", "[edm]") {
  // F_target = (y − c_skip (y + n)) / c_out; analytically Var = ((1 − c_skip)² σd² + c_skip² σ²)
  // / c_out² = 1 for every σ. Checked here by Monte Carlo as well.
  const torch::Tensor s = sigmas();
  const edm::Preconditioning c = edm::preconditioning(s, kSigmaData);
  const torch::Tensor analytic =
      ((1 - c.c_skip).square() * kSigmaData * kSigmaData + c.c_skip.square() * s.square()) /
      c.c_out.square();
  CHECK(max_abs(analytic - 1) < 1e-9);

  at::Generator gen = vaelab::shim::make_cpu_generator(7);
  const int64_t n = 200000;
  const auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
  for (int64_t i = 0; i < s.size(0); ++i) {
    const double sigma = s[i].item<double>();
    const torch::Tensor y = vaelab::shim::randn({n}, f64, &gen) * kSigmaData;
    const torch::Tensor noise = vaelab::shim::randn({n}, f64, &gen) * sigma;
    const double c_skip = c.c_skip[i].item<double>();
    const double c_out = c.c_out[i].item<double>();
    const torch::Tensor target = (y - c_skip * (y + noise)) / c_out;
    INFO("sigma = " << sigma);
    CHECK(target.var().item<double>() == Approx(1).epsilon(0.015));  // ~5 standard errors
  }
}

TEST_CASE("training noise levels are log-normal with the given parameters", "[edm]") {
  at::Generator gen = vaelab::shim::make_cpu_generator(3);
  const torch::Tensor sigma = edm::sample_training_sigma(100000, -1.2, 1.2, gen);
  REQUIRE(sigma.sizes() == torch::IntArrayRef({100000}));
  REQUIRE(sigma.min().item<double>() > 0);
  const torch::Tensor log_sigma = sigma.log().to(torch::kFloat64);
  CHECK(log_sigma.mean().item<double>() == Approx(-1.2).margin(0.02));
  CHECK(log_sigma.std().item<double>() == Approx(1.2).margin(0.02));
  at::Generator again = vaelab::shim::make_cpu_generator(3);
  CHECK(torch::equal(edm::sample_training_sigma(100000, -1.2, 1.2, again), sigma));
}

TEST_CASE("precondition() composes D = c_skip x + c_out F(c_in x, c_noise)", "[edm]") {
  torch::Tensor seen_input, seen_noise;
  const auto raw = [&](const torch::Tensor& x, const torch::Tensor& c_noise) {
    seen_input = x.clone();
    seen_noise = c_noise.clone();
    return torch::full_like(x, 2.0);
  };
  const edm::Denoiser d = edm::precondition(raw, kSigmaData);
  const torch::Tensor x = torch::arange(6, torch::kFloat64).reshape({2, 3}) - 2;
  const torch::Tensor sigma = torch::tensor({0.3, 5.0}, torch::kFloat64);
  const torch::Tensor out = d(x, sigma);
  const edm::Preconditioning c = edm::preconditioning(sigma, kSigmaData);
  CHECK(max_abs(seen_input - x * c.c_in.unsqueeze(1)) < 1e-12);
  CHECK(max_abs(seen_noise - c.c_noise) < 1e-12);
  CHECK(max_abs(out - (x * c.c_skip.unsqueeze(1) + 2 * c.c_out.unsqueeze(1))) < 1e-12);
  REQUIRE_THROWS_AS(d(x, torch::tensor({1.0, 2.0, 3.0}, torch::kFloat64)), vaelab::Error);
}

TEST_CASE("the sampling schedule runs from sigma_max down to sigma_min, then 0", "[edm]") {
  edm::SamplerSettings s;
  const torch::Tensor t = edm::sigma_schedule(s);
  REQUIRE(t.scalar_type() == torch::kFloat64);
  REQUIRE(t.size(0) == 19);
  CHECK(t[0].item<double>() == Approx(80.0).epsilon(1e-12));
  CHECK(t[17].item<double>() == Approx(0.002).epsilon(1e-12));
  CHECK(t[18].item<double>() == 0.0);
  CHECK((t.slice(0, 1) < t.slice(0, 0, -1)).all().item<bool>());
  // t_i^(1/ρ) is evenly spaced (Karras et al. Eq. 5).
  const torch::Tensor root = t.slice(0, 0, 18).pow(1.0 / 7.0);
  const torch::Tensor gaps = root.slice(0, 1) - root.slice(0, 0, -1);
  CHECK(max_abs(gaps - gaps.mean()) < 1e-12);

  s.steps = 1;
  const torch::Tensor one = edm::sigma_schedule(s);
  REQUIRE(one.size(0) == 2);
  CHECK(one[0].item<double>() == Approx(80.0));
  CHECK(one[1].item<double>() == 0.0);
  s.steps = 0;
  REQUIRE_THROWS_AS(edm::sigma_schedule(s), vaelab::Error);
  s.steps = 18;
  s.sigma_min = 100;
  REQUIRE_THROWS_AS(edm::sigma_schedule(s), vaelab::Error);
}

TEST_CASE("Heun integrates the probability-flow ODE of a Gaussian to 2nd order", "[edm]") {
  // With the exact denoiser of N(mu, s²) the ODE dx/dσ = (x − D(x, σ))/σ has the solution
  // x(σ) = mu + (x_T − mu) √(s² + σ²) / √(s² + σ_max²). The sampler's map x_T → x_0 is affine,
  // so its error is one number: the relative error of x_0 − mu.
  const double mu = 1.5, s = 0.7;
  const double shrink = s / std::sqrt(s * s + 80.0 * 80.0);
  const auto relative_error = [&](int64_t steps) {
    edm::SamplerSettings settings;
    settings.steps = steps;
    torch::Tensor start;
    const edm::Denoiser exact = gaussian_denoiser(mu, s);
    const edm::Denoiser recording = [&](const torch::Tensor& x, const torch::Tensor& sigma) {
      if (!start.defined()) start = x.clone();
      return exact(x, sigma);
    };
    const torch::Tensor out = edm::heun_sample(recording, {16}, {11, 12}, settings);
    REQUIRE(out.sizes() == torch::IntArrayRef({2, 16}));
    REQUIRE(out.scalar_type() == torch::kFloat32);
    const torch::Tensor expected = (start.to(torch::kFloat64) - mu) * shrink;
    return max_abs((out.to(torch::kFloat64) - mu) / expected - 1);
  };
  const double e18 = relative_error(18), e36 = relative_error(36), e72 = relative_error(72);
  INFO("relative errors: 18 steps " << e18 << ", 36 steps " << e36 << ", 72 steps " << e72);
  // 2nd order: doubling the steps divides the error by about 4 (Euler: by 2).
  CHECK(e18 / e36 > 3.5);
  CHECK(e36 / e72 > 3.5);
  CHECK(e72 < 4e-3);
  // On this distribution 18 steps overestimate the spread by about 5%.
  CHECK(e18 < 0.07);
}

TEST_CASE("Heun with the exact denoiser samples N(mu, s²)", "[edm]") {
  const double mu = -0.8, s = 0.6;
  const int64_t images = 2048, dims = 16;  // 32,768 numbers: standard errors ≈ 0.0033 and 0.0028
  const double sigma_max = 80.0;
  // The chain starts from N(0, σ_max²) rather than N(mu, s² + σ_max²), so its exact output is
  // N(mu (1 − k), s² σ_max² / (s² + σ_max²)) with k = s / √(s² + σ_max²): within 1% of N(mu, s²).
  const double k = s / std::sqrt(s * s + sigma_max * sigma_max);
  const double want_mean = mu * (1 - k);
  const double want_var = s * s * sigma_max * sigma_max / (s * s + sigma_max * sigma_max);

  // 144 steps: the discretization error (≈ 0.07% in scale) is far below the Monte Carlo error.
  edm::SamplerSettings fine;
  fine.steps = 144;
  SECTION("deterministic") {
    const torch::Tensor out =
        edm::heun_sample(gaussian_denoiser(mu, s), {dims}, seed_range(1000, images), fine);
    CHECK(out.mean().item<double>() == Approx(want_mean).margin(0.015));
    CHECK(out.var().item<double>() == Approx(want_var).margin(0.015));
  }
  SECTION("with stochastic churn") {
    edm::SamplerSettings churn = fine;
    churn.s_churn = 40;
    churn.s_tmin = 0.05;
    churn.s_tmax = 50;
    churn.s_noise = 1.0;
    const torch::Tensor out =
        edm::heun_sample(gaussian_denoiser(mu, s), {dims}, seed_range(1000, images), churn);
    CHECK(out.mean().item<double>() == Approx(mu).margin(0.02));
    CHECK(out.var().item<double>() == Approx(s * s).margin(0.02));
    // The churn noise changed the samples.
    const torch::Tensor plain =
        edm::heun_sample(gaussian_denoiser(mu, s), {dims}, seed_range(1000, images), fine);
    CHECK(max_abs(out - plain) > 0.1);
  }
}

TEST_CASE("each image depends on its own seed only, whatever the batch", "[edm]") {
  const edm::Denoiser d = gaussian_denoiser(0.2, 0.4);
  for (const double churn : {0.0, 30.0}) {
    edm::SamplerSettings settings;
    settings.steps = 8;
    settings.s_churn = churn;
    INFO("s_churn = " << churn);
    const torch::Tensor batch = edm::heun_sample(d, {2, 3}, {5, 6, 7, 8}, settings);
    REQUIRE(batch.sizes() == torch::IntArrayRef({4, 2, 3}));
    const torch::Tensor alone = edm::heun_sample(d, {2, 3}, {7}, settings);
    CHECK(torch::equal(alone[0], batch[2]));
    const torch::Tensor reordered = edm::heun_sample(d, {2, 3}, {8, 99, 5}, settings);
    CHECK(torch::equal(reordered[0], batch[3]));
    CHECK(torch::equal(reordered[2], batch[0]));
    CHECK(!torch::equal(batch[0], batch[1]));
  }
  const torch::Tensor none = edm::heun_sample(d, {2, 3}, {}, {});
  CHECK(none.sizes() == torch::IntArrayRef({0, 2, 3}));
}
