// The fused loss (metrics/fused_loss.hpp): its exp and log1p against the C library, and the
// reparameterization with the KL, the Bernoulli and the Gaussian likelihoods against the same
// quantities written with torch operations in double (values, and gradients by autograd and by
// finite differences), the same bits for every thread count, and NaN passed on.

#include <catch2/catch.hpp>

#include <cmath>
#include <limits>

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <vaelab/likelihood.hpp>
#include <vaelab/metrics/elbo.hpp>
#include <vaelab/metrics/fused_loss.hpp>

#include "../../core/src/metrics/loss_kernels.hpp"

namespace {

torch::Tensor double_copy(const torch::Tensor& t) { return t.detach().to(torch::kDouble).requires_grad_(); }

/// The largest |a − b| / (|b| + floor) over the elements.
double worst_relative(const torch::Tensor& a, const torch::Tensor& b, double floor) {
  return ((a.to(torch::kDouble) - b.to(torch::kDouble)).abs() / (b.to(torch::kDouble).abs() + floor)).max().item<double>();
}

}  // namespace

TEST_CASE("fused loss: exp and log1p within 2 ulp of the C library", "[unit][fused-loss]") {
  double worst_exp = 0;
  for (double x = -87.0; x <= 88.0; x += 0.0137) {
    const float xf = static_cast<float>(x);
    const double want = std::exp(static_cast<double>(xf));
    worst_exp = std::max(worst_exp, std::abs(vaelab::kernels::fast_exp(xf) - want) / want);
  }
  CHECK(worst_exp < 2.5e-7);
  CHECK(vaelab::kernels::fast_exp(0.0f) == 1.0f);
  CHECK(vaelab::kernels::fast_exp(-100.0f) == 0.0f);
  CHECK(std::isinf(vaelab::kernels::fast_exp(100.0f)));
  CHECK(std::isnan(vaelab::kernels::fast_exp(std::numeric_limits<float>::quiet_NaN())));
  double worst_log = 0;
  for (double t : {1e-30, 1e-12, 3e-8, 1e-7, 1e-4, 0.01, 0.1, 0.3, 0.41, 0.4142, 0.5, 0.77, 0.999, 1.0}) {
    const float tf = static_cast<float>(t);
    const double want = std::log1p(static_cast<double>(tf));
    worst_log = std::max(worst_log, std::abs(vaelab::kernels::fast_log1p_unit(tf) - want) / want);
  }
  for (int i = 1; i <= 1000; ++i) {
    const float tf = static_cast<float>(i) / 1000.0f;
    const double want = std::log1p(static_cast<double>(tf));
    worst_log = std::max(worst_log, std::abs(vaelab::kernels::fast_log1p_unit(tf) - want) / want);
  }
  CHECK(worst_log < 2.5e-7);
}

TEST_CASE("fused Bernoulli and Gaussian likelihoods equal torch's formulas in double, values and gradients",
          "[unit][fused-loss]") {
  torch::manual_seed(11);
  // 300 pixels: more than one chunk of the kernel, and not a multiple of any vector width.
  const torch::Tensor x_bin = torch::rand({7, 1, 15, 20}).gt(0.5).to(torch::kFloat);
  const torch::Tensor x_real = torch::rand({7, 1, 15, 20});
  const torch::Tensor params = (torch::randn({7, 1, 15, 20}) * 6).requires_grad_();  // logits out to ±20
  const torch::Tensor upstream = torch::randn({7});

  SECTION("bernoulli") {
    const vaelab::BernoulliLikelihood lik;
    const torch::Tensor x = x_bin.clone().requires_grad_();
    const torch::Tensor fused = lik.log_prob(x, params);
    (fused * upstream).sum().backward();
    const torch::Tensor xd = double_copy(x), pd = double_copy(params);
    const torch::Tensor ref = (xd * pd - torch::softplus(pd)).flatten(1).sum(1);
    (ref * upstream.to(torch::kDouble)).sum().backward();
    CHECK(worst_relative(fused, ref, 1.0) < 1e-6);
    CHECK(worst_relative(params.grad(), pd.grad(), 1e-3) < 1e-5);
    CHECK(worst_relative(x.grad(), xd.grad(), 1e-3) < 1e-5);
    // a probability mass: over the two values of one pixel it sums to 1
    const torch::Tensor one = torch::full({2, 1}, 1.7f), values = torch::tensor({0.0f, 1.0f}).reshape({2, 1});
    CHECK(lik.log_prob(values, one).exp().sum().item<double>() == Approx(1.0).epsilon(1e-6));
  }
  SECTION("gaussian") {
    const vaelab::GaussianLikelihood lik(0.3);
    const torch::Tensor x = x_real.clone().requires_grad_();
    const torch::Tensor fused = lik.log_prob(x, params);
    (fused * upstream).sum().backward();
    const torch::Tensor xd = double_copy(x), pd = double_copy(params);
    const torch::Tensor ref =
        (-0.5 * ((xd - pd) / 0.3).square() - std::log(0.3) - 0.5 * std::log(2 * M_PI)).flatten(1).sum(1);
    (ref * upstream.to(torch::kDouble)).sum().backward();
    CHECK(worst_relative(fused, ref, 1.0) < 1e-6);
    CHECK(worst_relative(params.grad(), pd.grad(), 1e-3) < 1e-5);
    CHECK(worst_relative(x.grad(), xd.grad(), 1e-3) < 1e-5);
  }
}

TEST_CASE("fused reparameterization and KL equal torch's formulas in double, values and gradients",
          "[unit][fused-loss]") {
  torch::manual_seed(12);
  const torch::Tensor mean = torch::randn({9, 16}).requires_grad_();
  const torch::Tensor log_var = (torch::randn({9, 16}) * 2).requires_grad_();
  const torch::Tensor eps = torch::randn({9, 16});
  const torch::Tensor up_z = torch::randn({9, 16}), up_kl = torch::randn({9});
  REQUIRE(vaelab::fused_loss_applies(mean));
  const vaelab::ReparameterizedKl r = vaelab::reparameterize_kl(mean, log_var, eps);
  ((r.z * up_z).sum() + (r.kl * up_kl).sum()).backward();
  const torch::Tensor md = double_copy(mean), lvd = double_copy(log_var);
  const torch::Tensor z = md + (0.5 * lvd).exp() * eps.to(torch::kDouble);
  const torch::Tensor kl = vaelab::gaussian_kl(md, lvd);
  ((z * up_z.to(torch::kDouble)).sum() + (kl * up_kl.to(torch::kDouble)).sum()).backward();
  CHECK(worst_relative(r.z, z, 1.0) < 1e-6);
  CHECK(worst_relative(r.kl, kl, 1.0) < 1e-6);
  CHECK(worst_relative(mean.grad(), md.grad(), 1e-3) < 1e-5);
  CHECK(worst_relative(log_var.grad(), lvd.grad(), 1e-3) < 1e-5);
  // A double tensor takes torch's operations, with the same meaning.
  const vaelab::ReparameterizedKl rd = vaelab::reparameterize_kl(md.detach(), lvd.detach(), eps.to(torch::kDouble));
  CHECK(worst_relative(rd.kl, kl, 1.0) < 1e-12);
}

TEST_CASE("fused ELBO: gradients match central finite differences", "[unit][fused-loss]") {
  torch::manual_seed(13);
  // A one-layer linear decoder in float: the ELBO through the fused reparameterization, KL and
  // Bernoulli likelihood, differentiated with respect to the posterior's mean and log-variance.
  const torch::Tensor w = torch::randn({4, 30}) * 0.5;
  const torch::Tensor x = torch::rand({3, 30}).gt(0.5).to(torch::kFloat);
  const torch::Tensor eps = torch::randn({3, 4});
  const vaelab::BernoulliLikelihood lik;
  const auto elbo = [&](const torch::Tensor& mean, const torch::Tensor& log_var) {
    const vaelab::ReparameterizedKl r = vaelab::reparameterize_kl(mean, log_var, eps);
    return (lik.log_prob(x, r.z.matmul(w)) - r.kl).sum();
  };
  const torch::Tensor mean = torch::randn({3, 4}).requires_grad_();
  const torch::Tensor log_var = (torch::randn({3, 4}) * 0.5).requires_grad_();
  elbo(mean, log_var).backward();
  torch::NoGradGuard no_grad;
  const double h = 1e-2;
  int checked = 0;
  for (const auto* which : {&mean, &log_var}) {
    for (int64_t k = 0; k < 12; ++k) {
      torch::Tensor plus = which->detach().clone(), minus = which->detach().clone();
      plus.view({-1})[k] += h;
      minus.view({-1})[k] -= h;
      const bool is_mean = which == &mean;
      const double up = elbo(is_mean ? plus : mean.detach(), is_mean ? log_var.detach() : plus).item<double>();
      const double down = elbo(is_mean ? minus : mean.detach(), is_mean ? log_var.detach() : minus).item<double>();
      const double numeric = (up - down) / (2 * h);
      const double analytic = which->grad().view({-1})[k].item<double>();
      CHECK(analytic == Approx(numeric).epsilon(2e-2).margin(2e-2));
      ++checked;
    }
  }
  CHECK(checked == 24);
}

TEST_CASE("fused loss: the same bits for one thread and two; NaN passed on", "[unit][fused-loss]") {
  torch::manual_seed(14);
  const torch::Tensor x = torch::rand({64, 1, 28, 28}).gt(0.5).to(torch::kFloat);
  const torch::Tensor logits = torch::randn({64, 1, 28, 28}) * 3;
  const vaelab::BernoulliLikelihood lik;
  const int before = at::get_num_threads();
  at::set_num_threads(1);
  const torch::Tensor one = lik.log_prob(x, logits);
  at::set_num_threads(2);
  const torch::Tensor two = lik.log_prob(x, logits);
  at::set_num_threads(before);
  CHECK(torch::equal(one, two));
  torch::Tensor bad = logits.clone();
  bad[5][0][3][3] = std::numeric_limits<float>::quiet_NaN();
  const torch::Tensor with_nan = lik.log_prob(x, bad);
  CHECK(std::isnan(with_nan[5].item<float>()));
  CHECK(std::isfinite(with_nan[4].item<float>()));
  const vaelab::GaussianLikelihood gauss(0.1);
  CHECK(std::isnan(gauss.log_prob(x, bad)[5].item<float>()));
}

TEST_CASE("fused loss: a second derivative through it is refused, not silently zero", "[unit][fused-loss]") {
  const torch::Tensor x = torch::rand({2, 5});
  const torch::Tensor mean = torch::rand({2, 5}).requires_grad_();
  const vaelab::GaussianLikelihood lik(0.5);
  const torch::Tensor ll = lik.log_prob(x, mean).sum();
  CHECK_THROWS_WITH(torch::autograd::grad({ll}, {mean}, {}, /*retain_graph=*/true, /*create_graph=*/true),
                    Catch::Contains("create_graph"));
  // First derivatives still work.
  const torch::Tensor g = torch::autograd::grad({ll}, {mean})[0];
  CHECK(torch::allclose(g, (x - mean.detach()) / 0.25, 1e-5, 1e-5));
}
