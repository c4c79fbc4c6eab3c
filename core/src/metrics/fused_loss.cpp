// Evaluation and training: the fused loss (metrics/fused_loss.hpp) — autograd functions around
// the per-image loops of loss_kernels.cpp, threaded over the images of a batch.
#include <vaelab/metrics/fused_loss.hpp>

#include <algorithm>
#include <cmath>

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <vaelab/error.hpp>
#include <vaelab/metrics/elbo.hpp>

#include "loss_kernels.hpp"

namespace vaelab {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

/// Images per thread's piece: at least ~16k elements of work each.
int64_t grain(int64_t per_image) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(per_image, 1)); }

/// The backward passes are loops autograd does not record: a second derivative through them
/// (create_graph = true) would silently be zero, so it is refused.
void refuse_double_backward(const char* what) {
  if (torch::GradMode::is_enabled()) {
    throw Error(std::string("fused loss: the backward of the ") + what +
                " is not differentiable (a gradient with create_graph = true); compute such a penalty with torch "
                "operations on float64 tensors, which take the unfused path");
  }
}

/// [B, …] as a contiguous [B, D] float tensor.
torch::Tensor rows(const torch::Tensor& t) { return t.reshape({t.size(0), -1}).contiguous(); }

void check_pair(const torch::Tensor& x, const torch::Tensor& p, const char* what) {
  if (x.sizes() != p.sizes()) {
    throw Error(std::string(what) + ": data " + c10::str(x.sizes()) + " and parameters " + c10::str(p.sizes()) +
                " differ in shape");
  }
}

class ReparameterizeKl : public torch::autograd::Function<ReparameterizeKl> {
 public:
  static tensor_list forward(AutogradContext* ctx, const torch::Tensor& mean, const torch::Tensor& log_var,
                             const torch::Tensor& eps) {
    const torch::Tensor m = rows(mean), lv = rows(log_var), e = rows(eps);
    const int64_t b = m.size(0), d = m.size(1);
    torch::Tensor z = torch::empty_like(m);
    torch::Tensor kl = torch::empty({b}, m.options());
    const float *mp = m.data_ptr<float>(), *lp = lv.data_ptr<float>(), *ep = e.data_ptr<float>();
    float* zp = z.data_ptr<float>();
    float* kp = kl.data_ptr<float>();
    at::parallel_for(0, b, grain(d), [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        kp[i] = static_cast<float>(kernels::reparameterize_kl(mp + i * d, lp + i * d, ep + i * d, d, zp + i * d));
      }
    });
    ctx->save_for_backward({m, lv, e});
    ctx->saved_data["shape"] = mean.sizes();
    return {z.view(mean.sizes()), kl};
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    refuse_double_backward("reparameterization and KL");
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor &m = saved[0], &lv = saved[1], &e = saved[2];
    const int64_t b = m.size(0), d = m.size(1);
    const torch::Tensor gz = grads[0].defined() ? rows(grads[0]) : torch::Tensor();
    const torch::Tensor gkl = grads[1].defined() ? grads[1].contiguous() : torch::zeros({b}, m.options());
    torch::Tensor dm = torch::empty_like(m), dlv = torch::empty_like(m);
    const float *mp = m.data_ptr<float>(), *lp = lv.data_ptr<float>(), *ep = e.data_ptr<float>();
    const float* gzp = gz.defined() ? gz.data_ptr<float>() : nullptr;
    const float* gkp = gkl.data_ptr<float>();
    float *dmp = dm.data_ptr<float>(), *dlp = dlv.data_ptr<float>();
    at::parallel_for(0, b, grain(d), [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        kernels::reparameterize_kl_backward(mp + i * d, lp + i * d, ep + i * d, d, gzp != nullptr ? gzp + i * d : nullptr,
                                            gkp[i], dmp + i * d, dlp + i * d);
      }
    });
    const auto shape = ctx->saved_data["shape"].toIntVector();
    return {dm.view(shape), dlv.view(shape), torch::Tensor()};
  }
};

/// log p(x | params) per image for a likelihood with kernels K (Bernoulli or Gaussian).
template <class K>
class LogProb : public torch::autograd::Function<LogProb<K>> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& params,
                               double sigma) {
    const torch::Tensor xr = rows(x), pr = rows(params);
    const int64_t b = xr.size(0), d = xr.size(1);
    torch::Tensor out = torch::empty({b}, pr.options());
    const float *xp = xr.data_ptr<float>(), *pp = pr.data_ptr<float>();
    float* op = out.data_ptr<float>();
    at::parallel_for(0, b, grain(d), [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) op[i] = static_cast<float>(K::forward(xp + i * d, pp + i * d, d, sigma));
    });
    ctx->save_for_backward({xr, pr});
    ctx->saved_data["sigma"] = sigma;
    ctx->saved_data["shape"] = x.sizes();
    return out;
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    refuse_double_backward("likelihood");
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor &xr = saved[0], &pr = saved[1];
    const double sigma = ctx->saved_data["sigma"].toDouble();
    const auto shape = ctx->saved_data["shape"].toIntVector();
    const int64_t b = xr.size(0), d = xr.size(1);
    const torch::Tensor g = grads[0].contiguous();
    const bool want_x = ctx->needs_input_grad(0), want_p = ctx->needs_input_grad(1);
    torch::Tensor dx = want_x ? torch::empty_like(xr) : torch::Tensor();
    torch::Tensor dp = want_p ? torch::empty_like(pr) : torch::Tensor();
    if (!want_p && !want_x) return {torch::Tensor(), torch::Tensor(), torch::Tensor()};
    const float *xp = xr.data_ptr<float>(), *pp = pr.data_ptr<float>(), *gp = g.data_ptr<float>();
    float* dxp = want_x ? dx.data_ptr<float>() : nullptr;
    float* dpp = want_p ? dp.data_ptr<float>() : nullptr;
    at::parallel_for(0, b, grain(d), [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        K::backward(xp + i * d, pp + i * d, d, sigma, gp[i], dpp != nullptr ? dpp + i * d : nullptr,
                    dxp != nullptr ? dxp + i * d : nullptr);
      }
    });
    return {want_x ? dx.view(shape) : torch::Tensor(), want_p ? dp.view(shape) : torch::Tensor(), torch::Tensor()};
  }
};

struct BernoulliKernels {
  static double forward(const float* x, const float* l, int64_t d, double) { return kernels::bernoulli_log_prob(x, l, d); }
  static void backward(const float* x, const float* l, int64_t d, double, float g, float* dl, float* dx) {
    if (dl == nullptr) {
      for (int64_t i = 0; i < d; ++i) dx[i] = g * l[i];
      return;
    }
    kernels::bernoulli_log_prob_backward(x, l, d, g, dl, dx);
  }
};

struct GaussianKernels {
  static double forward(const float* x, const float* m, int64_t d, double sigma) {
    const double log_norm = -std::log(sigma) - 0.5 * std::log(2.0 * M_PI);
    return kernels::gaussian_log_prob(x, m, d, static_cast<float>(1.0 / sigma)) + static_cast<double>(d) * log_norm;
  }
  static void backward(const float* x, const float* m, int64_t d, double sigma, float g, float* dm, float* dx) {
    kernels::gaussian_log_prob_backward(x, m, d, static_cast<float>(g / (sigma * sigma)), dm, dx);
  }
};

}  // namespace

bool fused_loss_applies(const torch::Tensor& t) {
  return t.defined() && t.device().is_cpu() && t.scalar_type() == torch::kFloat && t.dim() >= 1 && t.size(0) > 0;
}

ReparameterizedKl reparameterize_kl(const torch::Tensor& mean, const torch::Tensor& log_var,
                                    const torch::Tensor& eps) {
  if (mean.sizes() != log_var.sizes() || mean.sizes() != eps.sizes()) {
    throw Error("reparameterize: mean " + c10::str(mean.sizes()) + ", log-variance " + c10::str(log_var.sizes()) +
                " and noise " + c10::str(eps.sizes()) + " differ in shape");
  }
  ReparameterizedKl out;
  if (fused_loss_applies(mean) && fused_loss_applies(log_var) && fused_loss_applies(eps)) {
    const tensor_list r = ReparameterizeKl::apply(mean, log_var, eps);
    out.z = r[0];
    out.kl = r[1];
  } else {
    out.z = mean + (0.5 * log_var).exp() * eps;
    out.kl = gaussian_kl(mean, log_var);
  }
  return out;
}

torch::Tensor fused_bernoulli_log_prob(const torch::Tensor& x, const torch::Tensor& logits) {
  check_pair(x, logits, "bernoulli likelihood");
  return LogProb<BernoulliKernels>::apply(x.to(logits.scalar_type()), logits, 0.0);
}

torch::Tensor fused_gaussian_log_prob(const torch::Tensor& x, const torch::Tensor& mean, double sigma) {
  check_pair(x, mean, "gaussian likelihood");
  return LogProb<GaussianKernels>::apply(x.to(mean.scalar_type()), mean, sigma);
}

}  // namespace vaelab
