// The fused loss's loops (metrics/fused_loss.hpp). No torch here: compiled with -O3
// -fno-math-errno, once per ISA (target_clones). The transcendental functions are written out
// (fast_exp, fast_log1p_unit) so the pixel loops vectorize; each row is processed in chunks whose
// values are summed in double, in a fixed order, so results do not depend on threads.
#include "loss_kernels.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define VAELAB_CLONES __attribute__((target_clones("default", "arch=haswell", "arch=skylake-avx512")))
#else
#define VAELAB_CLONES
#endif

namespace vaelab::kernels {

namespace {

constexpr int64_t kChunk = 256;

inline float bits_to_float(uint32_t b) {
  float f;
  std::memcpy(&f, &b, sizeof f);
  return f;
}
inline uint32_t float_to_bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, sizeof b);
  return b;
}

/// exp(x): x = n·ln2 + r with |r| ≤ ln2/2, exp(r) by its Taylor series to r⁷ (relative error
/// below 6e-9 there), times 2ⁿ built in the exponent bits.
inline float exp_inline(float x) {
  const float lo = -87.3f, hi = 88.7f;
  const float xc = std::min(std::max(x, lo), hi);
  const float shifter = 12582912.0f;  // 1.5·2²³: adding it rounds to an integer in the low bits
  const float t = xc * 1.44269504088896341f + shifter;
  const float n = t - shifter;
  const int32_t ni = static_cast<int32_t>(float_to_bits(t) - float_to_bits(shifter));
  const float r = (xc - n * 0.693145751953125f) - n * 1.42860682030941723e-6f;  // ln 2 in two parts
  float p = 1.0f / 5040;
  p = p * r + 1.0f / 720;
  p = p * r + 1.0f / 120;
  p = p * r + 1.0f / 24;
  p = p * r + 1.0f / 6;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const float scaled = p * bits_to_float(static_cast<uint32_t>(ni + 127) << 23);
  return x < lo ? 0.0f : (x > hi ? std::numeric_limits<float>::infinity() : scaled);
}

/// log(u) for u in [1, 2]: halved above √2 (adding ln 2), then 2·atanh(s) with s = (u−1)/(u+1),
/// |s| ≤ 0.172, by its series to s⁹ (error below 1e-9).
inline float log_1_2_inline(float u) {
  const bool big = u > 1.41421356f;
  const float v = big ? 0.5f * u : u;
  const float s = (v - 1.0f) / (v + 1.0f);
  const float s2 = s * s;
  float p = 1.0f / 9;
  p = p * s2 + 1.0f / 7;
  p = p * s2 + 1.0f / 5;
  p = p * s2 + 1.0f / 3;
  p = p * s2 + 1.0f;
  return 2.0f * s * p + (big ? 0.693147180559945f : 0.0f);
}

/// log(1 + t), t in [0, 1]: log(u)·t/(u − 1) with u = 1 + t corrects the rounding of 1 + t.
inline float log1p_unit_inline(float t) {
  const float u = 1.0f + t;
  const float d = u - 1.0f;
  return d == 0.0f ? t : log_1_2_inline(u) * (t / d);
}

inline double sum_chunk(const float* v, int64_t n) {
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    s0 += v[i];
    s1 += v[i + 1];
    s2 += v[i + 2];
    s3 += v[i + 3];
  }
  for (; i < n; ++i) s0 += v[i];
  return (s0 + s1) + (s2 + s3);
}

}  // namespace

float fast_exp(float x) { return exp_inline(x); }
float fast_log1p_unit(float t) { return log1p_unit_inline(t); }

VAELAB_CLONES
double bernoulli_log_prob(const float* x, const float* logits, int64_t n) {
  float tmp[kChunk];
  double total = 0;
  for (int64_t start = 0; start < n; start += kChunk) {
    const int64_t m = std::min(kChunk, n - start);
    const float* xs = x + start;
    const float* ls = logits + start;
    for (int64_t i = 0; i < m; ++i) {
      const float l = ls[i];
      // softplus(l) = max(l, 0) + log(1 + exp(−|l|))
      const float softplus = std::max(l, 0.0f) + log1p_unit_inline(exp_inline(-std::fabs(l)));
      tmp[i] = xs[i] * l - softplus;
    }
    total += sum_chunk(tmp, m);
  }
  return total;
}

VAELAB_CLONES
void bernoulli_log_prob_backward(const float* x, const float* logits, int64_t n, float g, float* dlogits,
                                 float* dx) {
  for (int64_t i = 0; i < n; ++i) {
    const float l = logits[i];
    // x − σ(l) = x·σ(−l) − (1 − x)·σ(l), with both from e = exp(−|l|): no cancellation when
    // σ(l) is close to x.
    const float e = exp_inline(-std::fabs(l));
    const float inv = 1.0f / (1.0f + e);
    const float big = inv, small = e * inv;  // σ(|l|), σ(−|l|)
    const float sig_pos = l >= 0.0f ? big : small, sig_neg = l >= 0.0f ? small : big;
    dlogits[i] = g * (x[i] * sig_neg - (1.0f - x[i]) * sig_pos);
  }
  if (dx != nullptr) {
    for (int64_t i = 0; i < n; ++i) dx[i] = g * logits[i];
  }
}

VAELAB_CLONES
double gaussian_log_prob(const float* x, const float* mean, int64_t n, float inv_sigma) {
  float tmp[kChunk];
  double total = 0;
  for (int64_t start = 0; start < n; start += kChunk) {
    const int64_t m = std::min(kChunk, n - start);
    for (int64_t i = 0; i < m; ++i) {
      const float d = (x[start + i] - mean[start + i]) * inv_sigma;
      tmp[i] = -0.5f * d * d;
    }
    total += sum_chunk(tmp, m);
  }
  return total;
}

VAELAB_CLONES
void gaussian_log_prob_backward(const float* x, const float* mean, int64_t n, float g_over_var, float* dmean,
                                float* dx) {
  if (dmean != nullptr) {
    for (int64_t i = 0; i < n; ++i) dmean[i] = g_over_var * (x[i] - mean[i]);
  }
  if (dx != nullptr) {
    for (int64_t i = 0; i < n; ++i) dx[i] = g_over_var * (mean[i] - x[i]);
  }
}

double reparameterize_kl(const float* mean, const float* log_var, const float* eps, int64_t n, float* z) {
  double kl = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float sd = exp_inline(0.5f * log_var[i]);
    z[i] = mean[i] + sd * eps[i];
    kl += 0.5 * (static_cast<double>(mean[i]) * mean[i] + static_cast<double>(sd) * sd - 1.0 - log_var[i]);
  }
  return kl;
}

void reparameterize_kl_backward(const float* mean, const float* log_var, const float* eps, int64_t n,
                                const float* gz, float g_kl, float* dmean, float* dlog_var) {
  for (int64_t i = 0; i < n; ++i) {
    const float sd = exp_inline(0.5f * log_var[i]);
    const float from_z = gz != nullptr ? gz[i] : 0.0f;
    dmean[i] = from_z + g_kl * mean[i];
    dlog_var[i] = from_z * 0.5f * sd * eps[i] + g_kl * 0.5f * (sd * sd - 1.0f);
  }
}

}  // namespace vaelab::kernels
