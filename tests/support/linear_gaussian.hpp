#pragma once
// Test oracle shared by the metric tests.

#include <cmath>
#include <string>
#include <vector>

#include <torch/torch.h>

#include <vaelab/model.hpp>

namespace vaelab::testing {

/// A linear-Gaussian "VAE" with an exact posterior: x = W z + b + σ ε with orthogonal columns
/// of W, so q(z|x) = N(Σ Wᵀ(x − b)/σ², Σ) is diagonal and exact, and log p(x) is closed-form.
class LinearGaussian final : public vaelab::Model {
 public:
  LinearGaussian(torch::Tensor w, torch::Tensor b, double sigma) : w_(w), b_(b), sigma_(sigma) {
    const torch::Tensor wtw = (w_ * w_).sum(0);  // diagonal of WᵀW
    var_ = 1.0 / (1.0 + wtw / (sigma_ * sigma_));
  }
  void build(const vaelab::ModelSpec&, vaelab::Backend&) override {}
  vaelab::Posterior encode(const torch::Tensor& x) override {
    const torch::Tensor flat = x.flatten(1) - b_;
    const torch::Tensor mean = var_ * flat.matmul(w_) / (sigma_ * sigma_);
    return {mean, var_.log().expand_as(mean)};
  }
  torch::Tensor decode(const torch::Tensor& z) override {
    return (z.matmul(w_.t()) + b_).view({z.size(0), 1, 1, w_.size(0)});
  }
  torch::nn::Module& module() override { return module_; }
  std::vector<std::string> latent_adjacent_parameters() const override { return {}; }
  std::vector<int64_t> latent_shape() const override { return {w_.size(1)}; }

  /// log N(x; b, W Wᵀ + σ² I), exactly.
  torch::Tensor log_marginal(const torch::Tensor& x) const {
    const int64_t d = w_.size(0);
    const torch::Tensor cov = w_.matmul(w_.t()) + sigma_ * sigma_ * torch::eye(d, torch::kFloat64);
    const torch::Tensor diff = x.flatten(1) - b_;
    const torch::Tensor solved = torch::linalg_solve(cov, diff.t()).t();
    const torch::Tensor maha = (diff * solved).sum(1);
    const double logdet = torch::logdet(cov).item<double>();
    return -0.5 * (maha + logdet + static_cast<double>(d) * std::log(2 * M_PI));
  }

 private:
  torch::Tensor w_, b_, var_;
  double sigma_;
  torch::nn::Module module_;
};


/// The same model with its encoder's mean shifted by `shift`: a deliberately imperfect posterior.
class ShiftedEncoder final : public vaelab::Model {
 public:
  ShiftedEncoder(LinearGaussian& exact, double shift) : exact_(exact), shift_(shift) {}
  void build(const vaelab::ModelSpec&, vaelab::Backend&) override {}
  vaelab::Posterior encode(const torch::Tensor& x) override {
    vaelab::Posterior p = exact_.encode(x);
    return {p.mean + shift_, p.log_var};
  }
  torch::Tensor decode(const torch::Tensor& z) override { return exact_.decode(z); }
  torch::nn::Module& module() override { return exact_.module(); }
  std::vector<std::string> latent_adjacent_parameters() const override { return {}; }
  std::vector<int64_t> latent_shape() const override { return exact_.latent_shape(); }

 private:
  LinearGaussian& exact_;
  double shift_;
};

}  // namespace vaelab::testing
