// Training: the fused Adam (train/fused_adam.hpp) — torch's Adam state, kept in two flat
// buffers and updated in one threaded pass.
#include <vaelab/train/fused_adam.hpp>

#include <algorithm>
#include <string>

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <vaelab/error.hpp>

namespace vaelab {

namespace {

/// A run of elements updated with one set of constants.
struct Segment {
  int64_t begin = 0;  ///< in the flat index space (offset of the parameter)
  int64_t size = 0;
  float* param = nullptr;
  const float* grad = nullptr;
  AdamStepConstants constants;
};

}  // namespace

std::string FusedAdam::unsupported(const std::vector<torch::Tensor>& params) {
  for (size_t i = 0; i < params.size(); ++i) {
    const torch::Tensor& p = params[i];
    if (p.scalar_type() != torch::kFloat || !p.device().is_cpu() || !p.is_contiguous()) {
      return "parameter " + std::to_string(i) + " is a " + (p.is_contiguous() ? "" : "non-contiguous ") +
             std::string(c10::toString(p.scalar_type())) + " tensor on " + p.device().str() +
             "; the fused Adam needs contiguous float tensors on the CPU";
    }
  }
  return "";
}

std::string adam_state_key(const torch::Tensor& param) {
  return c10::guts::to_string(param.unsafeGetTensorImpl());
}

FusedAdam::FusedAdam(std::vector<torch::Tensor> params, torch::optim::AdamOptions options)
    : torch::optim::Adam(std::move(params), options) {
  if (options.weight_decay() != 0 || options.amsgrad()) {
    throw Error("fused Adam: weight decay and AMSGrad are not supported (use torch::optim::Adam)");
  }
  const std::string why = unsupported(param_groups().at(0).params());
  if (!why.empty()) throw Error("fused Adam: " + why);
  for (const auto& p : param_groups().at(0).params()) {
    offsets_.push_back(numel_);
    numel_ += p.numel();
  }
  exp_avg_ = torch::zeros({numel_}, torch::kFloat);
  exp_avg_sq_ = torch::zeros({numel_}, torch::kFloat);
}

void FusedAdam::pack_state() {
  torch::NoGradGuard no_grad;
  const auto& params = param_groups().at(0).params();
  for (size_t i = 0; i < params.size(); ++i) {
    const torch::Tensor& p = params[i];
    const auto it = state().find(adam_state_key(p));
    if (it == state().end()) continue;  // created when the parameter first has a gradient
    auto& st = static_cast<torch::optim::AdamParamState&>(*it->second);
    float* m = exp_avg_.data_ptr<float>() + offsets_[i];
    float* v = exp_avg_sq_.data_ptr<float>() + offsets_[i];
    const bool packed = st.exp_avg().defined() && st.exp_avg().data_ptr() == m &&
                        st.exp_avg_sq().defined() && st.exp_avg_sq().data_ptr() == v;
    if (packed) continue;
    if (st.max_exp_avg_sq().defined()) throw Error("fused Adam: AMSGrad state is not supported");
    torch::Tensor m_view = exp_avg_.narrow(0, offsets_[i], p.numel()).view(p.sizes());
    torch::Tensor v_view = exp_avg_sq_.narrow(0, offsets_[i], p.numel()).view(p.sizes());
    m_view.copy_(st.exp_avg());
    v_view.copy_(st.exp_avg_sq());
    st.exp_avg(m_view);
    st.exp_avg_sq(v_view);
  }
}

torch::Tensor FusedAdam::step(LossClosure closure) {
  torch::NoGradGuard no_grad;
  torch::Tensor loss;
  if (closure != nullptr) {
    at::AutoGradMode enable_grad(true);
    loss = closure();
  }
  pack_state();
  auto& group = param_groups().at(0);
  const auto& options = static_cast<const torch::optim::AdamOptions&>(group.options());
  const auto& params = group.params();
  std::vector<Segment> segments;
  segments.reserve(params.size());
  std::vector<torch::Tensor> contiguous_grads;  // keeps copies of strided gradients alive
  contiguous_grads.reserve(params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    const torch::Tensor& p = params[i];
    if (!p.grad().defined()) continue;
    contiguous_grads.push_back(p.grad().contiguous());
    const torch::Tensor& g = contiguous_grads.back();
    if (g.scalar_type() != torch::kFloat || g.sizes() != p.sizes() || !g.device().is_cpu()) {
      throw Error("fused Adam: parameter " + std::to_string(i) + "'s gradient is not a float CPU tensor of its shape");
    }
    const std::string key = adam_state_key(p);
    auto it = state().find(key);
    if (it == state().end()) {
      auto st = std::make_unique<torch::optim::AdamParamState>();
      st->step(0);
      torch::Tensor m_view = exp_avg_.narrow(0, offsets_[i], p.numel()).view(p.sizes());
      torch::Tensor v_view = exp_avg_sq_.narrow(0, offsets_[i], p.numel()).view(p.sizes());
      m_view.zero_();
      v_view.zero_();
      st->exp_avg(m_view);
      st->exp_avg_sq(v_view);
      it = state().emplace(key, std::move(st)).first;
    }
    auto& st = static_cast<torch::optim::AdamParamState&>(*it->second);
    st.step(st.step() + 1);
    Segment s;
    s.begin = offsets_[i];
    s.size = p.numel();
    s.param = p.data_ptr<float>();
    s.grad = g.data_ptr<float>();
    s.constants = adam_step_constants(options.lr(), std::get<0>(options.betas()), std::get<1>(options.betas()),
                                      options.eps(), st.step());
    segments.push_back(s);
  }
  if (segments.empty()) return loss;
  // One pass over the elements of every parameter with a gradient: the threads split the flat
  // index space; each piece of a segment is updated by the thread that owns that range.
  std::vector<int64_t> starts;  // position of each segment in the concatenation of the segments
  int64_t total = 0;
  for (const auto& s : segments) {
    starts.push_back(total);
    total += s.size;
  }
  float* m = exp_avg_.data_ptr<float>();
  float* v = exp_avg_sq_.data_ptr<float>();
  constexpr int64_t kGrain = 1 << 15;
  at::parallel_for(0, total, kGrain, [&](int64_t begin, int64_t end) {
    auto seg = std::upper_bound(starts.begin(), starts.end(), begin) - starts.begin() - 1;
    for (int64_t pos = begin; pos < end; ++seg) {
      const Segment& s = segments[static_cast<size_t>(seg)];
      const int64_t local = pos - starts[static_cast<size_t>(seg)];
      const int64_t count = std::min(end - pos, s.size - local);
      adam_update(s.param + local, s.grad + local, m + s.begin + local, v + s.begin + local, count, s.constants);
      pos += count;
    }
  });
  return loss;
}

void adam_update(torch::Tensor& param, const torch::Tensor& grad, torch::Tensor& exp_avg, torch::Tensor& exp_avg_sq,
                 const AdamStepConstants& c) {
  torch::NoGradGuard no_grad;
  const auto fits = [&param](const torch::Tensor& t) {
    return t.device().is_cpu() && t.scalar_type() == torch::kFloat && t.is_contiguous() && t.sizes() == param.sizes();
  };
  if (fits(param) && fits(grad) && fits(exp_avg) && fits(exp_avg_sq)) {
    float* p = param.data_ptr<float>();
    const float* g = grad.data_ptr<float>();
    float* m = exp_avg.data_ptr<float>();
    float* v = exp_avg_sq.data_ptr<float>();
    at::parallel_for(0, param.numel(), 1 << 15, [&](int64_t begin, int64_t end) {
      adam_update(p + begin, g + begin, m + begin, v + begin, end - begin, c);
    });
    return;
  }
  exp_avg.mul_(c.beta1).add_(grad, c.one_minus_beta1);
  exp_avg_sq.mul_(c.beta2).addcmul_(grad, grad, c.one_minus_beta2);
  param.addcdiv_(exp_avg, exp_avg_sq.sqrt() / c.sqrt_correction2 + c.eps, -c.step_size);
}

void clear_gradients(torch::optim::Optimizer& optimizer) {
  for (auto& group : optimizer.param_groups()) {
    for (auto& p : group.params()) p.mutable_grad() = torch::Tensor();
  }
}

std::unique_ptr<torch::optim::Adam> make_adam(const std::vector<torch::Tensor>& params,
                                              const torch::optim::AdamOptions& options, bool fused,
                                              std::string* chosen) {
  std::string why = fused ? FusedAdam::unsupported(params) : "";
  if (fused && options.weight_decay() == 0 && !options.amsgrad() && why.empty()) {
    if (chosen != nullptr) *chosen = "adam-fused";
    return std::make_unique<FusedAdam>(params, options);
  }
  if (fused && why.empty()) why = "weight decay or AMSGrad";
  if (chosen != nullptr) *chosen = fused ? "adam (torch's; the fused Adam cannot: " + why + ")" : "adam (torch's)";
  return std::make_unique<torch::optim::Adam>(params, options);
}

}  // namespace vaelab
