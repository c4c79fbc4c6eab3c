#include <vaelab/compress/quantize.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

namespace vaelab::compress {

namespace {

double normal_cdf(double x) { return 0.5 * std::erfc(-x / std::sqrt(2.0)); }
double logistic_cdf(double x) { return 1.0 / (1.0 + std::exp(-x)); }

/// Φ⁻¹(p) for p in (0, 1) by bisection on Φ: slow, simple and as exact as Φ itself.
double normal_quantile(double p) {
  double lo = -40.0, hi = 40.0;
  for (int i = 0; i < 200; ++i) {
    const double mid = 0.5 * (lo + hi);
    if (mid == lo || mid == hi) break;
    (normal_cdf(mid) < p ? lo : hi) = mid;
  }
  return 0.5 * (lo + hi);
}

/// Edges of the 256 bins of an 8-bit value on [−1, 1]: e_v = (2v − 1)/255 − 1 for v in [1, 255].
const double* pixel_edges() {
  static const auto edges = [] {
    std::vector<double> e(257, 0.0);
    for (int v = 1; v < 256; ++v) e[static_cast<size_t>(v)] = (2.0 * v - 1.0) / 255.0 - 1.0;
    return e;
  }();
  return edges.data();
}

/// The symbol in [0, n) whose interval [F(k), F(k+1)) holds c, for a non-decreasing cumulative
/// frequency function F with F(0) = 0 and F(n) = 2^precision (binary search).
template <class Cumulative>
uint32_t find_symbol(uint32_t n, int precision, uint32_t c, const Cumulative& cumulative, Interval& interval) {
  uint32_t lo = 0, hi = n;
  uint64_t f_lo = 0, f_hi = uint64_t{1} << precision;
  while (hi - lo > 1) {
    const uint32_t mid = lo + (hi - lo) / 2;
    const uint64_t f = cumulative(mid);
    if (f <= c) {
      lo = mid;
      f_lo = f;
    } else {
      hi = mid;
      f_hi = f;
    }
  }
  interval = {static_cast<uint32_t>(f_lo), static_cast<uint32_t>(f_hi - f_lo)};
  return lo;
}

}  // namespace

FixedCdf::FixedCdf(double range, double (*cdf)(double)) : range_(range) {
  const auto steps = static_cast<size_t>(2.0 * range * 256.0);
  table_.resize(steps + 1);
  uint64_t previous = 0;
  for (size_t i = 0; i <= steps; ++i) {
    const double t = -range + static_cast<double>(i) / 256.0;
    const auto v = static_cast<uint64_t>(std::llround(cdf(t) * static_cast<double>(kOne)));
    previous = std::max(previous, std::min(v, kOne));  // monotone by construction
    table_[i] = previous;
  }
}

const FixedCdf& FixedCdf::normal() {
  static const FixedCdf table(8.0, normal_cdf);
  return table;
}

const FixedCdf& FixedCdf::logistic() {
  static const FixedCdf table(20.0, logistic_cdf);
  return table;
}

GaussianBuckets::GaussianBuckets(int bits) : bits_(bits) {
  if (bits < 1 || bits > 16) {
    throw std::invalid_argument("latent precision must be 1 to 16 bits, got " + std::to_string(bits));
  }
  const uint32_t n = uint32_t{1} << bits;
  edges_.assign(n + 1, 0.0);
  edges_.front() = -std::numeric_limits<double>::infinity();
  edges_.back() = std::numeric_limits<double>::infinity();
  centres_.resize(n);
  for (uint32_t k = 0; k < n; ++k) {
    if (k > 0) edges_[k] = normal_quantile(static_cast<double>(k) / n);
    centres_[k] = static_cast<float>(normal_quantile((k + 0.5) / n));
  }
  for (uint32_t k = 1; k < n; ++k) {
    if (!(edges_[k] > edges_[k - 1])) throw std::logic_error("bucket edges are not increasing");
  }
}

GaussianPosteriorCode::GaussianPosteriorCode(const GaussianBuckets& buckets, int precision,
                                             float mean, float log_var)
    : buckets_(buckets),
      precision_(precision),
      mean_(mean),
      inv_sigma_(std::exp(-0.5 * static_cast<double>(log_var))),
      spread_(std::ldexp(1.0, precision) - buckets.count()) {}

uint64_t GaussianPosteriorCode::cumulative(uint32_t k) const {
  if (k == 0) return 0;
  if (k >= buckets_.count()) return uint64_t{1} << precision_;
  const double t = (buckets_.edge(k) - mean_) * inv_sigma_;
  const auto spread = static_cast<uint64_t>(spread_);
  return k + ((spread * FixedCdf::normal()(t)) >> FixedCdf::kScaleBits);
}

Interval GaussianPosteriorCode::interval(uint32_t k) const {
  const uint64_t lo = cumulative(k);
  return {static_cast<uint32_t>(lo), static_cast<uint32_t>(cumulative(k + 1) - lo)};
}

uint32_t GaussianPosteriorCode::find(uint32_t c, Interval& interval) const {
  return find_symbol(buckets_.count(), precision_, c, [this](uint32_t k) { return cumulative(k); }, interval);
}

namespace {
uint32_t bernoulli_zero_freq(float logit, int precision) {
  const uint64_t total = uint64_t{1} << precision;
  uint64_t one = (FixedCdf::logistic()(logit) << precision) >> FixedCdf::kScaleBits;
  one = std::clamp<uint64_t>(one, 1, total - 1);
  return static_cast<uint32_t>(total - one);
}
}  // namespace

Interval bernoulli_interval(float logit, int precision, uint8_t bit) {
  const uint32_t f0 = bernoulli_zero_freq(logit, precision);
  if (bit == 0) return {0, f0};
  return {f0, static_cast<uint32_t>((uint64_t{1} << precision) - f0)};
}

uint8_t bernoulli_find(float logit, int precision, uint32_t c, Interval& interval) {
  const uint32_t f0 = bernoulli_zero_freq(logit, precision);
  if (c < f0) {
    interval = {0, f0};
    return 0;
  }
  interval = {f0, static_cast<uint32_t>((uint64_t{1} << precision) - f0)};
  return 1;
}

MolPixelCode::MolPixelCode(int channels, int mixtures, int precision)
    : channels_(channels),
      mixtures_(mixtures),
      precision_(precision),
      weights_(static_cast<size_t>(mixtures)),
      fixed_weights_(static_cast<size_t>(mixtures)),
      means_(static_cast<size_t>(mixtures)),
      inv_scales_(static_cast<size_t>(mixtures)) {
  if (channels != 1 && channels != 3) {
    throw std::invalid_argument("mixture of logistics: 1 or 3 channels, got " + std::to_string(channels));
  }
  if (mixtures < 1 || precision < 9 || precision > 31) {
    throw std::invalid_argument("mixture of logistics: needs K >= 1 and precision 9..31");
  }
}

void MolPixelCode::start(const float* params, int64_t stride) {
  params_ = params;
  stride_ = stride;
  channel_ = 0;
  double top = -std::numeric_limits<double>::infinity();
  for (int k = 0; k < mixtures_; ++k) top = std::max(top, static_cast<double>(params_[k * stride_]));
  for (int k = 0; k < mixtures_; ++k) {
    const double w = std::exp(static_cast<double>(params_[k * stride_]) - top);
    weights_[static_cast<size_t>(k)] = w >= 0 ? w : 0.0;  // NaN → 0
  }
  quantize_weights();
  load_channel();
}

void MolPixelCode::quantize_weights() {
  double total = 0;
  for (double w : weights_) total += w;
  weight_total_ = 0;
  size_t best = 0;
  for (size_t k = 0; k < weights_.size(); ++k) {
    const double share = total > 0 && std::isfinite(total) ? weights_[k] / total : 0.0;
    fixed_weights_[k] = static_cast<uint64_t>(std::floor(std::clamp(share, 0.0, 1.0) * 65536.0));
    weight_total_ += fixed_weights_[k];
    if (weights_[k] > weights_[best]) best = k;
  }
  if (weight_total_ == 0) {  // degenerate parameters: one component carries the pixel
    fixed_weights_[best] = 1;
    weight_total_ = 1;
  }
}

void MolPixelCode::load_channel() {
  const int64_t k_count = mixtures_;
  const int c = channel_;
  for (int64_t k = 0; k < k_count; ++k) {
    double m = params_[(k_count + c * k_count + k) * stride_];
    if (c == 1) {
      m += std::tanh(static_cast<double>(params_[(7 * k_count + k) * stride_])) * x_[0];
    } else if (c == 2) {
      m += std::tanh(static_cast<double>(params_[(8 * k_count + k) * stride_])) * x_[0] +
           std::tanh(static_cast<double>(params_[(9 * k_count + k) * stride_])) * x_[1];
    }
    const double log_scale =
        std::max(static_cast<double>(params_[((1 + channels_) * k_count + c * k_count + k) * stride_]), -7.0);
    means_[static_cast<size_t>(k)] = m;
    inv_scales_[static_cast<size_t>(k)] = std::exp(-log_scale);
  }
}

uint64_t MolPixelCode::mixture_cdf(int v) const {
  const double e = pixel_edges()[v];
  const FixedCdf& sigma = FixedCdf::logistic();
  uint64_t sum = 0;
  for (size_t k = 0; k < fixed_weights_.size(); ++k) {
    if (fixed_weights_[k] == 0) continue;
    sum += fixed_weights_[k] * sigma((e - means_[k]) * inv_scales_[k]);
  }
  return sum;
}

uint64_t MolPixelCode::cumulative(int v) const {
  if (v <= 0) return 0;
  const uint64_t total = uint64_t{1} << precision_;
  if (v >= 256) return total;
  const uint64_t spread = total - 256;
  const double share = static_cast<double>(mixture_cdf(v)) /
                       static_cast<double>(weight_total_ << FixedCdf::kScaleBits);
  const double scaled = std::floor(share * static_cast<double>(spread));
  return static_cast<uint64_t>(v) + std::min(spread, static_cast<uint64_t>(std::max(scaled, 0.0)));
}

Interval MolPixelCode::interval(uint8_t v) const {
  const uint64_t lo = cumulative(v);
  return {static_cast<uint32_t>(lo), static_cast<uint32_t>(cumulative(v + 1) - lo)};
}

uint8_t MolPixelCode::find(uint32_t c, Interval& interval) const {
  const auto at = [this](uint32_t v) { return cumulative(static_cast<int>(v)); };
  return static_cast<uint8_t>(find_symbol(256, precision_, c, at, interval));
}

void MolPixelCode::next(uint8_t v) {
  const FixedCdf& sigma = FixedCdf::logistic();
  const double* edges = pixel_edges();
  double total = 0;
  std::vector<double>& updated = scratch_;
  updated.resize(weights_.size());
  for (size_t k = 0; k < weights_.size(); ++k) {
    const uint64_t upper = v == 255 ? FixedCdf::kOne : sigma((edges[v + 1] - means_[k]) * inv_scales_[k]);
    const uint64_t lower = v == 0 ? 0 : sigma((edges[v] - means_[k]) * inv_scales_[k]);
    updated[k] = weights_[k] * static_cast<double>(upper - lower);
    total += updated[k];
  }
  if (total > 0 && std::isfinite(total)) weights_.swap(updated);  // else keep the prior weights
  x_[channel_] = 2.0 * v / 255.0 - 1.0;
  ++channel_;
  if (channel_ < channels_) {
    quantize_weights();
    load_channel();
  }
}

}  // namespace vaelab::compress
