#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <vector>

#include <torch/torch.h>

#include <vaelab/config.hpp>
#include <vaelab/likelihood.hpp>
#include <vaelab/train/run.hpp>

namespace {

using vaelab::MixtureOfLogisticsLikelihood;

/// The 256 pixel values of one channel, as the host feeds them: pixel / 255, shape [256].
torch::Tensor all_values(torch::Dtype dtype) {
  return torch::arange(256, torch::TensorOptions().dtype(dtype)) / 255.0;
}

double sigmoid(double v) { return 1.0 / (1.0 + std::exp(-v)); }

/// P(pixel) under one discretized logistic on the [−1, 1] scale, from the logistic CDF alone
/// (edge bins extended to ±∞); no fallback, so only for bins with non-negligible mass.
double bin_probability(int pixel, double mean, double log_scale) {
  const double s = std::exp(std::max(log_scale, -7.0));
  const double centre = 2.0 * pixel / 255.0 - 1.0;
  const double hi = pixel == 255 ? INFINITY : (centre + 1.0 / 255.0 - mean) / s;
  const double lo = pixel == 0 ? -INFINITY : (centre - 1.0 / 255.0 - mean) / s;
  // Above the mean from the upper tail, 1 − σ(z) = σ(−z), to avoid cancellation.
  return centre > mean ? sigmoid(-lo) - sigmoid(-hi) : sigmoid(hi) - sigmoid(lo);
}

/// log p of one pixel, computed from a flat parameter vector in the documented layout:
/// logits [0, K), means [K + cK + k], log-scales [(1 + C)K + cK + k], coefficients [7K + jK + k].
double reference_log_prob(const std::vector<int>& pixel, const std::vector<double>& p, int k) {
  const int channels = static_cast<int>(pixel.size());
  double max_logit = -INFINITY;
  for (int j = 0; j < k; ++j) max_logit = std::max(max_logit, p[j]);
  double norm = 0;
  for (int j = 0; j < k; ++j) norm += std::exp(p[j] - max_logit);
  std::vector<double> x;
  for (int v : pixel) x.push_back(2.0 * v / 255.0 - 1.0);
  double total = 0;
  double with_fallback = 0;  // mass of components where log_prob takes the centre-of-bin fallback
  for (int j = 0; j < k; ++j) {
    double prob = std::exp(p[j] - max_logit) / norm;
    bool fallback = false;
    for (int c = 0; c < channels; ++c) {
      double mean = p[k + c * k + j];
      if (c == 1) mean += std::tanh(p[7 * k + 0 * k + j]) * x[0];
      if (c == 2)
        mean += std::tanh(p[7 * k + 1 * k + j]) * x[0] + std::tanh(p[7 * k + 2 * k + j]) * x[1];
      const double bin = bin_probability(pixel[c], mean, p[(1 + channels) * k + c * k + j]);
      fallback = fallback || bin <= 1e-5;
      prob *= bin;
    }
    total += prob;
    if (fallback) with_fallback += prob;
  }
  REQUIRE(with_fallback < 1e-11 * total);  // else this oracle does not apply
  return std::log(total);
}

/// A flat parameter vector as a [1, P, 1, 1] float64 tensor.
torch::Tensor as_params(const std::vector<double>& p) {
  return torch::tensor(p, torch::kFloat64).view({1, -1, 1, 1});
}

/// Random parameters [n, P, 1, 1]: logits N(0, 2²), means uniform on [−3, 3] (far past the
/// edges too), log-scales uniform on [−9, 3] (below the −7 clamp up to very wide).
torch::Tensor random_params(int64_t n, int64_t k, int64_t channels, torch::Dtype dtype) {
  const auto opts = torch::TensorOptions().dtype(torch::kFloat64);
  const torch::Tensor logits = 2.0 * torch::randn({n, k}, opts);
  const torch::Tensor means = torch::rand({n, channels * k}, opts) * 6.0 - 3.0;
  const torch::Tensor log_scales = torch::rand({n, channels * k}, opts) * 12.0 - 9.0;
  std::vector<torch::Tensor> parts{logits, means, log_scales};
  if (channels == 3) parts.push_back(2.0 * torch::randn({n, 3 * k}, opts));
  return torch::cat(parts, 1).view({n, -1, 1, 1}).to(dtype);
}

/// Σ p(r, g, b) over the cube [lo, hi)³ of pixel values, for one pixel's params [1, 10K, 1, 1];
/// one log_prob call per red value.
double rgb_mass(const MixtureOfLogisticsLikelihood& lik, const torch::Tensor& params, int64_t lo,
                int64_t hi) {
  const int64_t n = hi - lo;
  const torch::Tensor v = all_values(torch::kFloat64).slice(0, lo, hi);
  const torch::Tensor g = v.repeat_interleave(n);
  const torch::Tensor b = v.repeat(n);
  const torch::Tensor chunk_params = params.expand({n * n, -1, 1, 1});
  double total = 0;
  for (int64_t r = 0; r < n; ++r) {
    const torch::Tensor x =
        torch::stack({torch::full_like(g, v[r].item<double>()), g, b}, 1).view({n * n, 3, 1, 1});
    total += lik.log_prob(x, chunk_params).exp().sum().item<double>();
  }
  return total;
}

}  // namespace

TEST_CASE("mol: a grayscale pixel's 256 probabilities sum to 1", "[likelihood][mol]") {
  const torch::Dtype dtype = GENERATE(torch::kFloat64, torch::kFloat32);
  const int64_t k = GENERATE(1, 3, 10);
  MixtureOfLogisticsLikelihood lik(k);
  const torch::Tensor x = all_values(dtype).view({256, 1, 1, 1});
  for (uint64_t seed : {0, 1, 2, 3, 4}) {
    torch::manual_seed(seed);
    const torch::Tensor sets = random_params(16, k, 1, dtype);
    for (int64_t i = 0; i < sets.size(0); ++i) {
      const torch::Tensor params = sets[i].unsqueeze(0).expand({256, -1, 1, 1});
      const double total = lik.log_prob(x, params).exp().sum().item<double>();
      INFO("seed " << seed << ", set " << i << ", params " << sets[i].flatten());
      REQUIRE(total == Approx(1.0).margin(1e-4));
    }
  }

  // Hand-picked extremes: a mean on an edge, past an edge, on a bin centre, on a bin boundary;
  // the scale at and below the clamp, and huge.
  const std::vector<double> means{-1.0, 1.0, -5.0, 5.0, 1.0 / 255.0, 0.0, 0.3};
  const std::vector<double> log_scales{-7.0, -20.0, -4.0, 0.0, 5.0};
  for (double mu : means) {
    for (double ls : log_scales) {
      std::vector<double> p{0.0, mu, ls};
      MixtureOfLogisticsLikelihood one(1);
      const torch::Tensor params = as_params(p).to(dtype).expand({256, 3, 1, 1});
      const double total = one.log_prob(x, params).exp().sum().item<double>();
      INFO("mean " << mu << ", log-scale " << ls);
      REQUIRE(total == Approx(1.0).margin(1e-4));
    }
  }
}

TEST_CASE("mol: the joint of an RGB pixel over a window holding its mass sums to 1",
          "[likelihood][mol]") {
  // Means within ±4 bins of the middle, scales under a bin, weak coupling: all but ~1e-8 of the
  // mass lies in the cube [88, 168)³ (tails e^(−|d|/s); the coupled means move at most ~15 bins).
  const int64_t k = GENERATE(2, 5);
  MixtureOfLogisticsLikelihood lik(k);
  torch::manual_seed(static_cast<uint64_t>(k));
  torch::Tensor params = random_params(1, k, 3, torch::kFloat64);
  params.narrow(1, k, 3 * k).uniform_(-0.03, 0.03);
  params.narrow(1, 4 * k, 3 * k).uniform_(-6.0, -5.0);
  params.narrow(1, 7 * k, 3 * k).uniform_(-0.3, 0.3);
  INFO("K " << k << ", params " << params.flatten());
  REQUIRE(rgb_mass(lik, params, 88, 168) == Approx(1.0).margin(1e-5));
  // Not 1 whatever the window: two bins per channel miss mass.
  REQUIRE(rgb_mass(lik, params, 127, 129) < 0.99);
}

TEST_CASE("mol: the joint of an RGB pixel over all 256^3 values sums to 1",
          "[likelihood][mol][slow]") {
  const int64_t k = GENERATE(1, 4);
  const uint64_t seed = GENERATE(7, 8);
  MixtureOfLogisticsLikelihood lik(k);
  torch::manual_seed(seed);
  // Means kept near the range so that mass spreads over many (r, g, b) and the coupling matters.
  torch::Tensor params = random_params(1, k, 3, torch::kFloat64);
  params.narrow(1, k, 3 * k).mul_(0.4);
  params.narrow(1, 4 * k, 3 * k).clamp_(-5.0, 0.0);
  INFO("K " << k << ", seed " << seed << ", params " << params.flatten());
  REQUIRE(rgb_mass(lik, params, 0, 256) == Approx(1.0).margin(1e-4));
}

TEST_CASE("mol: K = 1 RGB factorizes into per-channel logistics with the coupled means",
          "[likelihood][mol]") {
  // p(r) sums to 1 over r; for fixed r, the p(g | r) sum to 1 over g; for fixed (r, g), the
  // p(b | r, g) sum to 1 over b. Obtained as ratios of joints from log_prob.
  MixtureOfLogisticsLikelihood lik(1);
  // Scales wide enough that every r and g below has mass > 1e-5 (no centre-of-bin fallback).
  const std::vector<double> p{0.0, 0.2, -0.4, 0.5, -1.0, -0.8, -2.0, 0.8, -1.5, 2.0};
  const torch::Tensor v = all_values(torch::kFloat64);
  const auto joint = [&](const torch::Tensor& r, const torch::Tensor& g, const torch::Tensor& b) {
    const torch::Tensor x = torch::stack({r, g, b}, 1).view({-1, 3, 1, 1});
    return lik.log_prob(x, as_params(p).expand({x.size(0), -1, 1, 1})).exp();
  };
  const torch::Tensor ones = torch::ones({256}, torch::kFloat64);
  for (int r : {0, 40, 128, 255}) {
    for (int g : {3, 90, 250}) {
      const torch::Tensor over_b = joint(ones * (r / 255.0), ones * (g / 255.0), v);
      // Σ_b p(r, g, b) = p(r) p(g | r), each a closed-form logistic bin probability.
      const double x_r = 2.0 * r / 255.0 - 1.0;
      const double pr = bin_probability(r, p[1], p[4]);
      const double pg = bin_probability(g, p[2] + std::tanh(p[7]) * x_r, p[5]);
      REQUIRE(pr > 1e-5);
      REQUIRE(pg > 1e-5);
      REQUIRE(over_b.sum().item<double>() == Approx(pr * pg).epsilon(1e-6));
      const double x_g = 2.0 * g / 255.0 - 1.0;
      for (int bv : {0, 100, 200, 255}) {
        const double pb =
            bin_probability(bv, p[3] + std::tanh(p[8]) * x_r + std::tanh(p[9]) * x_g, p[6]);
        if (pb < 1e-5) continue;
        REQUIRE(over_b[bv].item<double>() / over_b.sum().item<double>() ==
                Approx(pb).epsilon(1e-6));
      }
    }
  }
}

TEST_CASE("mol: log_prob matches the logistic CDF difference computed by hand",
          "[likelihood][mol]") {
  SECTION("K = 1, one grayscale pixel: interior, both edge bins, the fallback, the clamp") {
    MixtureOfLogisticsLikelihood lik(1);
    const double mu = 0.1, log_s = -3.0, s = std::exp(log_s);
    const auto log_p = [&](int pixel, double mean, double ls) {
      const torch::Tensor x = torch::full({1, 1, 1, 1}, pixel / 255.0, torch::kFloat64);
      return lik.log_prob(x, as_params({0.0, mean, ls})).item<double>();
    };
    const double centre = 2.0 * 140 / 255.0 - 1.0;
    const double interior =
        std::log(sigmoid((centre + 1.0 / 255 - mu) / s) - sigmoid((centre - 1.0 / 255 - mu) / s));
    REQUIRE(log_p(140, mu, log_s) == Approx(interior).epsilon(1e-12));
    REQUIRE(log_p(0, mu, log_s) ==
            Approx(std::log(sigmoid((-1.0 + 1.0 / 255 - mu) / s))).epsilon(1e-12));
    REQUIRE(log_p(255, mu, log_s) ==
            Approx(std::log(sigmoid(-(1.0 - 1.0 / 255 - mu) / s))).epsilon(1e-12));
    // Far in the tail the CDF difference is < 1e-5: log pdf at the bin centre + log(2/255).
    const double far = 2.0 * 20 / 255.0 - 1.0;
    const double z = (far - mu) / s;
    const double log_pdf = -z - log_s - 2.0 * std::log1p(std::exp(-z));
    REQUIRE(log_p(20, mu, log_s) == Approx(log_pdf + std::log(2.0 / 255.0)).epsilon(1e-12));
    // Log-scales below −7 act as −7.
    REQUIRE(log_p(140, 0.1, -30.0) == log_p(140, 0.1, -7.0));
    REQUIRE(log_p(140, 0.1, -6.0) != log_p(140, 0.1, -7.0));
  }

  SECTION("K = 2 grayscale over two pixels: log-sum-exp over components, summed over pixels") {
    MixtureOfLogisticsLikelihood lik(2);
    // Pixel layout [1, 6, 1, 2]: channel 0-1 logits, 2-3 means, 4-5 log-scales; two pixels.
    const std::vector<std::vector<double>> per_pixel{{1.0, -0.5, -0.2, 0.6, -2.0, -3.5},
                                                     {-40.0, 30.0, 0.9, -0.95, -1.0, -4.0}};
    const std::vector<int> pixels{100, 8};
    double expected = 0;
    torch::Tensor params = torch::empty({1, 6, 1, 2}, torch::kFloat64);
    for (int i = 0; i < 2; ++i) {
      expected += reference_log_prob({pixels[i]}, per_pixel[i], 2);
      for (int c = 0; c < 6; ++c) params[0][c][0][i] = per_pixel[i][c];
    }
    const torch::Tensor x = torch::tensor({100.0, 8.0}, torch::kFloat64).view({1, 1, 1, 2}) / 255.0;
    REQUIRE(lik.log_prob(x, params).item<double>() == Approx(expected).epsilon(1e-10));
    // float32 inputs with float32 parameters agree to float precision.
    REQUIRE(lik.log_prob(x.to(torch::kFloat32), params.to(torch::kFloat32)).item<double>() ==
            Approx(expected).epsilon(1e-5));
  }

  SECTION("K = 2 RGB: the documented layout and coupling") {
    MixtureOfLogisticsLikelihood lik(2);
    const std::vector<double> p{0.3,  -0.7,              // logits
                                0.1,  -0.3, 0.4,  0.2,   // means r0 r1 g0 g1
                                -0.5, 0.6,               // means b0 b1
                                -1.5, -1.8, -1.6, -1.2,  // log-scales r0 r1 g0 g1
                                -1.7, -1.3,              // log-scales b0 b1
                                0.9,  -0.4, 1.3,  0.2,   // coefficients r→g (0, 1), r→b (0, 1)
                                -0.8, 0.5};              // coefficients g→b (0, 1)
    for (const std::vector<int>& pixel :
         std::vector<std::vector<int>>{{140, 90, 60}, {0, 255, 40}, {200, 180, 30}}) {
      const torch::Tensor x =
          torch::tensor({pixel[0] / 255.0, pixel[1] / 255.0, pixel[2] / 255.0}, torch::kFloat64)
              .view({1, 3, 1, 1});
      INFO("pixel " << pixel[0] << " " << pixel[1] << " " << pixel[2]);
      REQUIRE(lik.log_prob(x, as_params(p)).item<double>() ==
              Approx(reference_log_prob(pixel, p, 2)).epsilon(1e-10));
    }
  }
}

TEST_CASE("mol: log_prob's gradient matches finite differences (float64)", "[likelihood][mol]") {
  const int64_t channels = GENERATE(1, 3);
  const int64_t k = 3;
  MixtureOfLogisticsLikelihood lik(k);
  torch::manual_seed(21);
  const int64_t b = 2, h = 2, w = 3;
  const int64_t pc = lik.param_channels(channels);
  torch::Tensor params = torch::randn({b, pc, h, w}, torch::kFloat64);
  params.narrow(1, k, channels * k).uniform_(-1.2, 1.2);
  params.narrow(1, (1 + channels) * k, channels * k).uniform_(-4.0, 0.0);
  torch::Tensor x = torch::randint(0, 256, {b, channels, h, w}, torch::kFloat64) / 255.0;
  x[0][0][0][0] = 0.0;
  x[1][channels - 1][1][2] = 1.0;
  params.requires_grad_(true);
  lik.log_prob(x, params).sum().backward();
  const torch::Tensor analytic = params.grad().clone();
  params.requires_grad_(false);
  REQUIRE(analytic.abs().max().item<double>() > 0.1);

  const double eps = 1e-6;
  const torch::Tensor flat = params.view({-1});
  double worst = 0;
  for (int64_t i = 0; i < flat.numel(); ++i) {
    const double original = flat[i].item<double>();
    flat[i] = original + eps;
    const double up = lik.log_prob(x, params).sum().item<double>();
    flat[i] = original - eps;
    const double down = lik.log_prob(x, params).sum().item<double>();
    flat[i] = original;
    const double numeric = (up - down) / (2 * eps);
    const double a = analytic.view({-1})[i].item<double>();
    worst = std::max(worst, std::abs(numeric - a) / (1.0 + std::abs(a)));
  }
  REQUIRE(worst < 1e-5);

  // Extreme parameters (the clamp, the edges, the fallback) still give finite gradients.
  torch::Tensor extreme =
      (50.0 * torch::randn({b, pc, h, w}, torch::kFloat64)).requires_grad_(true);
  const torch::Tensor value = lik.log_prob(x, extreme);
  REQUIRE(torch::isfinite(value).all().item<bool>());
  value.sum().backward();
  REQUIRE(torch::isfinite(extreme.grad()).all().item<bool>());
}

TEST_CASE("mol: parameter channels, and the mean image", "[likelihood][mol]") {
  MixtureOfLogisticsLikelihood lik(10);
  REQUIRE(lik.param_channels(1) == 30);
  REQUIRE(lik.param_channels(3) == 100);
  REQUIRE_THROWS_AS(lik.param_channels(2), vaelab::ConfigError);
  REQUIRE_THROWS_WITH(lik.param_channels(2), Catch::Contains("only 1 or 3"));
  REQUIRE_THROWS_WITH(lik.param_channels(4), Catch::Contains("only 1 or 3"));
  REQUIRE_THROWS_AS(MixtureOfLogisticsLikelihood(0), vaelab::ConfigError);
  REQUIRE(lik.discrete());
  REQUIRE_FALSE(lik.needs_binary_data());
  // Parameters that fit neither channel count are refused, not misread.
  REQUIRE_THROWS(lik.log_prob(torch::zeros({1, 1, 2, 2}), torch::zeros({1, 29, 2, 2})));
  REQUIRE_THROWS(lik.log_prob(torch::zeros({1, 3, 2, 2}), torch::zeros({1, 30, 2, 2})));

  SECTION("in [0, 1] and shaped like the data for any parameters") {
    torch::manual_seed(5);
    for (int64_t channels : {1, 3}) {
      const torch::Tensor params = 10.0 * torch::randn({4, lik.param_channels(channels), 5, 6});
      const torch::Tensor m = lik.mean(params);
      REQUIRE(m.sizes().vec() == std::vector<int64_t>{4, channels, 5, 6});
      REQUIRE(m.min().item<double>() >= 0.0);
      REQUIRE(m.max().item<double>() <= 1.0);
      REQUIRE(m.max().item<double>() > m.min().item<double>());
    }
  }

  SECTION("K = 1: the logistic mean, mapped to [0, 1]; RGB with the coupling") {
    MixtureOfLogisticsLikelihood one(1);
    REQUIRE(one.mean(as_params({2.0, 0.3, -1.0})).item<double>() == Approx(0.65).epsilon(1e-12));
    REQUIRE(one.mean(as_params({2.0, -4.0, -1.0})).item<double>() == 0.0);
    const std::vector<double> p{0.0, 0.2, -0.4, 0.5, -2.5, -3.0, -2.0, 0.8, -1.5, 2.0};
    const torch::Tensor m = one.mean(as_params(p)).flatten();
    const double g = -0.4 + std::tanh(0.8) * 0.2;
    const double bl = 0.5 + std::tanh(-1.5) * 0.2 + std::tanh(2.0) * g;
    REQUIRE(m[0].item<double>() == Approx(0.6).epsilon(1e-12));
    REQUIRE(m[1].item<double>() == Approx((g + 1) / 2).epsilon(1e-12));
    REQUIRE(m[2].item<double>() == Approx((bl + 1) / 2).epsilon(1e-12));
  }

  SECTION("K = 3 grayscale: the expectation of the 256 values under log_prob") {
    MixtureOfLogisticsLikelihood three(3);
    const torch::Tensor params = as_params({0.5, -1.0, 1.2, -0.5, 0.1, 0.45, -3.0, -2.5, -3.5});
    const torch::Tensor v = all_values(torch::kFloat64);
    const torch::Tensor probs =
        three.log_prob(v.view({256, 1, 1, 1}), params.expand({256, -1, 1, 1})).exp();
    const double expectation = (probs * v).sum().item<double>();
    REQUIRE(three.mean(params).item<double>() == Approx(expectation).margin(1e-4));
  }
}

TEST_CASE("make_likelihood builds the mixture of logistics", "[likelihood][mol]") {
  const auto mol = vaelab::make_likelihood(
      vaelab::ConfigTable::parse("name = \"mol\"\nmixtures = 5\nsigma = 0.1\n", "likelihood"));
  REQUIRE(mol->name() == "mol");
  REQUIRE(mol->param_channels(1) == 15);
  REQUIRE(mol->param_channels(3) == 50);
  REQUIRE(mol->discrete());
  REQUIRE_FALSE(mol->needs_binary_data());
  REQUIRE_THROWS_WITH(vaelab::make_likelihood(vaelab::ConfigTable::parse(
                          "name = \"mol\"\nmixtures = 0\n", "likelihood")),
                      Catch::Contains("likelihood.mixtures"));
  REQUIRE_THROWS_WITH(
      vaelab::make_likelihood(vaelab::ConfigTable::parse("name = \"mo\"\n", "likelihood")),
      Catch::Contains("bernoulli, gaussian, mol") && Catch::Contains("did you mean 'mol'?"));

  // core/defaults.toml carries the key, with K = 10.
  toml::table defaults = vaelab::parse_toml(vaelab::core_defaults_toml(), "core/defaults.toml");
  toml::table section = *defaults["likelihood"].as_table();
  section.insert_or_assign("name", "mol");
  const auto from_defaults = vaelab::make_likelihood(vaelab::ConfigTable(section, "likelihood"));
  REQUIRE(from_defaults->param_channels(3) == 100);
}
