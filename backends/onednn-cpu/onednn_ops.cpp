#include "onednn_ops.hpp"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <unordered_map>
#include <utility>

#include <torch/torch.h>

#include <vaelab/error.hpp>
#include <vaelab/plugin.hpp>

namespace vaelab::plugins::onednn {
namespace {

using torch::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;
using dims = dnnl::memory::dims;
using Args = std::unordered_map<int, dnnl::memory>;

/// The first element of every cache key.
enum OpTag : int64_t {
  kCastBf16 = 1,
  kReluBackward,
  kDenseForward,
  kDenseBackwardData,
  kDenseBackwardWeights,
  kConvForward,
  kConvBackwardData,
  kConvBackwardWeights,
  kDeconvForward,
  kDeconvBackwardData,
  kDeconvBackwardWeights,
  kBatchNormForward,
  kBatchNormBackward,
};

/// A primitive with the descriptor it was made from (the descriptor is the hint for the backward
/// primitives and tells the workspace size).
template <class P>
struct Cached {
  explicit Cached(typename P::primitive_desc d) : pd(std::move(d)), primitive(pd) {}
  typename P::primitive_desc pd;
  P primitive;
};

dt compute_type(Precision p) { return p == Precision::bf16 ? dt::bf16 : dt::f32; }

dnnl::memory::desc md(const dims& d, dt type, tag format) { return dnnl::memory::desc(d, type, format); }

/// The tensor's memory as oneDNN memory: no copy. The tensor must be contiguous and of md's type.
dnnl::memory wrap(const dnnl::memory::desc& d, const Tensor& t) {
  return dnnl::memory(d, cpu_engine(), t.data_ptr());
}

int64_t bits_of(float value) {
  int32_t bits = 0;
  std::memcpy(&bits, &value, sizeof bits);
  return bits;
}

/// Makes a cache entry, turning oneDNN's failure into an Error that names the layer.
template <class P, class MakePd>
Cached<P> make_entry(const Op& op, const char* what, const MakePd& make_pd) {
  try {
    Cached<P> made(make_pd());
    sdk::log().debug("{}: created the {} primitive ({})", op.label, what, made.pd.impl_info_str());
    return made;
  } catch (const dnnl::error& e) {
    throw Error(op.label + ": oneDNN cannot create the " + what + " primitive (" + e.what() + ")");
  }
}

/// Runs a primitive with the runtime's threads when it is large, else in the calling thread
/// (OpenMP's thread count is set around the call and put back, so ATen's work keeps its own).
void execute(const Op& op, const dnnl::primitive& p, const Args& args) {
  size_t largest = 0;
  for (const auto& arg : args) largest = std::max(largest, arg.second.get_desc().get_size());
  const int want = largest < kSmallPrimitiveBytes ? 1 : op.rt->threads;
  const int before = omp_get_max_threads();
  if (want != before) omp_set_num_threads(want);
  try {
    dnnl::stream& stream = thread_stream();
    p.execute(stream, args);
    stream.wait();
  } catch (const dnnl::error& e) {
    if (want != before) omp_set_num_threads(before);
    throw Error(op.label + ": oneDNN primitive failed (" + std::string(e.what()) + ")");
  }
  if (want != before) omp_set_num_threads(before);
}

/// A contiguous float32 tensor's values as bfloat16 (a oneDNN reorder into a new tensor).
Tensor to_bf16(const Op& op, const Tensor& t) {
  const int64_t n = t.numel();
  const dnnl::memory::desc from = md({n}, dt::f32, tag::a);
  const dnnl::memory::desc to = md({n}, dt::bf16, tag::a);
  const auto entry = op.rt->cache.get<Cached<dnnl::reorder>>({kCastBf16, n}, [&] {
    return make_entry<dnnl::reorder>(op, "f32 → bf16 reorder", [&] {
      return dnnl::reorder::primitive_desc(cpu_engine(), from, cpu_engine(), to);
    });
  });
  Tensor out = torch::empty(t.sizes(), t.options().dtype(torch::kBFloat16));
  execute(op, entry->primitive, {{DNNL_ARG_FROM, wrap(from, t)}, {DNNL_ARG_TO, wrap(to, out)}});
  return out;
}

/// The operand as the layer computes with it: itself in f32, a bf16 copy in bf16.
Tensor compute_operand(const Op& op, const Tensor& contiguous_f32) {
  return op.rt->precision == Precision::bf16 ? to_bf16(op, contiguous_f32) : contiguous_f32;
}

/// The gradient through a fused ReLU: grad where the saved output y is positive, 0 elsewhere.
Tensor relu_backward(const Op& op, const Tensor& grad, const Tensor& y) {
  const int64_t n = grad.numel();
  const dnnl::memory::desc d = md({n}, dt::f32, tag::a);
  const auto entry = op.rt->cache.get<Cached<dnnl::eltwise_backward>>({kReluBackward, n}, [&] {
    return make_entry<dnnl::eltwise_backward>(op, "ReLU backward", [&] {
      const dnnl::algorithm alg = dnnl::algorithm::eltwise_relu_use_dst_for_bwd;
      const dnnl::eltwise_forward::primitive_desc hint(
          dnnl::eltwise_forward::desc(dnnl::prop_kind::forward_training, alg, d, 0.f, 0.f), cpu_engine());
      return dnnl::eltwise_backward::primitive_desc(dnnl::eltwise_backward::desc(alg, d, d, 0.f, 0.f),
                                                    cpu_engine(), hint);
    });
  });
  Tensor out = torch::empty_like(grad);
  execute(op, entry->primitive, {{DNNL_ARG_DIFF_DST, wrap(d, grad)}, {DNNL_ARG_DST, wrap(d, y)},
                                 {DNNL_ARG_DIFF_SRC, wrap(d, out)}});
  return out;
}

dnnl::primitive_attr relu_attr(bool relu) {
  dnnl::primitive_attr attr;
  if (relu) {
    dnnl::post_ops ops;
    ops.append_eltwise(1.f, dnnl::algorithm::eltwise_relu, 0.f, 0.f);
    attr.set_post_ops(ops);
  }
  return attr;
}

/// The node's operation. Also refuses a backward that would itself be differentiated
/// (create_graph = true, e.g. an R1 penalty): the primitives are not recorded by autograd, so the
/// second-order terms would be silently missing.
template <class Derived>
c10::intrusive_ptr<Derived> op_of(AutogradContext* ctx) {
  auto op = c10::static_intrusive_pointer_cast<Derived>(ctx->saved_data["op"].toCapsule());
  if (torch::GradMode::is_enabled()) {
    throw Error(op->label + ": its backward is not differentiable (a gradient with create_graph = true, "
                            "e.g. for a gradient penalty, needs another backend such as torch-cpu)");
  }
  return op;
}

template <class Derived>
void keep_op(AutogradContext* ctx, const c10::intrusive_ptr<Derived>& op) {
  ctx->saved_data["op"] = c10::IValue::make_capsule(c10::intrusive_ptr<torch::CustomClassHolder>(
      c10::intrusive_ptr<Derived>(op)));
}

// ---- dense: inner product ------------------------------------------------------------------

struct DenseShapes {
  dnnl::memory::desc src, weights, bias, dst, diff_src, diff_weights, diff_dst;
};

DenseShapes dense_shapes(const DenseOp& op, int64_t batch) {
  const dt c = compute_type(op.rt->precision);
  const int64_t in = op.in_features, out = op.out_features;
  return {md({batch, in}, c, tag::nc),        md({out, in}, c, tag::oi),         md({out}, dt::f32, tag::x),
          md({batch, out}, dt::f32, tag::nc), md({batch, in}, dt::f32, tag::nc), md({out, in}, dt::f32, tag::oi),
          md({batch, out}, c, tag::nc)};
}

CacheKey dense_key(OpTag t, const DenseOp& op, int64_t batch) {
  return {t, static_cast<int64_t>(op.rt->precision), batch, op.in_features, op.out_features, op.bias, op.relu};
}

std::shared_ptr<const Cached<dnnl::inner_product_forward>> dense_forward_entry(const DenseOp& op, int64_t batch) {
  return op.rt->cache.get<Cached<dnnl::inner_product_forward>>(dense_key(kDenseForward, op, batch), [&] {
    return make_entry<dnnl::inner_product_forward>(op, "inner product forward", [&] {
      const DenseShapes s = dense_shapes(op, batch);
      const auto prop = dnnl::prop_kind::forward_training;
      const auto desc = op.bias ? dnnl::inner_product_forward::desc(prop, s.src, s.weights, s.bias, s.dst)
                                : dnnl::inner_product_forward::desc(prop, s.src, s.weights, s.dst);
      return dnnl::inner_product_forward::primitive_desc(desc, relu_attr(op.relu), cpu_engine());
    });
  });
}

class DenseFunction : public torch::autograd::Function<DenseFunction> {
 public:
  static Tensor forward(AutogradContext* ctx, const Tensor& x, const Tensor& w, const Tensor& b,
                        const c10::intrusive_ptr<DenseOp>& op) {
    const int64_t batch = x.size(0);
    const DenseShapes s = dense_shapes(*op, batch);
    const auto fwd = dense_forward_entry(*op, batch);
    const Tensor src = compute_operand(*op, x.contiguous());
    const Tensor weights = compute_operand(*op, w.contiguous());
    Tensor y = torch::empty({batch, op->out_features}, x.options());
    Args args{{DNNL_ARG_SRC, wrap(s.src, src)}, {DNNL_ARG_WEIGHTS, wrap(s.weights, weights)},
              {DNNL_ARG_DST, wrap(s.dst, y)}};
    const Tensor bias = op->bias ? b.contiguous() : Tensor();
    if (op->bias) args.emplace(DNNL_ARG_BIAS, wrap(s.bias, bias));
    execute(*op, fwd->primitive, args);
    ctx->save_for_backward({src, weights, op->relu ? y : Tensor()});
    keep_op(ctx, op);
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto op = op_of<DenseOp>(ctx);
    const variable_list saved = ctx->get_saved_variables();
    const Tensor& src = saved[0];
    const Tensor& weights = saved[1];
    const int64_t batch = src.size(0);
    Tensor grad = grads[0].contiguous();
    if (op->relu) grad = relu_backward(*op, grad, saved[2]);
    const Tensor diff_dst = compute_operand(*op, grad);
    const DenseShapes s = dense_shapes(*op, batch);
    Tensor grad_x, grad_w, grad_b;
    if (ctx->needs_input_grad(0)) {
      const auto entry = op->rt->cache.get<Cached<dnnl::inner_product_backward_data>>(
          dense_key(kDenseBackwardData, *op, batch), [&] {
            return make_entry<dnnl::inner_product_backward_data>(*op, "inner product backward data", [&] {
              return dnnl::inner_product_backward_data::primitive_desc(
                  dnnl::inner_product_backward_data::desc(s.diff_src, s.weights, s.diff_dst), cpu_engine(),
                  dense_forward_entry(*op, batch)->pd);
            });
          });
      grad_x = torch::empty({batch, op->in_features}, grad.options());
      execute(*op, entry->primitive,
              {{DNNL_ARG_DIFF_DST, wrap(s.diff_dst, diff_dst)}, {DNNL_ARG_WEIGHTS, wrap(s.weights, weights)},
               {DNNL_ARG_DIFF_SRC, wrap(s.diff_src, grad_x)}});
    }
    if (ctx->needs_input_grad(1) || (op->bias && ctx->needs_input_grad(2))) {
      const auto entry = op->rt->cache.get<Cached<dnnl::inner_product_backward_weights>>(
          dense_key(kDenseBackwardWeights, *op, batch), [&] {
            return make_entry<dnnl::inner_product_backward_weights>(*op, "inner product backward weights", [&] {
              using D = dnnl::inner_product_backward_weights::desc;
              const D desc = op->bias ? D(s.src, s.diff_weights, s.bias, s.diff_dst)
                                      : D(s.src, s.diff_weights, s.diff_dst);
              return dnnl::inner_product_backward_weights::primitive_desc(desc, cpu_engine(),
                                                                          dense_forward_entry(*op, batch)->pd);
            });
          });
      grad_w = torch::empty({op->out_features, op->in_features}, grad.options());
      Args args{{DNNL_ARG_SRC, wrap(s.src, src)}, {DNNL_ARG_DIFF_DST, wrap(s.diff_dst, diff_dst)},
                {DNNL_ARG_DIFF_WEIGHTS, wrap(s.diff_weights, grad_w)}};
      if (op->bias) {
        grad_b = torch::empty({op->out_features}, grad.options());
        args.emplace(DNNL_ARG_DIFF_BIAS, wrap(s.bias, grad_b));
      }
      execute(*op, entry->primitive, args);
    }
    return {grad_x, grad_w, grad_b, Tensor()};
  }
};

// ---- convolution and transposed convolution ------------------------------------------------

struct ConvShapes {
  dnnl::memory::desc src, weights, bias, dst, diff_src, diff_weights, diff_dst;
  dims strides, padding_l, padding_r;
};

ConvShapes conv_shapes(const ConvOp& op, int64_t batch, int64_t height, int64_t width) {
  const dt c = compute_type(op.rt->precision);
  const int64_t oh = conv_output_size(op, height), ow = conv_output_size(op, width);
  const int64_t k = op.kernel, s = op.stride, p = op.padding;
  // oneDNN's sizes: convolution oh = (h − k + p_l + p_r) / s + 1, transposed oh = (h − 1)·s + k − p_l − p_r;
  // the right padding makes them ATen's.
  const auto right = [&](int64_t in, int64_t out) {
    return op.transposed ? p - op.output_padding : (out - 1) * s + k - in - p;
  };
  // oneDNN's weights are [out, in, k, k] for both; ATen's transposed ones are [in, out, k, k],
  // which oneDNN calls iohw.
  const tag weights_tag = op.transposed ? tag::iohw : tag::oihw;
  const dims w_dims{op.out_channels, op.in_channels, k, k};
  return {md({batch, op.in_channels, height, width}, c, tag::nchw),
          md(w_dims, c, weights_tag),
          md({op.out_channels}, dt::f32, tag::x),
          md({batch, op.out_channels, oh, ow}, dt::f32, tag::nchw),
          md({batch, op.in_channels, height, width}, dt::f32, tag::nchw),
          md(w_dims, dt::f32, weights_tag),
          md({batch, op.out_channels, oh, ow}, c, tag::nchw),
          {s, s},
          {p, p},
          {right(height, oh), right(width, ow)}};
}

CacheKey conv_key(OpTag t, const ConvOp& op, int64_t batch, int64_t height, int64_t width) {
  return {t,         static_cast<int64_t>(op.rt->precision),
          batch,     op.in_channels,
          height,    width,
          op.out_channels, op.kernel,
          op.stride, op.padding,
          op.output_padding, op.bias,
          op.relu};
}

/// The oneDNN primitive families of a convolution (Transposed = false) or a transposed one.
template <bool Transposed>
struct ConvFamily;

template <>
struct ConvFamily<false> {
  using Forward = dnnl::convolution_forward;
  using BackwardData = dnnl::convolution_backward_data;
  using BackwardWeights = dnnl::convolution_backward_weights;
  static constexpr dnnl::algorithm algorithm = dnnl::algorithm::convolution_direct;
  static constexpr OpTag forward = kConvForward, backward_data = kConvBackwardData,
                         backward_weights = kConvBackwardWeights;
  static constexpr const char* name = "convolution";
};

template <>
struct ConvFamily<true> {
  using Forward = dnnl::deconvolution_forward;
  using BackwardData = dnnl::deconvolution_backward_data;
  using BackwardWeights = dnnl::deconvolution_backward_weights;
  static constexpr dnnl::algorithm algorithm = dnnl::algorithm::deconvolution_direct;
  static constexpr OpTag forward = kDeconvForward, backward_data = kDeconvBackwardData,
                         backward_weights = kDeconvBackwardWeights;
  static constexpr const char* name = "transposed convolution";
};

template <bool T>
std::shared_ptr<const Cached<typename ConvFamily<T>::Forward>> conv_forward_entry(const ConvOp& op, int64_t n,
                                                                                int64_t h, int64_t w) {
  using F = ConvFamily<T>;
  using P = typename F::Forward;
  return op.rt->cache.get<Cached<P>>(conv_key(F::forward, op, n, h, w), [&] {
    return make_entry<P>(op, F::name, [&] {
      const ConvShapes s = conv_shapes(op, n, h, w);
      const auto prop = dnnl::prop_kind::forward_training;
      const auto desc =
          op.bias ? typename P::desc(prop, F::algorithm, s.src, s.weights, s.bias, s.dst, s.strides, s.padding_l,
                                     s.padding_r)
                  : typename P::desc(prop, F::algorithm, s.src, s.weights, s.dst, s.strides, s.padding_l, s.padding_r);
      return typename P::primitive_desc(desc, relu_attr(op.relu), cpu_engine());
    });
  });
}

template <bool T>
Tensor conv_forward(AutogradContext* ctx, const Tensor& x, const Tensor& w, const Tensor& b,
                    const c10::intrusive_ptr<ConvOp>& op) {
  const int64_t n = x.size(0), h = x.size(2), wd = x.size(3);
  const ConvShapes s = conv_shapes(*op, n, h, wd);
  const auto fwd = conv_forward_entry<T>(*op, n, h, wd);
  const Tensor src = compute_operand(*op, x.contiguous());
  const Tensor weights = compute_operand(*op, w.contiguous());
  Tensor y = torch::empty(s.dst.dims(), x.options());
  Args args{{DNNL_ARG_SRC, wrap(s.src, src)}, {DNNL_ARG_WEIGHTS, wrap(s.weights, weights)},
            {DNNL_ARG_DST, wrap(s.dst, y)}};
  const Tensor bias = op->bias ? b.contiguous() : Tensor();
  if (op->bias) args.emplace(DNNL_ARG_BIAS, wrap(s.bias, bias));
  execute(*op, fwd->primitive, args);
  ctx->save_for_backward({src, weights, op->relu ? y : Tensor()});
  return y;
}

template <bool T>
variable_list conv_backward(AutogradContext* ctx, const c10::intrusive_ptr<ConvOp>& op, const Tensor& grad_y) {
  using F = ConvFamily<T>;
  const variable_list saved = ctx->get_saved_variables();
  const Tensor& src = saved[0];
  const Tensor& weights = saved[1];
  const int64_t n = src.size(0), h = src.size(2), wd = src.size(3);
  Tensor grad = grad_y.contiguous();
  if (op->relu) grad = relu_backward(*op, grad, saved[2]);
  const Tensor diff_dst = compute_operand(*op, grad);
  const ConvShapes s = conv_shapes(*op, n, h, wd);
  Tensor grad_x, grad_w, grad_b;
  if (ctx->needs_input_grad(0)) {
    using P = typename F::BackwardData;
    const auto entry = op->rt->cache.get<Cached<P>>(conv_key(F::backward_data, *op, n, h, wd), [&] {
      return make_entry<P>(*op, "backward data", [&] {
        return typename P::primitive_desc(
            typename P::desc(F::algorithm, s.diff_src, s.weights, s.diff_dst, s.strides, s.padding_l, s.padding_r),
            cpu_engine(), conv_forward_entry<T>(*op, n, h, wd)->pd);
      });
    });
    grad_x = torch::empty(s.diff_src.dims(), grad.options());
    execute(*op, entry->primitive,
            {{DNNL_ARG_DIFF_DST, wrap(s.diff_dst, diff_dst)}, {DNNL_ARG_WEIGHTS, wrap(s.weights, weights)},
             {DNNL_ARG_DIFF_SRC, wrap(s.diff_src, grad_x)}});
  }
  if (ctx->needs_input_grad(1) || (op->bias && ctx->needs_input_grad(2))) {
    using P = typename F::BackwardWeights;
    const auto entry = op->rt->cache.get<Cached<P>>(conv_key(F::backward_weights, *op, n, h, wd), [&] {
      return make_entry<P>(*op, "backward weights", [&] {
        using D = typename P::desc;
        const D desc = op->bias ? D(F::algorithm, s.src, s.diff_weights, s.bias, s.diff_dst, s.strides, s.padding_l,
                                    s.padding_r)
                                : D(F::algorithm, s.src, s.diff_weights, s.diff_dst, s.strides, s.padding_l,
                                    s.padding_r);
        return typename P::primitive_desc(desc, cpu_engine(), conv_forward_entry<T>(*op, n, h, wd)->pd);
      });
    });
    // ATen's layout: [out, in, k, k], transposed [in, out, k, k]; s.diff_weights describes it.
    grad_w = op->transposed ? torch::empty({op->in_channels, op->out_channels, op->kernel, op->kernel}, grad.options())
                            : torch::empty({op->out_channels, op->in_channels, op->kernel, op->kernel}, grad.options());
    Args args{{DNNL_ARG_SRC, wrap(s.src, src)}, {DNNL_ARG_DIFF_DST, wrap(s.diff_dst, diff_dst)},
              {DNNL_ARG_DIFF_WEIGHTS, wrap(s.diff_weights, grad_w)}};
    if (op->bias) {
      grad_b = torch::empty({op->out_channels}, grad.options());
      args.emplace(DNNL_ARG_DIFF_BIAS, wrap(s.bias, grad_b));
    }
    execute(*op, entry->primitive, args);
  }
  return {grad_x, grad_w, grad_b, Tensor()};
}

class ConvFunction : public torch::autograd::Function<ConvFunction> {
 public:
  static Tensor forward(AutogradContext* ctx, const Tensor& x, const Tensor& w, const Tensor& b,
                        const c10::intrusive_ptr<ConvOp>& op) {
    keep_op(ctx, op);
    return op->transposed ? conv_forward<true>(ctx, x, w, b, op) : conv_forward<false>(ctx, x, w, b, op);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto op = op_of<ConvOp>(ctx);
    return op->transposed ? conv_backward<true>(ctx, op, grads[0]) : conv_backward<false>(ctx, op, grads[0]);
  }
};

// ---- batch normalization -------------------------------------------------------------------

dnnl::normalization_flags bn_flags(const BatchNormOp& op, bool global_stats) {
  auto flags = dnnl::normalization_flags::use_scale | dnnl::normalization_flags::use_shift;
  if (global_stats) flags = flags | dnnl::normalization_flags::use_global_stats;
  if (op.relu) flags = flags | dnnl::normalization_flags::fuse_norm_relu;
  return flags;
}

CacheKey bn_key(OpTag t, const BatchNormOp& op, const dims& d, bool global_stats, bool training_prop) {
  return {t,    static_cast<int64_t>(op.rt->precision), d[0], d[1], d[2], d[3], global_stats, training_prop,
          op.relu, bits_of(static_cast<float>(op.eps))};
}

std::shared_ptr<const Cached<dnnl::batch_normalization_forward>> bn_forward_entry(const BatchNormOp& op,
                                                                                  const dims& d, bool global_stats,
                                                                                  bool training_prop) {
  using P = dnnl::batch_normalization_forward;
  return op.rt->cache.get<Cached<P>>(bn_key(kBatchNormForward, op, d, global_stats, training_prop), [&] {
    return make_entry<P>(op, "batch normalization forward", [&] {
      const auto prop = training_prop ? dnnl::prop_kind::forward_training : dnnl::prop_kind::forward_inference;
      return P::primitive_desc(
          P::desc(prop, md(d, dt::f32, tag::nchw), static_cast<float>(op.eps), bn_flags(op, global_stats)),
          cpu_engine());
    });
  });
}

// Batch normalization computes in float32 in both precisions: it is bound by memory traffic, not
// arithmetic, and its statistics are what bfloat16 would hurt most.
class BatchNormFunction : public torch::autograd::Function<BatchNormFunction> {
 public:
  static Tensor forward(AutogradContext* ctx, const Tensor& x_in, const Tensor& w, const Tensor& b,
                        const Tensor& running_mean, const Tensor& running_var, const Tensor& num_batches_tracked,
                        const c10::intrusive_ptr<BatchNormOp>& op, bool training, bool need_grad) {
    const Tensor x = x_in.contiguous();
    const dims d{x.size(0), x.size(1), x.size(2), x.size(3)};
    const int64_t channels = d[1];
    const bool global_stats = !training;
    // The backward needs forward_training's workspace (the ReLU mask) and batch statistics.
    const bool training_prop = training || need_grad;
    const auto fwd = bn_forward_entry(*op, d, global_stats, training_prop);
    const dnnl::memory::desc data = md(d, dt::f32, tag::nchw);
    const dnnl::memory::desc vec = md({channels}, dt::f32, tag::x);
    Tensor y = torch::empty_like(x);
    Tensor mean, var;
    if (training) {
      mean = torch::empty({channels}, x.options());
      var = torch::empty({channels}, x.options());
    } else {
      // Copies, so a later training step cannot change what the backward reads.
      mean = need_grad ? running_mean.clone() : running_mean;
      var = need_grad ? running_var.clone() : running_var;
    }
    const Tensor scale = w.contiguous(), shift = b.contiguous();
    Args args{{DNNL_ARG_SRC, wrap(data, x)},       {DNNL_ARG_DST, wrap(data, y)},
              {DNNL_ARG_SCALE, wrap(vec, scale)},  {DNNL_ARG_SHIFT, wrap(vec, shift)},
              {DNNL_ARG_MEAN, wrap(vec, mean)},    {DNNL_ARG_VARIANCE, wrap(vec, var)}};
    Tensor workspace;
    if (op->relu && training_prop) {
      const dnnl::memory::desc ws = fwd->pd.workspace_desc();
      workspace = torch::empty({static_cast<int64_t>(ws.get_size())}, x.options().dtype(torch::kUInt8));
      args.emplace(DNNL_ARG_WORKSPACE, wrap(ws, workspace));
    }
    execute(*op, fwd->primitive, args);

    if (training) {
      // PyTorch's convention: running = (1 − momentum)·running + momentum·batch, with the unbiased
      // batch variance (oneDNN gives the biased one).
      const double count = static_cast<double>(d[0] * d[2] * d[3]);
      const double unbias = count / (count - 1);
      const double m = op->momentum;
      float* rm = running_mean.data_ptr<float>();
      float* rv = running_var.data_ptr<float>();
      const float* bm = mean.data_ptr<float>();
      const float* bv = var.data_ptr<float>();
      for (int64_t c = 0; c < channels; ++c) {
        rm[c] = static_cast<float>((1 - m) * rm[c] + m * bm[c]);
        rv[c] = static_cast<float>((1 - m) * rv[c] + m * bv[c] * unbias);
      }
      if (num_batches_tracked.defined()) num_batches_tracked.add_(1);
    }
    ctx->save_for_backward({x, scale, shift, mean, var, workspace});
    ctx->saved_data["global_stats"] = global_stats;
    keep_op(ctx, op);
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto op = op_of<BatchNormOp>(ctx);
    const bool global_stats = ctx->saved_data["global_stats"].toBool();
    const variable_list saved = ctx->get_saved_variables();
    const Tensor &x = saved[0], &scale = saved[1], &shift = saved[2], &mean = saved[3], &var = saved[4],
                 &workspace = saved[5];
    const dims d{x.size(0), x.size(1), x.size(2), x.size(3)};
    const Tensor grad = grads[0].contiguous();
    using P = dnnl::batch_normalization_backward;
    const auto entry = op->rt->cache.get<Cached<P>>(bn_key(kBatchNormBackward, *op, d, global_stats, true), [&] {
      return make_entry<P>(*op, "batch normalization backward", [&] {
        const dnnl::memory::desc data = md(d, dt::f32, tag::nchw);
        return P::primitive_desc(P::desc(dnnl::prop_kind::backward, data, data, static_cast<float>(op->eps),
                                         bn_flags(*op, global_stats)),
                                 cpu_engine(), bn_forward_entry(*op, d, global_stats, true)->pd);
      });
    });
    const dnnl::memory::desc data = md(d, dt::f32, tag::nchw);
    const dnnl::memory::desc vec = md({d[1]}, dt::f32, tag::x);
    Tensor grad_x = torch::empty_like(grad);
    Tensor grad_w = torch::empty({d[1]}, grad.options());
    Tensor grad_b = torch::empty({d[1]}, grad.options());
    Args args{{DNNL_ARG_SRC, wrap(data, x)},           {DNNL_ARG_DIFF_DST, wrap(data, grad)},
              {DNNL_ARG_MEAN, wrap(vec, mean)},        {DNNL_ARG_VARIANCE, wrap(vec, var)},
              {DNNL_ARG_SCALE, wrap(vec, scale)},      {DNNL_ARG_SHIFT, wrap(vec, shift)},
              {DNNL_ARG_DIFF_SRC, wrap(data, grad_x)}, {DNNL_ARG_DIFF_SCALE, wrap(vec, grad_w)},
              {DNNL_ARG_DIFF_SHIFT, wrap(vec, grad_b)}};
    if (op->relu) args.emplace(DNNL_ARG_WORKSPACE, wrap(entry->pd.workspace_desc(), workspace));
    execute(*op, entry->primitive, args);
    return {ctx->needs_input_grad(0) ? grad_x : Tensor(),
            ctx->needs_input_grad(1) ? grad_w : Tensor(),
            ctx->needs_input_grad(2) ? grad_b : Tensor(),
            Tensor(), Tensor(), Tensor(), Tensor(), Tensor(), Tensor()};
  }
};

/// Stands in for an absent bias: autograd functions take defined tensors only.
Tensor no_bias(const Tensor& x) { return torch::empty({0}, x.options().requires_grad(false)); }

}  // namespace

torch::Tensor dense(const c10::intrusive_ptr<DenseOp>& op, const torch::Tensor& x, const torch::Tensor& w,
                    const torch::Tensor& b) {
  return DenseFunction::apply(x, w, b.defined() ? b : no_bias(x), op);
}

int64_t conv_output_size(const ConvOp& op, int64_t size) {
  if (op.transposed) return (size - 1) * op.stride - 2 * op.padding + op.kernel + op.output_padding;
  const int64_t span = size + 2 * op.padding - op.kernel;
  return span < 0 ? 0 : span / op.stride + 1;
}

torch::Tensor conv(const c10::intrusive_ptr<ConvOp>& op, const torch::Tensor& x, const torch::Tensor& w,
                   const torch::Tensor& b) {
  return ConvFunction::apply(x, w, b.defined() ? b : no_bias(x), op);
}

torch::Tensor batch_norm(const c10::intrusive_ptr<BatchNormOp>& op, const torch::Tensor& x, const torch::Tensor& w,
                         const torch::Tensor& b, const torch::Tensor& running_mean, const torch::Tensor& running_var,
                         const torch::Tensor& num_batches_tracked, bool training) {
  const bool need_grad =
      torch::GradMode::is_enabled() && (x.requires_grad() || w.requires_grad() || b.requires_grad());
  return BatchNormFunction::apply(x, w, b, running_mean, running_var, num_batches_tracked, op, training, need_grad);
}

}  // namespace vaelab::plugins::onednn
