#include <vaelab/likelihood.hpp>

#include <cmath>

#include <torch/torch.h>

namespace vaelab {

torch::Tensor BernoulliLikelihood::log_prob(const torch::Tensor& x,
                                            const torch::Tensor& logits) const {
  // log p = x·log σ(l) + (1−x)·log(1−σ(l)) = −BCE-with-logits, stable for large |l|.
  const torch::Tensor per_pixel = -torch::binary_cross_entropy_with_logits(
      logits, x, /*weight=*/{}, /*pos_weight=*/{}, at::Reduction::None);
  return per_pixel.flatten(1).sum(1);
}

torch::Tensor BernoulliLikelihood::mean(const torch::Tensor& logits) const {
  return torch::sigmoid(logits);
}

GaussianLikelihood::GaussianLikelihood(double sigma) : sigma_(sigma) {
  if (!(sigma > 0) || !std::isfinite(sigma)) {
    throw ConfigError("likelihood.sigma: must be a positive number, got " + std::to_string(sigma));
  }
}

torch::Tensor GaussianLikelihood::log_prob(const torch::Tensor& x,
                                           const torch::Tensor& mean) const {
  const double log_norm = -std::log(sigma_) - 0.5 * std::log(2.0 * M_PI);
  const torch::Tensor z = (x - mean) / sigma_;
  return (-0.5 * z.square() + log_norm).flatten(1).sum(1);
}

torch::Tensor GaussianLikelihood::mean(const torch::Tensor& params) const {
  return params.clamp(0.0, 1.0);
}

std::unique_ptr<Likelihood> make_likelihood(const ConfigTable& table) {
  const std::string name = table.get_choice("name", {"bernoulli", "gaussian"});
  if (name == "bernoulli") return std::make_unique<BernoulliLikelihood>();
  return std::make_unique<GaussianLikelihood>(table.get_double("sigma"));
}

}  // namespace vaelab
