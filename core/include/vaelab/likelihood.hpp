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

/// Builds the likelihood named by the [likelihood] table (keys: name, sigma).
std::unique_ptr<Likelihood> make_likelihood(const ConfigTable& table);

}  // namespace vaelab
