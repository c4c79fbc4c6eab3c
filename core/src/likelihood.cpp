#include <vaelab/likelihood.hpp>

#include <cmath>
#include <stdexcept>
#include <vector>

#include <torch/torch.h>

#include <vaelab/metrics/fused_loss.hpp>

namespace vaelab {

namespace {

constexpr double kHalfBin = 1.0 / 255.0;  // half of a bin's width 2/255 on the [−1, 1] scale
constexpr double kMinLogScale = -7.0;
constexpr double kEdge = 0.999;  // |x| beyond this is an edge bin (pixel 0 or 255)
constexpr double kMinCdfDelta = 1e-5;

/// log P(bin of x) under each logistic component, in nats: x [B, 1, H, W] on the [−1, 1] bin
/// centres, mean and log_scale [B, K, H, W] (log_scale already clamped). Returns [B, K, H, W].
torch::Tensor discretized_logistic_log_prob(const torch::Tensor& x, const torch::Tensor& mean,
                                            const torch::Tensor& log_scale) {
  const torch::Tensor centred = x - mean;
  const torch::Tensor inv_scale = torch::exp(-log_scale);
  const torch::Tensor plus_in = inv_scale * (centred + kHalfBin);
  const torch::Tensor min_in = inv_scale * (centred - kHalfBin);
  const torch::Tensor log_cdf_plus = plus_in - torch::softplus(plus_in);  // log σ(plus_in)
  const torch::Tensor log_one_minus_cdf_min = -torch::softplus(min_in);   // log(1 − σ(min_in))
  const torch::Tensor cdf_delta = torch::sigmoid(plus_in) - torch::sigmoid(min_in);
  const torch::Tensor mid_in = inv_scale * centred;
  const torch::Tensor log_pdf_mid = mid_in - log_scale - 2.0 * torch::softplus(mid_in);
  // PixelCNN++: where the cdf difference underflows, the density at the bin centre times the
  // bin width (log(2/255) = −log 127.5). The clamp keeps the unselected log finite for autograd.
  const torch::Tensor interior =
      torch::where(cdf_delta > kMinCdfDelta, torch::log(cdf_delta.clamp_min(1e-12)),
                   log_pdf_mid - std::log(127.5));
  return torch::where(x < -kEdge, log_cdf_plus,
                      torch::where(x > kEdge, log_one_minus_cdf_min, interior));
}

}  // namespace

torch::Tensor BernoulliLikelihood::log_prob(const torch::Tensor& x,
                                            const torch::Tensor& logits) const {
  // log p = x·log σ(l) + (1−x)·log(1−σ(l)) = −BCE-with-logits, stable for large |l|.
  if (fused_loss_applies(logits) && fused_loss_applies(x)) return fused_bernoulli_log_prob(x, logits);
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
  if (fused_loss_applies(mean) && fused_loss_applies(x)) return fused_gaussian_log_prob(x, mean, sigma_);
  const double log_norm = -std::log(sigma_) - 0.5 * std::log(2.0 * M_PI);
  const torch::Tensor z = (x - mean) / sigma_;
  return (-0.5 * z.square() + log_norm).flatten(1).sum(1);
}

torch::Tensor GaussianLikelihood::mean(const torch::Tensor& params) const {
  return params.clamp(0.0, 1.0);
}

MixtureOfLogisticsLikelihood::MixtureOfLogisticsLikelihood(int64_t mixtures) : mixtures_(mixtures) {
  if (mixtures < 1) {
    throw ConfigError("likelihood.mixtures: must be at least 1, got " + std::to_string(mixtures));
  }
}

int64_t MixtureOfLogisticsLikelihood::param_channels(int64_t data_channels) const {
  if (data_channels == 1) return 3 * mixtures_;
  if (data_channels == 3) return 10 * mixtures_;
  throw ConfigError("likelihood.name = \"mol\": only 1 or 3 data channels are supported, got " +
                    std::to_string(data_channels));
}

int64_t MixtureOfLogisticsLikelihood::data_channels_of(const torch::Tensor& params) const {
  if (params.dim() == 4) {
    if (params.size(1) == 3 * mixtures_) return 1;
    if (params.size(1) == 10 * mixtures_) return 3;
  }
  const std::string got = params.dim() == 4 ? std::to_string(params.size(1)) + " channels"
                                            : std::to_string(params.dim()) + " dimensions";
  throw std::invalid_argument("mixture of logistics with K = " + std::to_string(mixtures_) +
                              ": params must be [B, 3K or 10K, H, W], got " + got);
}

torch::Tensor MixtureOfLogisticsLikelihood::log_prob(const torch::Tensor& x,
                                                     const torch::Tensor& params) const {
  const int64_t channels = data_channels_of(params);
  if (x.dim() != 4 || x.size(0) != params.size(0) || x.size(1) != channels ||
      x.size(2) != params.size(2) || x.size(3) != params.size(3)) {
    throw std::invalid_argument("mixture of logistics: x must be [B, " + std::to_string(channels) +
                                ", H, W] matching params [B, P, H, W]");
  }
  const int64_t k = mixtures_;
  const int64_t b = params.size(0), h = params.size(2), w = params.size(3);
  const torch::Tensor xs = 2.0 * x.to(params.scalar_type()) - 1.0;
  const torch::Tensor logits = params.narrow(1, 0, k);
  const torch::Tensor means = params.narrow(1, k, channels * k).reshape({b, channels, k, h, w});
  const torch::Tensor log_scales = params.narrow(1, (1 + channels) * k, channels * k)
                                       .reshape({b, channels, k, h, w})
                                       .clamp_min(kMinLogScale);

  std::vector<torch::Tensor> channel_means;
  for (int64_t c = 0; c < channels; ++c) channel_means.push_back(means.select(1, c));
  if (channels == 3) {
    const torch::Tensor coeffs =
        torch::tanh(params.narrow(1, 7 * k, 3 * k).reshape({b, 3, k, h, w}));
    const torch::Tensor x_r = xs.narrow(1, 0, 1);
    const torch::Tensor x_g = xs.narrow(1, 1, 1);
    channel_means[1] = channel_means[1] + coeffs.select(1, 0) * x_r;
    channel_means[2] = channel_means[2] + coeffs.select(1, 1) * x_r + coeffs.select(1, 2) * x_g;
  }
  torch::Tensor per_component = torch::log_softmax(logits, 1);
  for (int64_t c = 0; c < channels; ++c) {
    per_component =
        per_component + discretized_logistic_log_prob(xs.narrow(1, c, 1), channel_means[c],
                                                      log_scales.select(1, c));
  }
  return torch::logsumexp(per_component, 1).flatten(1).sum(1);
}

torch::Tensor MixtureOfLogisticsLikelihood::mean(const torch::Tensor& params) const {
  const int64_t channels = data_channels_of(params);
  const int64_t k = mixtures_;
  const int64_t b = params.size(0), h = params.size(2), w = params.size(3);
  const torch::Tensor weights = torch::softmax(params.narrow(1, 0, k), 1);
  const torch::Tensor means = params.narrow(1, k, channels * k).reshape({b, channels, k, h, w});
  std::vector<torch::Tensor> component_means;
  for (int64_t c = 0; c < channels; ++c) component_means.push_back(means.select(1, c));
  if (channels == 3) {
    const torch::Tensor coeffs =
        torch::tanh(params.narrow(1, 7 * k, 3 * k).reshape({b, 3, k, h, w}));
    const torch::Tensor m_r = component_means[0].clamp(-1.0, 1.0);
    const torch::Tensor m_g = (component_means[1] + coeffs.select(1, 0) * m_r).clamp(-1.0, 1.0);
    const torch::Tensor m_b =
        (component_means[2] + coeffs.select(1, 1) * m_r + coeffs.select(1, 2) * m_g)
            .clamp(-1.0, 1.0);
    component_means = {m_r, m_g, m_b};
  } else {
    component_means[0] = component_means[0].clamp(-1.0, 1.0);
  }
  std::vector<torch::Tensor> image;
  for (const torch::Tensor& m : component_means) image.push_back((weights * m).sum(1));
  return ((torch::stack(image, 1) + 1.0) * 0.5).clamp(0.0, 1.0);
}

std::unique_ptr<Likelihood> make_likelihood(const ConfigTable& table) {
  const std::string name = table.get_choice("name", {"bernoulli", "gaussian", "mol"});
  if (name == "bernoulli") return std::make_unique<BernoulliLikelihood>();
  if (name == "mol") {
    return std::make_unique<MixtureOfLogisticsLikelihood>(table.get_int_in("mixtures", 1, 1024));
  }
  return std::make_unique<GaussianLikelihood>(table.get_double("sigma"));
}

}  // namespace vaelab
