// ppca-world: its exact log-density against a dense computation, its samples against its
// covariance, the plugin as the host loads it, and the IWAE/ELBO bounds and the evaluator held
// against its exact log-likelihood with a linear-Gaussian decoder set to the true parameters.

#include <catch2/catch.hpp>

#include <cmath>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <vaelab/config.hpp>
#include <vaelab/error.hpp>
#include <vaelab/likelihood.hpp>
#include <vaelab/metrics/elbo.hpp>
#include <vaelab/metrics/evaluator.hpp>
#include <vaelab/metrics/iwae.hpp>
#include <vaelab/torch_shim.hpp>

#include "linear_gaussian.hpp"
#include "plugin_registry.hpp"
#include "ppca_world.hpp"

using vaelab::plugins::PpcaSettings;
using vaelab::plugins::PpcaWorld;

namespace {

PpcaSettings small_world() {
  PpcaSettings s;
  s.channels = 2;
  s.height = 4;
  s.width = 5;
  s.latent = 6;
  s.noise = 0.2;
  s.signal = 0.5;
  s.decay = 0.8;
  s.smoothness = 1.0;
  s.mean = 0.3;
  s.seed = 11;
  return s;
}

torch::Tensor as_tensor(const std::vector<double>& v, std::vector<int64_t> shape) {
  return torch::tensor(v, torch::kFloat64).view(shape);
}

torch::Tensor flat_values(const vaelab::ImageSet& images) {
  return torch::tensor(std::vector<double>(images.values.begin(), images.values.end()),
                       torch::kFloat64)
      .view({images.count, images.image_bytes()});
}

/// log N(x; mean, W Wᵀ + σ² I) with a dense covariance: the closed form's oracle.
torch::Tensor dense_log_density(const PpcaWorld& world, const torch::Tensor& x) {
  const int64_t d = world.dims();
  const torch::Tensor w = as_tensor(world.weights(), {d, world.latent()});
  const torch::Tensor cov = w.matmul(w.t()) + world.noise() * world.noise() * torch::eye(d, torch::kFloat64);
  const torch::Tensor diff = x - world.mean();
  const torch::Tensor maha = (diff * torch::linalg_solve(cov, diff.t()).t()).sum(1);
  return -0.5 * (maha + torch::logdet(cov) + static_cast<double>(d) * std::log(2 * M_PI));
}

}  // namespace

TEST_CASE("ppca-world's directions are orthonormal and its scales decay as configured", "[ppca]") {
  const PpcaWorld world(small_world());
  const torch::Tensor q = as_tensor(world.basis(), {world.dims(), world.latent()});
  REQUIRE(torch::allclose(q.t().matmul(q), torch::eye(world.latent(), torch::kFloat64), 0, 1e-10));
  const auto& s = world.scales();
  for (size_t j = 1; j < s.size(); ++j) REQUIRE(s[j] / s[j - 1] == Approx(0.8));
  // Σ s_j² = D · signal²: the average per-pixel signal variance is signal².
  double sum = 0;
  for (double v : s) sum += v * v;
  REQUIRE(sum / static_cast<double>(world.dims()) == Approx(0.25));
}

TEST_CASE("ppca-world's exact log-likelihood equals a dense Gaussian log-density", "[ppca]") {
  const PpcaWorld world(small_world());
  vaelab::ImageSet images = world.sample(0, 40, 0);
  // Also points far from the data: the formula must hold everywhere, not only on samples.
  for (size_t i = 0; i < 20 * static_cast<size_t>(world.dims()); ++i) {
    images.values[i] = static_cast<float>(std::sin(static_cast<double>(i)) * 3.0);
  }
  const std::vector<double> closed = world.log_likelihood(images);
  const torch::Tensor dense = dense_log_density(world, flat_values(images));
  REQUIRE(torch::allclose(torch::tensor(closed, torch::kFloat64), dense, 1e-9, 1e-7));
}

TEST_CASE("ppca-world's samples have the model's covariance", "[ppca]") {
  const PpcaWorld world(small_world());
  const int64_t n = 20000;
  const torch::Tensor x = flat_values(world.sample(0, n, 0));
  const int64_t d = world.dims();
  const torch::Tensor w = as_tensor(world.weights(), {d, world.latent()});
  const torch::Tensor cov = w.matmul(w.t()) + world.noise() * world.noise() * torch::eye(d, torch::kFloat64);
  const torch::Tensor centred = x - x.mean(0);
  const torch::Tensor sample_cov = centred.t().matmul(centred) / static_cast<double>(n - 1);
  REQUIRE((x.mean(0) - world.mean()).abs().max().item<double>() < 0.05);
  // Entries of a sample covariance have standard error about sqrt((Σii Σjj + Σij²) / n).
  const double worst = ((sample_cov - cov).abs() / (cov.diag().max() * std::sqrt(2.0 / n))).max().item<double>();
  REQUIRE(worst < 5.0);
  // The average log-likelihood of the world's own images is its negative entropy, in expectation:
  // −½ (D log 2π + log det Σ + D).
  const double entropy_term =
      -0.5 * (static_cast<double>(d) * (std::log(2 * M_PI) + 1.0) + torch::logdet(cov).item<double>());
  const std::vector<double> ll = world.log_likelihood(world.sample(0, n, 1));
  double mean_ll = 0;
  for (double v : ll) mean_ll += v / static_cast<double>(n);
  REQUIRE(mean_ll == Approx(entropy_term).margin(0.1));
}

TEST_CASE("ppca-world image i is the same whatever the split size; splits and seeds differ", "[ppca]") {
  const PpcaWorld world(small_world());
  const vaelab::ImageSet ten = world.sample(0, 10, 0);
  const vaelab::ImageSet three = world.sample(7, 3, 0);
  REQUIRE(std::equal(three.values.begin(), three.values.end(), ten.values.begin() + 7 * world.dims()));
  const vaelab::ImageSet test = world.sample(0, 10, 1);
  REQUIRE(test.values != ten.values);
  PpcaSettings other = small_world();
  other.seed = 12;
  REQUIRE(PpcaWorld(other).sample(0, 10, 0).values != ten.values);
  REQUIRE(PpcaWorld(other).basis() != world.basis());
}

TEST_CASE("the ppca-world plugin opens continuous splits and reports their exact likelihood", "[ppca]") {
  const vaelab::Registry& registry = vaelab::testing::build_registry();
  // The plugin's defaults.toml with `overrides` on top, as the host resolves a [data.config].
  const auto config = [&](const std::string& overrides) {
    const toml::table defaults = vaelab::parse_toml(
        registry.find(VL_PLUGIN_KIND_DATA_SOURCE, "ppca-world").defaults_toml, "defaults.toml");
    return vaelab::format_toml(vaelab::merge_tables(defaults, vaelab::parse_toml(overrides, "test")));
  };
  auto source = registry.create<vaelab::DataSource>(
      "ppca-world", config("channels = 2\nheight = 4\nwidth = 5\nlatent = 6\nnoise = 0.2\nsignal = 0.5\n"
                           "decay = 0.8\nsmoothness = 1.0\nmean = 0.3\nseed = 11\ntrain_size = 30\n"
                           "test_size = 12\n"));
  const vaelab::Dataset data = source->open();
  REQUIRE(data.train.count == 30);
  REQUIRE(data.test.count == 12);
  REQUIRE(data.train.continuous());
  REQUIRE(data.train.pixels.empty());
  REQUIRE(data.train.labels == std::vector<int64_t>(30, -1));
  REQUIRE(data.num_classes == 0);
  const PpcaWorld world(small_world());
  REQUIRE(data.test.values == world.sample(0, 12, 1).values);
  REQUIRE(source->exact_log_likelihood(data.test) == world.log_likelihood(data.test));

  SECTION("bad settings are refused naming the key") {
    const auto refused = [&](const std::string& extra, const std::string& key) {
      try {
        registry.create<vaelab::DataSource>("ppca-world", config(extra));
        FAIL("accepted " << extra);
      } catch (const vaelab::Error& e) {
        INFO(e.what());
        REQUIRE(std::string(e.what()).find(key) != std::string::npos);
      }
    };
    refused("height = 2\nwidth = 2\nlatent = 5\n", "latent");
    refused("noise = 0.0\n", "noise");
    refused("decay = 1.5\n", "decay");
    refused("train_size = 0\n", "train_size");
  }
  SECTION("an 8-bit image set has no exact likelihood here") {
    vaelab::ImageSet bytes;
    bytes.count = 1;
    bytes.channels = 2;
    bytes.height = 4;
    bytes.width = 5;
    bytes.pixels.assign(40, 0);
    REQUIRE_THROWS_WITH(source->exact_log_likelihood(bytes), Catch::Contains("continuous"));
  }
}

TEST_CASE("on ppca-world with the true linear-Gaussian decoder, ELBO ≤ IWAE(K) ≈ log p(x)", "[ppca][iwae]") {
  PpcaSettings settings = small_world();
  settings.latent = 3;
  settings.noise = 0.4;
  const PpcaWorld world(settings);
  const int64_t n = 256;
  const vaelab::ImageSet images = world.sample(0, n, 1);
  const torch::Tensor x = flat_values(images).view({n, 1, 1, world.dims()});
  const torch::Tensor w = as_tensor(world.weights(), {world.dims(), world.latent()});
  const torch::Tensor b = torch::full({world.dims()}, world.mean(), torch::kFloat64);
  vaelab::testing::LinearGaussian exact_model(w, b, world.noise());
  vaelab::GaussianLikelihood lik(world.noise());
  const std::vector<double> truth = world.log_likelihood(images);
  double log_p = 0;
  for (double v : truth) log_p += v / static_cast<double>(n);

  // The true decoder with the analytic posterior: every importance weight is p(x).
  at::Generator gen = vaelab::shim::make_cpu_generator(5);
  REQUIRE(torch::allclose(vaelab::iwae_bound(exact_model, lik, x, 3, 3, &gen),
                          torch::tensor(truth, torch::kFloat64), 0, 1e-6));

  // An imperfect encoder: the bounds order as theory says and IWAE closes in on log p(x).
  vaelab::testing::ShiftedEncoder model(exact_model, 0.3);
  const double elbo = vaelab::elbo_terms(model, lik, x, 2000, &gen).elbo.mean().item<double>();
  const double iwae_10 = vaelab::iwae_bound(model, lik, x, 10, 10, &gen).mean().item<double>();
  const double iwae_5000 = vaelab::iwae_bound(model, lik, x, 5000, 500, &gen).mean().item<double>();
  REQUIRE(elbo < iwae_10 - 0.05);
  REQUIRE(iwae_10 < iwae_5000);
  REQUIRE(iwae_5000 <= log_p + 0.02);
  REQUIRE(iwae_5000 == Approx(log_p).margin(0.05));
}

TEST_CASE("the evaluator reports ppca-world's exact log-likelihood and the IWAE's distance to it", "[ppca][evaluator]") {
  PpcaSettings settings = small_world();
  settings.latent = 3;
  const PpcaWorld world(settings);
  const int64_t n = 64;
  const vaelab::ImageSet images = world.sample(0, n, 1);
  const torch::Tensor x = flat_values(images).to(torch::kFloat32).view({n, 1, 1, world.dims()});
  const torch::Tensor w = as_tensor(world.weights(), {world.dims(), world.latent()}).to(torch::kFloat32);
  const torch::Tensor b = torch::full({world.dims()}, world.mean(), torch::kFloat32);
  vaelab::testing::LinearGaussian model(w, b, world.noise());
  vaelab::GaussianLikelihood lik(world.noise());
  const toml::table eval = vaelab::parse_toml(
      "elbo_samples = 400\nbatch_size = 100\n[iwae]\nsamples = 50\nchunk = 50\nimages = 32\n", "eval");
  const vaelab::Evaluator evaluator(model, lik, torch::kCPU, vaelab::ConfigTable(eval, "eval"), 3);
  vaelab::EvalData data;
  data.train = x;
  data.test = x;
  data.test_exact_log_likelihood = world.log_likelihood(images);
  data.continuous = true;
  const nlohmann::json out = evaluator.run({"elbo", "iwae"}, data);
  double mean = 0;
  for (double v : data.test_exact_log_likelihood) mean += v / static_cast<double>(n);
  REQUIRE(out.at("exact_log_likelihood_test_nats").get<double>() == Approx(mean).epsilon(1e-9));
  // With the analytic posterior the bound is exact (float32 arithmetic aside).
  REQUIRE(std::abs(out.at("iwae_exact_gap_nats").get<double>()) < 1e-3);
  // ...and the ELBO equals log p(x) in expectation (its reconstruction term is a Monte Carlo
  // estimate: with 400 samples per image the mean still moves by about 0.01 nats between seeds).
  REQUIRE(out.at("elbo_test_nats").get<double>() == Approx(mean).margin(0.05));
  REQUIRE_THROWS_WITH(evaluator.run({"robustness"}, data), Catch::Contains("continuous"));
}
