// Training: Adam's element-wise update in one pass (the fused optimizer, train/fused_adam.hpp).
// No torch here: compiled with -O3 -fno-math-errno so the loop vectorizes, once per ISA
// (target_clones picks the clone for the CPU it runs on when the library loads).
#include <vaelab/train/adam_kernel.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>

namespace vaelab {

AdamStepConstants adam_step_constants(double lr, double beta1, double beta2, double eps, int64_t t) {
  AdamStepConstants c;
  c.beta1 = static_cast<float>(beta1);
  c.beta2 = static_cast<float>(beta2);
  c.one_minus_beta1 = static_cast<float>(1.0 - beta1);
  c.one_minus_beta2 = static_cast<float>(1.0 - beta2);
  c.eps = static_cast<float>(eps);
  const double step = static_cast<double>(t);
  c.step_size = static_cast<float>(lr / (1.0 - std::pow(beta1, step)));
  c.sqrt_correction2 = static_cast<float>(std::sqrt(1.0 - std::pow(beta2, step)));
  return c;
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("default", "arch=haswell", "arch=skylake-avx512")))
#endif
void adam_update(float* __restrict param, const float* __restrict grad, float* __restrict exp_avg,
                 float* __restrict exp_avg_sq, int64_t n, const AdamStepConstants& c) {
  const float b1 = c.beta1, one_minus_b1 = c.one_minus_beta1;
  const float b2 = c.beta2, one_minus_b2 = c.one_minus_beta2;
  const float inv_correction2 = 1.0f / c.sqrt_correction2;
  const float eps = c.eps, step_size = c.step_size;
  for (int64_t i = 0; i < n; ++i) {
    const float g = grad[i];
    const float m = b1 * exp_avg[i] + one_minus_b1 * g;
    const float v = b2 * exp_avg_sq[i] + one_minus_b2 * g * g;
    exp_avg[i] = m;
    exp_avg_sq[i] = v;
    param[i] -= step_size * m / (std::sqrt(v) * inv_correction2 + eps);
  }
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("default", "arch=haswell", "arch=skylake-avx512")))
#endif
bool all_finite(const float* x, int64_t n) {
  // A float is NaN or infinite exactly when its exponent bits are all ones.
  uint32_t bad = 0;
  for (int64_t i = 0; i < n; ++i) {
    uint32_t bits;
    std::memcpy(&bits, x + i, sizeof bits);
    bad |= static_cast<uint32_t>((bits & 0x7f800000u) == 0x7f800000u);
  }
  return bad == 0;
}

}  // namespace vaelab
