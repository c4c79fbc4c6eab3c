#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <torch/types.h>

#include <vaelab/config.hpp>

namespace vaelab {

/// p(x|z) given the decoder's output. Shared by every model; chosen by the run config's
/// [likelihood] table. Inputs x are float [B, C, H, W] in [0, 1] (binary for Bernoulli).
class Likelihood {
 public:
  virtual ~Likelihood() = default;
  virtual std::string name() const = 0;
  /// Decoder output channels needed for `data_channels` image channels.
  virtual int64_t param_channels(int64_t data_channels) const = 0;
  /// log p(x | params) per image, in nats: shape [B].
  virtual torch::Tensor log_prob(const torch::Tensor& x, const torch::Tensor& params) const = 0;
  /// The mean image the parameters describe, in [0, 1] (for sample and reconstruction grids).
  virtual torch::Tensor mean(const torch::Tensor& params) const = 0;
  /// True when log_prob is a probability mass over the data's discrete values, so that
  /// −log_prob / (D ln 2) is a code length in bits per dimension.
  virtual bool discrete() const = 0;
  /// True when the data must be binary ({0, 1}) for log_prob to be a likelihood.
  virtual bool needs_binary_data() const = 0;
};

/// Bernoulli over {0, 1} per pixel; the decoder outputs logits.
class BernoulliLikelihood final : public Likelihood {
 public:
  std::string name() const override { return "bernoulli"; }
  int64_t param_channels(int64_t data_channels) const override { return data_channels; }
  torch::Tensor log_prob(const torch::Tensor& x, const torch::Tensor& logits) const override;
  torch::Tensor mean(const torch::Tensor& logits) const override;
  bool discrete() const override { return true; }
  bool needs_binary_data() const override { return true; }
};

/// Gaussian with fixed standard deviation sigma per pixel; the decoder outputs the mean.
/// A density on continuous x: no bits per dimension are reported for it.
class GaussianLikelihood final : public Likelihood {
 public:
  explicit GaussianLikelihood(double sigma);
  std::string name() const override { return "gaussian"; }
  int64_t param_channels(int64_t data_channels) const override { return data_channels; }
  torch::Tensor log_prob(const torch::Tensor& x, const torch::Tensor& mean) const override;
  torch::Tensor mean(const torch::Tensor& params) const override;
  bool discrete() const override { return false; }
  bool needs_binary_data() const override { return false; }
  double sigma() const { return sigma_; }

 private:
  double sigma_;
};

/// Discretized mixture of K logistics over 256 pixel values (Salimans et al. 2017, PixelCNN++),
/// for 1 (grayscale) or 3 (RGB) channels. A data value x in [0, 1] (pixel / 255) is the bin
/// centre 2x − 1 in [−1, 1]; bins are 2/255 wide and the two edge bins extend to ±∞. Every
/// channel of a pixel shares one mixture component; in RGB, within a component, the green mean
/// is shifted by c0·x_r and the blue one by c1·x_r + c2·x_g, where x_r, x_g are the observed
/// values in [−1, 1] and c = tanh(raw coefficient). As in PixelCNN++, a bin whose CDF difference
/// is below 1e-5 gets the density at its centre times the bin width instead.
///
/// Parameter layout along the channel dimension of params [B, P, H, W], per pixel, with
/// component k in 0..K−1 fastest and data channel c in 0..C−1 next:
///   C = 1, P = 3K:  [0, K) mixture logits | [K, 2K) means | [2K, 3K) log-scales
///   C = 3, P = 10K: [0, K) mixture logits | [K + cK + k] means (c = r, g, b)
///                   | [4K + cK + k] log-scales | [7K + jK + k] raw coefficients
///                   (j = 0: r→g, 1: r→b, 2: g→b)
/// Means are on the [−1, 1] scale; log-scales are natural logs, clamped below at −7. (Grouped by
/// parameter kind, unlike PixelCNN++'s code, which interleaves means, log-scales and coefficients
/// per colour channel.)
class MixtureOfLogisticsLikelihood final : public Likelihood {
 public:
  /// `mixtures` = K >= 1 components; throws ConfigError otherwise.
  explicit MixtureOfLogisticsLikelihood(int64_t mixtures);
  std::string name() const override { return "mol"; }
  /// 3K for 1 channel, 10K for 3; throws ConfigError for any other channel count.
  int64_t param_channels(int64_t data_channels) const override;
  /// log p(x | params) in nats per image, [B]: the mixture over components per pixel, summed
  /// over pixels. x is [B, C, H, W] in [0, 1] on the 1/255 grid; params as laid out above.
  torch::Tensor log_prob(const torch::Tensor& x, const torch::Tensor& params) const override;
  /// Σ_k π_k m_k mapped to [0, 1], per channel: m_k is component k's logistic mean (for RGB
  /// with the coupling applied to the component means, each clamped to [−1, 1]). [B, C, H, W].
  torch::Tensor mean(const torch::Tensor& params) const override;
  bool discrete() const override { return true; }
  bool needs_binary_data() const override { return false; }
  /// Number of mixture components K.
  int64_t mixtures() const { return mixtures_; }

 private:
  /// Data channels (1 or 3) for a params tensor; throws when its channel count fits neither.
  int64_t data_channels_of(const torch::Tensor& params) const;
  int64_t mixtures_;
};

/// Builds the likelihood named by the [likelihood] table (keys: name, sigma, mixtures).
std::unique_ptr<Likelihood> make_likelihood(const ConfigTable& table);

}  // namespace vaelab
