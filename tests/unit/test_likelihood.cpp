#include <catch2/catch.hpp>

#include <cmath>

#include <torch/torch.h>

#include <vaelab/likelihood.hpp>
#include <vaelab/metrics/elbo.hpp>
#include <vaelab/model.hpp>
#include <vaelab/torch_shim.hpp>

#include "linear_gaussian.hpp"


TEST_CASE("Bernoulli is normalized over {0, 1} for every logit", "[likelihood]") {
  vaelab::BernoulliLikelihood lik;
  const torch::Tensor logits = torch::tensor({-30.0, -3.0, -0.2, 0.0, 0.7, 5.0, 40.0}).view({7, 1, 1, 1});
  const torch::Tensor p0 = lik.log_prob(torch::zeros_like(logits), logits).exp();
  const torch::Tensor p1 = lik.log_prob(torch::ones_like(logits), logits).exp();
  REQUIRE(torch::allclose(p0 + p1, torch::ones({7}), 1e-6, 1e-6));
  // And it is the product over pixels: log p of a 2-pixel image is the sum.
  const torch::Tensor two = torch::tensor({0.3, -1.2}).view({1, 1, 1, 2});
  const torch::Tensor x = torch::tensor({1.0, 0.0}).view({1, 1, 1, 2});
  const double expected = std::log(1 / (1 + std::exp(-0.3))) + std::log(1 - 1 / (1 + std::exp(1.2)));
  REQUIRE(lik.log_prob(x, two).item<double>() == Approx(expected).epsilon(1e-5));
}

TEST_CASE("fixed-variance Gaussian matches the closed form and integrates to 1", "[likelihood]") {
  const double sigma = 0.2;
  vaelab::GaussianLikelihood lik(sigma);
  const torch::Tensor x = torch::tensor({0.1, 0.9, 0.5}, torch::kFloat64).view({1, 1, 1, 3});
  const torch::Tensor mu = torch::tensor({0.0, 1.0, 0.45}, torch::kFloat64).view({1, 1, 1, 3});
  double expected = 0;
  for (auto [xv, mv] : {std::pair{0.1, 0.0}, {0.9, 1.0}, {0.5, 0.45}}) {
    expected += -0.5 * std::pow((xv - mv) / sigma, 2) - std::log(sigma) - 0.5 * std::log(2 * M_PI);
  }
  REQUIRE(lik.log_prob(x, mu).item<double>() == Approx(expected).epsilon(1e-12));

  // Riemann sum of the one-pixel density over a wide grid.
  const torch::Tensor grid = torch::linspace(-3, 3, 60001, torch::kFloat64).view({-1, 1, 1, 1});
  const torch::Tensor density = lik.log_prob(grid, torch::full_like(grid, 0.3)).exp();
  const double integral = density.sum().item<double>() * (6.0 / 60000.0);
  REQUIRE(integral == Approx(1.0).epsilon(1e-6));
  REQUIRE_THROWS_WITH(vaelab::GaussianLikelihood(0.0), Catch::Contains("likelihood.sigma"));
}

TEST_CASE("Gaussian KL matches the closed form and a Monte Carlo estimate", "[elbo]") {
  const torch::Tensor mean = torch::tensor({{0.5, -1.0}}, torch::kFloat64);
  const torch::Tensor log_var = torch::tensor({{std::log(0.25), std::log(2.0)}}, torch::kFloat64);
  const double closed = 0.5 * ((0.25 + 0.25 - 1 - std::log(0.25)) + (1.0 + 2.0 - 1 - std::log(2.0)));
  REQUIRE(vaelab::gaussian_kl(mean, log_var).item<double>() == Approx(closed).epsilon(1e-12));

  torch::manual_seed(3);
  const int64_t n = 400000;
  const torch::Tensor std_dev = (0.5 * log_var).exp();
  const torch::Tensor z = mean + std_dev * torch::randn({n, 2}, torch::kFloat64);
  const torch::Tensor log_q = (-0.5 * ((z - mean) / std_dev).square() - std_dev.log() - 0.5 * std::log(2 * M_PI)).sum(1);
  const torch::Tensor log_p = (-0.5 * z.square() - 0.5 * std::log(2 * M_PI)).sum(1);
  REQUIRE((log_q - log_p).mean().item<double>() == Approx(closed).epsilon(0.01));
}

TEST_CASE("the ELBO of a linear-Gaussian model with its exact posterior is log p(x)", "[elbo]") {
  torch::manual_seed(11);
  // Orthogonal columns with different scales.
  const torch::Tensor q = std::get<0>(torch::linalg_qr(torch::randn({6, 3}, torch::kFloat64)));
  const torch::Tensor w = q * torch::tensor({2.0, 0.7, 0.3}, torch::kFloat64);
  const torch::Tensor b = torch::randn({6}, torch::kFloat64) * 0.1;
  const double sigma = 0.5;
  vaelab::testing::LinearGaussian model(w, b, sigma);
  vaelab::GaussianLikelihood lik(sigma);
  const torch::Tensor x = (torch::randn({5, 3}, torch::kFloat64).matmul(w.t()) + b +
                           sigma * torch::randn({5, 6}, torch::kFloat64)).view({5, 1, 1, 6});
  const torch::Tensor exact = model.log_marginal(x);
  at::Generator gen = vaelab::shim::make_cpu_generator(5);
  const vaelab::ElboTerms terms = vaelab::elbo_terms(model, lik, x, 20000, &gen);
  REQUIRE(torch::allclose(terms.elbo, exact, 0, 0.05));

  // A worse posterior (shifted mean) gives a strictly lower ELBO: the bound is not an identity.
  vaelab::testing::ShiftedEncoder shifted(model, 0.5);
  const vaelab::ElboTerms worse = vaelab::elbo_terms(shifted, lik, x, 20000, &gen);
  REQUIRE((worse.elbo < exact - 0.1).all().item<bool>());
}

TEST_CASE("make_likelihood reads the [likelihood] table", "[likelihood]") {
  const auto g = vaelab::make_likelihood(vaelab::ConfigTable::parse("name = \"gaussian\"\nsigma = 0.05\n", "likelihood"));
  REQUIRE(g->name() == "gaussian");
  REQUIRE_FALSE(g->discrete());
  const auto b = vaelab::make_likelihood(vaelab::ConfigTable::parse("name = \"bernoulli\"\nsigma = 0.1\n", "likelihood"));
  REQUIRE(b->discrete());
  REQUIRE(b->needs_binary_data());
  REQUIRE_THROWS_WITH(vaelab::make_likelihood(vaelab::ConfigTable::parse("name = \"gauss\"\n", "likelihood")),
                      Catch::Contains("likelihood.name") && Catch::Contains("did you mean 'gaussian'?"));
}
