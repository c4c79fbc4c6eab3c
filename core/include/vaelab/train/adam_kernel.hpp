#pragma once

// Adam's element-wise update, without torch: the fused optimizer (train/fused_adam.hpp) and the
// generators call it.
#include <cstdint>

namespace vaelab {

/// One Adam step's constants for a run of elements that share a step count (Kingma & Ba 2015,
/// the form torch::optim::Adam computes): m ← β₁m + (1−β₁)g; v ← β₂v + (1−β₂)g²;
/// p ← p − step_size · m / (√v / sqrt_correction2 + ε), with step_size = lr / (1 − β₁ᵗ) and
/// sqrt_correction2 = √(1 − β₂ᵗ).
struct AdamStepConstants {
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float one_minus_beta1 = 0.1f;  ///< computed in double, as torch does (1 − 0.999f is not 0.001f)
  float one_minus_beta2 = 0.001f;
  float eps = 1e-8f;
  float step_size = 0;
  float sqrt_correction2 = 1;
};

/// The constants of step t (1-based) for learning rate lr.
AdamStepConstants adam_step_constants(double lr, double beta1, double beta2, double eps, int64_t t);

/// The update above over n contiguous floats, in one pass (vectorized for the CPU it runs on;
/// the caller splits the work across threads). Element-wise, so the result does not depend on
/// how the elements are split.
void adam_update(float* param, const float* grad, float* exp_avg, float* exp_avg_sq, int64_t n,
                 const AdamStepConstants& c);

/// True when none of the n floats is NaN or infinite: one vectorized read, no allocation (the
/// trainer's check of every gradient after each backward pass).
bool all_finite(const float* x, int64_t n);

}  // namespace vaelab
