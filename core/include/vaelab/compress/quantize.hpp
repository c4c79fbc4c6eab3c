#pragma once
// Probabilities → integer frequencies for the rANS coder, computed identically by the encoder and
// the decoder. Everything here is integer arithmetic or IEEE double arithmetic on the model's
// float outputs, through tables built once; every cumulative frequency function is monotone by
// construction, so every symbol gets a frequency of at least 1 and the frequencies sum exactly to
// the total. Torch-free; docs/compression.md.

#include <cstddef>
#include <cstdint>
#include <vector>

namespace vaelab::compress {

/// A cumulative frequency table entry: the symbol's start and frequency out of 2^precision.
struct Interval {
  uint32_t start = 0;
  uint32_t freq = 0;
};

/// The standard normal CDF Φ and the logistic sigmoid σ as fixed-point tables (values scaled to
/// 2^30) interpolated linearly in integers: monotone non-decreasing in their argument, the same
/// bits on every machine for the same double argument.
class FixedCdf {
 public:
  static constexpr int kScaleBits = 30;
  static constexpr uint64_t kOne = uint64_t{1} << kScaleBits;
  /// Φ on [−8, 8], steps of 2^−8.
  static const FixedCdf& normal();
  /// σ on [−20, 20], steps of 2^−8.
  static const FixedCdf& logistic();
  /// The CDF at t, in [0, 2^30]; NaN counts as −∞.
  uint64_t operator()(double t) const {
    if (!(t > -range_)) return table_.front();
    if (t >= range_) return table_.back();
    // t·2^16 fits in int64 here; the table has one entry per 2^8 of these units.
    const auto fixed = static_cast<int64_t>((t + range_) * 65536.0);
    const auto i = static_cast<std::size_t>(fixed >> 8);
    const auto frac = static_cast<uint64_t>(fixed & 255);
    if (i + 1 >= table_.size()) return table_.back();
    return table_[i] + (((table_[i + 1] - table_[i]) * frac) >> 8);
  }

 private:
  FixedCdf(double range, double (*cdf)(double));
  double range_;
  std::vector<uint64_t> table_;
};

/// The latent code of bits-back coding: each dimension of z is discretized into 2^bits buckets of
/// equal mass under the N(0, 1) prior (bucket k covers [Φ⁻¹(k/2^bits), Φ⁻¹((k+1)/2^bits))), and
/// a bucket stands for its centre in probability, Φ⁻¹((k + 1/2)/2^bits).
class GaussianBuckets {
 public:
  /// 1 <= bits <= 20. Built by bisection on Φ (std::erfc) in doubles.
  explicit GaussianBuckets(int bits);
  int bits() const { return bits_; }
  uint32_t count() const { return static_cast<uint32_t>(centres_.size()); }
  /// The value that stands for bucket k (what the decoder is fed).
  float centre(uint32_t k) const { return centres_[k]; }
  /// Lower edge of bucket k, k in [1, count()) (bucket 0 starts at −∞).
  double edge(uint32_t k) const { return edges_[k]; }

 private:
  int bits_;
  std::vector<double> edges_;
  std::vector<float> centres_;
};

/// q(z_i | x) = N(mean, exp(log_var)) over the buckets, as frequencies out of 2^precision
/// (precision > buckets.bits(), <= 31): F(k) = k + floor((2^precision − 2^bits)·Φ((edge_k −
/// mean)/σ)), F(0) = 0, F(2^bits) = 2^precision; bucket k gets F(k+1) − F(k) >= 1.
class GaussianPosteriorCode {
 public:
  GaussianPosteriorCode(const GaussianBuckets& buckets, int precision, float mean, float log_var);
  Interval interval(uint32_t k) const;
  /// The bucket whose interval holds cumulative value c (binary search), with its interval.
  uint32_t find(uint32_t c, Interval& interval) const;

 private:
  uint64_t cumulative(uint32_t k) const;
  const GaussianBuckets& buckets_;
  int precision_;
  double mean_;
  double inv_sigma_;
  double spread_;  ///< 2^precision − 2^bits
};

/// Bernoulli p(x = 1) = σ(logit) as frequencies out of 2^precision (1 <= precision <= 31):
/// f1 = clamp(floor(σ(logit)·2^precision), 1, 2^precision − 1), f0 = 2^precision − f1; symbol 0 is
/// [0, f0), symbol 1 is [f0, 2^precision).
Interval bernoulli_interval(float logit, int precision, uint8_t bit);
/// The symbol whose interval holds c, and its interval.
uint8_t bernoulli_find(float logit, int precision, uint32_t c, Interval& interval);

/// The discretized mixture of logistics of MixtureOfLogisticsLikelihood (likelihood.hpp) for one
/// pixel, channel by channel (r, then g given r, then b given r and g), as frequencies over the
/// 256 values out of 2^precision (9 <= precision <= 31). Value v's bin is [e_v, e_{v+1}) with
/// e_v = (2v − 1)/255 − 1 and the edge bins open; F(v) = v + floor((2^precision − 256)·C(e_v)/C_max)
/// with C(e) = Σ_k W_k·σ_fixed((e − m_k)·exp(−s_k)), W_k the mixture weights in 2^16ths.
/// After a channel's value is known, the weights become the posterior over components given it
/// (PixelCNN++'s joint mixture, coded as a chain).
class MolPixelCode {
 public:
  /// `channels` is 1 or 3, `mixtures` is K >= 1.
  MolPixelCode(int channels, int mixtures, int precision);
  /// Starts a pixel at its first channel. `params` points at the pixel's first parameter;
  /// consecutive parameters are `stride` floats apart (H·W in a [P, H, W] layout).
  void start(const float* params, int64_t stride);
  /// Channel c's interval for value v (channels are coded in order; call next() between them).
  Interval interval(uint8_t v) const;
  /// The value whose interval holds c.
  uint8_t find(uint32_t c, Interval& interval) const;
  /// Conditions on the value of the current channel and moves to the next one.
  void next(uint8_t v);

 private:
  uint64_t mixture_cdf(int v) const;  ///< Σ_k W_k σ(u_k(e_v)), v in [1, 255]
  uint64_t cumulative(int v) const;
  void quantize_weights();

  void load_channel();

  const float* params_ = nullptr;
  int64_t stride_ = 0;
  int channels_;
  int mixtures_;
  int precision_;
  int channel_ = 0;
  double x_[3] = {0, 0, 0};          ///< values coded so far, on [−1, 1]
  std::vector<double> weights_;      ///< component probabilities given the channels so far
  std::vector<uint64_t> fixed_weights_;
  uint64_t weight_total_ = 0;
  std::vector<double> means_;        ///< of the current channel, coupling applied
  std::vector<double> inv_scales_;
  std::vector<double> scratch_;
};

}  // namespace vaelab::compress
