#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <torch/optim/adam.h>

#include <vaelab/train/adam_kernel.hpp>

namespace vaelab {

/// The key torch::optim::Adam files a parameter's state under (Optimizer::state()).
std::string adam_state_key(const torch::Tensor& param);

/// torch::optim::Adam whose step() is one threaded, vectorized pass over every parameter: the
/// moments of all parameters live in two flat float buffers, and each parameter's
/// AdamParamState holds views into them, so code that reads or writes torch's Adam state
/// (checkpoints) works unchanged. Results equal torch::optim::Adam's within float rounding,
/// and are the same for every thread count. Supports one parameter group of contiguous float
/// CPU tensors, without weight decay or AMSGrad (anything else is refused when constructed);
/// a parameter without a gradient is left alone, as torch's Adam does.
class FusedAdam : public torch::optim::Adam {
 public:
  FusedAdam(std::vector<torch::Tensor> params, torch::optim::AdamOptions options);
  torch::Tensor step(LossClosure closure = nullptr) override;
  /// Empty when FusedAdam can hold these parameters; else why not (a sentence).
  static std::string unsupported(const std::vector<torch::Tensor>& params);
  /// Elements over all parameters.
  int64_t numel() const { return numel_; }

 private:
  /// Makes every parameter's state (new, or replaced by a checkpoint load) a view into the
  /// flat buffers, copying values that were elsewhere.
  void pack_state();
  std::vector<int64_t> offsets_;  ///< of each parameter in the flat buffers
  int64_t numel_ = 0;
  torch::Tensor exp_avg_;     ///< [numel_] float
  torch::Tensor exp_avg_sq_;  ///< [numel_] float
};

/// One parameter's Adam step with its own moment tensors (a generator's optimizer): the fused
/// loop, threaded, where all four are contiguous float CPU tensors of one shape; torch
/// operations with the same meaning otherwise.
void adam_update(torch::Tensor& param, const torch::Tensor& grad, torch::Tensor& exp_avg, torch::Tensor& exp_avg_sq,
                 const AdamStepConstants& c);

/// Drops every parameter's gradient (leaves it undefined) instead of zeroing it, as PyTorch's
/// `zero_grad(set_to_none=True)` does: the next backward then hands each parameter its new
/// gradient tensor instead of adding it to a zeroed one. That saves two passes over the gradients
/// per step (the zeroing, and the read-add-write of the accumulation), which at small batches is
/// a measurable share of a step (docs/backends.md). Values are the same: 0 + g = g.
void clear_gradients(torch::optim::Optimizer& optimizer);

/// [train] optimizer: FusedAdam when `fused` and the parameters allow it, else torch's Adam; in
/// `chosen`, when given, what was made and, for a fallback, why.
std::unique_ptr<torch::optim::Adam> make_adam(const std::vector<torch::Tensor>& params,
                                              const torch::optim::AdamOptions& options, bool fused,
                                              std::string* chosen = nullptr);

}  // namespace vaelab
