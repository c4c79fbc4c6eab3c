#include "onednn_cpu_backend.hpp"

#include <sstream>
#include <string>

#include <torch/torch.h>

#include <vaelab/error.hpp>
#include <vaelab/plugin.hpp>
#include <vaelab/threads.hpp>

#include "layer_checks.hpp"
#include "onednn_ops.hpp"

namespace vaelab::plugins {
namespace {

using onednn::Precision;

// Threads, measured with `vaelab bench` on the idle 2-core development machine (ratios to
// torch-cpu; vae-mlp, vae-conv, IWAE, diffusion sampling):
//   everything on 1 thread                                   1.03  0.78  0.74  1.08
//   large primitives on 2, ATen's intra-op work on 1          1.31  0.84  1.66  1.11
//   large primitives and ATen's intra-op work on 2, BLAS 1    1.19  1.39  1.48  0.86
// vae-conv's likelihood and batch statistics are large element-wise ATen work that gains from a
// second thread; diffusion sampling's many small element-wise ops lose to it (0.68-0.86 on two
// intra-op threads, 1.11 on one, with the layers unchanged). Training is what vaelab spends its
// time on, so: `threads` for ATen's intra-op work and for the layers' large primitives, one thread
// for primitives whose largest argument is under kSmallPrimitiveBytes, and OpenBLAS (only ATen's
// products outside the layers) on one thread, since OpenMP threads spinning beside BLAS threads
// halve the throughput (torch-cpu's measurement). On a machine shared with other jobs, spinning
// OpenMP barriers stall (2 threads: 68-216 ms per MLP step against 13-17 ms for one): set
// threads = 1 there.
constexpr int kBlasThreads = 1;

const char* activation_name(Activation a) { return a == Activation::relu ? "relu" : "none"; }

void require_known_activation(Activation a, const std::string& label) {
  if (a != Activation::none && a != Activation::relu) {
    throw Error(label + ": activation " + std::to_string(static_cast<int>(a)) +
                " is not one onednn-cpu can fuse (none, relu)");
  }
}

std::string shape_of(const torch::Tensor& t) {
  std::ostringstream s;
  s << "[";
  for (int64_t i = 0; i < t.dim(); ++i) s << (i ? ", " : "") << t.size(i);
  s << "]";
  return s.str();
}

/// The checks every forward makes: a defined float32 CPU tensor of the expected rank and
/// channels (or features). `expected` spells the expected shape for the message.
void check_input(const std::string& label, const torch::Tensor& x, int64_t rank, int64_t channels,
                 const std::string& expected) {
  if (!x.defined()) throw Error(label + ": the input is an undefined tensor");
  if (x.device().type() != torch::kCPU) {
    throw Error(label + ": the input is on " + x.device().str() + "; onednn-cpu computes on the CPU");
  }
  if (x.scalar_type() != torch::kFloat32) {
    throw Error(label + ": the input is " + std::string(c10::toString(x.scalar_type())) +
                "; onednn-cpu layers take float32 inputs");
  }
  if (x.dim() != rank || x.size(1) != channels) {
    throw Error(label + ": expected an input " + expected + ", got " + shape_of(x));
  }
  if (x.size(0) < 1) throw Error(label + ": the input batch is empty " + shape_of(x));
}

/// A parameter or buffer must still be a float32 CPU tensor (a module can be moved with to()).
void check_tensor(const std::string& label, const std::string& name, const torch::Tensor& t,
                  torch::ScalarType type = torch::kFloat32) {
  if (t.device().type() != torch::kCPU || t.scalar_type() != type) {
    throw Error(label + ": " + name + " is " + std::string(c10::toString(t.scalar_type())) + " on " +
                t.device().str() + "; onednn-cpu needs " + std::string(c10::toString(type)) + " on the CPU");
  }
}

/// y = act(x Wᵀ + b) with oneDNN's inner product.
class DenseLayer final : public Layer {
 public:
  DenseLayer(c10::intrusive_ptr<onednn::DenseOp> op, const DenseOptions& o) : op_(std::move(op)) {
    linear_ = register_module(
        "linear", torch::nn::Linear(torch::nn::LinearOptions(o.in_features, o.out_features).bias(o.bias)));
  }
  torch::Tensor forward(const torch::Tensor& x) override {
    check_input(op_->label, x, 2, op_->in_features, "[B, " + std::to_string(op_->in_features) + "]");
    check_tensor(op_->label, "linear.weight", linear_->weight);
    if (op_->bias) check_tensor(op_->label, "linear.bias", linear_->bias);
    return onednn::dense(op_, x, linear_->weight, op_->bias ? linear_->bias : torch::Tensor());
  }

 private:
  c10::intrusive_ptr<onednn::DenseOp> op_;
  torch::nn::Linear linear_{nullptr};
};

/// A convolution or transposed convolution with oneDNN's (de)convolution primitives; the module
/// holding the parameters is ATen's (Holder is Conv2d or ConvTranspose2d).
template <class Holder, class Options>
class ConvLayer final : public Layer {
 public:
  ConvLayer(c10::intrusive_ptr<onednn::ConvOp> op, const Options& options) : op_(std::move(op)) {
    conv_ = register_module("conv", Holder(options));
  }
  torch::Tensor forward(const torch::Tensor& x) override {
    const std::string c = std::to_string(op_->in_channels);
    check_input(op_->label, x, 4, op_->in_channels, "[B, " + c + ", H, W]");
    const int64_t oh = onednn::conv_output_size(*op_, x.size(2)), ow = onednn::conv_output_size(*op_, x.size(3));
    if (x.size(2) < 1 || x.size(3) < 1 || oh < 1 || ow < 1) {
      throw Error(op_->label + ": the input " + shape_of(x) + " gives an empty output (" + std::to_string(oh) +
                  " × " + std::to_string(ow) + ")");
    }
    check_tensor(op_->label, "conv.weight", conv_->weight);
    if (op_->bias) check_tensor(op_->label, "conv.bias", conv_->bias);
    return onednn::conv(op_, x, conv_->weight, op_->bias ? conv_->bias : torch::Tensor());
  }

 private:
  c10::intrusive_ptr<onednn::ConvOp> op_;
  Holder conv_{nullptr};
};

/// y = act(BN(x)) with oneDNN's batch normalization (the ReLU fused into it).
class BatchNormLayer final : public Layer {
 public:
  BatchNormLayer(c10::intrusive_ptr<onednn::BatchNormOp> op, const BatchNormOptions& o) : op_(std::move(op)) {
    bn_ = register_module("bn", torch::nn::BatchNorm2d(torch::nn::BatchNorm2dOptions(o.channels)
                                                           .eps(o.eps)
                                                           .momentum(o.momentum)
                                                           .affine(true)
                                                           .track_running_stats(true)));
  }
  torch::Tensor forward(const torch::Tensor& x) override {
    const std::string c = std::to_string(op_->channels);
    check_input(op_->label, x, 4, op_->channels, "[B, " + c + ", H, W]");
    if (x.size(2) < 1 || x.size(3) < 1) throw Error(op_->label + ": the input " + shape_of(x) + " is empty");
    if (is_training() && x.size(0) * x.size(2) * x.size(3) < 2) {
      throw Error(op_->label + ": training needs more than one value per channel, got an input " + shape_of(x));
    }
    check_tensor(op_->label, "bn.weight", bn_->weight);
    check_tensor(op_->label, "bn.bias", bn_->bias);
    check_tensor(op_->label, "bn.running_mean", bn_->running_mean);
    check_tensor(op_->label, "bn.running_var", bn_->running_var);
    if (!bn_->running_mean.is_contiguous() || !bn_->running_var.is_contiguous()) {
      throw Error(op_->label + ": the running statistics must be contiguous");
    }
    return onednn::batch_norm(op_, x, bn_->weight, bn_->bias, bn_->running_mean, bn_->running_var,
                              bn_->num_batches_tracked, is_training());
  }

 private:
  c10::intrusive_ptr<onednn::BatchNormOp> op_;
  torch::nn::BatchNorm2d bn_{nullptr};
};

/// Refuses sizes the primitives cannot take, naming the layer.
void check_conv(const Conv2dOptions& o, const std::string& label, bool transposed) {
  require_known_activation(o.activation, label);
  backend_checks::check_conv(o, label, transposed);
}

std::string conv_label(const Conv2dOptions& o, bool transposed) {
  std::ostringstream s;
  s << "onednn-cpu " << (transposed ? "conv_transpose2d" : "conv2d") << "(" << o.in_channels << "→"
    << o.out_channels << ", k" << o.kernel_size << " s" << o.stride << " p" << o.padding;
  if (transposed) s << " op" << o.output_padding;
  s << ", bias " << (o.bias ? "on" : "off") << ", " << activation_name(o.activation) << ")";
  return s.str();
}

c10::intrusive_ptr<onednn::ConvOp> conv_op(const onednn::RuntimePtr& rt, const Conv2dOptions& o, bool transposed) {
  auto op = c10::make_intrusive<onednn::ConvOp>(rt, conv_label(o, transposed));
  op->transposed = transposed;
  op->in_channels = o.in_channels;
  op->out_channels = o.out_channels;
  op->kernel = o.kernel_size;
  op->stride = o.stride;
  op->padding = o.padding;
  op->output_padding = o.output_padding;
  op->bias = o.bias;
  op->relu = o.activation == Activation::relu;
  return op;
}

}  // namespace

int32_t OnednnCpuBackend::probe() {
  try {
    return dnnl::engine::get_count(dnnl::engine::kind::cpu) > 0 ? 20 : 0;
  } catch (const std::exception&) {
    return 0;
  }
}

OnednnCpuBackend::OnednnCpuBackend(const ConfigTable& config) {
  const std::string precision = config.get_choice("precision", {"f32", "bf16"});
  const auto threads = static_cast<int>(config.get_int_in("threads", 0, 4096));
  interop_threads_ = static_cast<int>(config.get_int_in("interop_threads", 1, 4096));
  const auto capacity = config.get_int_in("cache_capacity", 16, 1 << 20);
  threads_ = threads > 0 ? threads : available_cpus();
  if (precision == "bf16" && !onednn::native_bf16()) {
    throw ConfigError(config.key_path("precision") +
                      ": bf16 needs a CPU with native bfloat16 instructions (AVX512-BF16 or AMX); oneDNN " +
                      onednn::onednn_version() + " reports this CPU's ISA as " + onednn::effective_isa_name() +
                      ". Use precision = \"f32\"");
  }
  runtime_ = c10::make_intrusive<onednn::Runtime>(precision == "bf16" ? Precision::bf16 : Precision::f32,
                                                  static_cast<size_t>(capacity), threads_);
}

void OnednnCpuBackend::apply_threads() {
  // ATen's intra-op (OpenMP) threads for the work outside the layers; the layers' primitives set
  // their own count around each call (onednn_ops.cpp, execute).
  at::set_num_threads(threads_);
  try {
    at::set_num_interop_threads(interop_threads_);
  } catch (const std::exception&) {
    // Only settable once per process, before inter-op work starts; keep what is there.
  }
  // ATen's own matrix products outside the layers use OpenBLAS: as many threads, not more.
  if (!set_blas_threads(kBlasThreads)) {
    sdk::log().debug("OpenBLAS not found in the process; BLAS threads left as they are");
  }
}

std::shared_ptr<Layer> OnednnCpuBackend::dense(const DenseOptions& o) {
  std::ostringstream label;
  label << "onednn-cpu dense(" << o.in_features << "→" << o.out_features << ", bias " << (o.bias ? "on" : "off")
        << ", " << activation_name(o.activation) << ")";
  require_known_activation(o.activation, label.str());
  if (o.in_features < 1 || o.out_features < 1) {
    throw Error(label.str() + ": features must be positive, got in " + std::to_string(o.in_features) + ", out " +
                std::to_string(o.out_features));
  }
  auto op = c10::make_intrusive<onednn::DenseOp>(runtime_, label.str(), o.in_features, o.out_features, o.bias,
                                                 o.activation == Activation::relu);
  return std::make_shared<DenseLayer>(std::move(op), o);
}

std::shared_ptr<Layer> OnednnCpuBackend::conv2d(const Conv2dOptions& o) {
  const std::string label = conv_label(o, false);
  check_conv(o, label, false);
  return std::make_shared<ConvLayer<torch::nn::Conv2d, torch::nn::Conv2dOptions>>(
      conv_op(runtime_, o, false), torch::nn::Conv2dOptions(o.in_channels, o.out_channels, o.kernel_size)
                                       .stride(o.stride)
                                       .padding(o.padding)
                                       .bias(o.bias));
}

std::shared_ptr<Layer> OnednnCpuBackend::conv_transpose2d(const Conv2dOptions& o) {
  const std::string label = conv_label(o, true);
  check_conv(o, label, true);
  return std::make_shared<ConvLayer<torch::nn::ConvTranspose2d, torch::nn::ConvTranspose2dOptions>>(
      conv_op(runtime_, o, true), torch::nn::ConvTranspose2dOptions(o.in_channels, o.out_channels, o.kernel_size)
                                      .stride(o.stride)
                                      .padding(o.padding)
                                      .output_padding(o.output_padding)
                                      .bias(o.bias));
}

std::shared_ptr<Layer> OnednnCpuBackend::batch_norm2d(const BatchNormOptions& o) {
  std::ostringstream label;
  label << "onednn-cpu batch_norm2d(" << o.channels << ", eps " << o.eps << ", momentum " << o.momentum << ", "
        << activation_name(o.activation) << ")";
  require_known_activation(o.activation, label.str());
  if (o.channels < 1) {
    throw Error(label.str() + ": channels must be positive, got " + std::to_string(o.channels));
  }
  if (!(o.eps > 0) || !(o.momentum >= 0 && o.momentum <= 1)) {
    throw Error(label.str() + ": need eps > 0 and momentum in [0, 1], got eps " + std::to_string(o.eps) +
                ", momentum " + std::to_string(o.momentum));
  }
  auto op = c10::make_intrusive<onednn::BatchNormOp>(runtime_, label.str(), o.channels, o.eps, o.momentum,
                                                     o.activation == Activation::relu);
  return std::make_shared<BatchNormLayer>(std::move(op), o);
}

std::string OnednnCpuBackend::describe() const {
  return "cpu, " + std::to_string(threads_) + " threads (ATen intra-op and large oneDNN primitives; small "
         "primitives 1), " + std::to_string(kBlasThreads) + " OpenBLAS thread, precision " +
         onednn::precision_name(runtime_->precision) + ", oneDNN " + onednn::onednn_version() + " (ISA " +
         onednn::effective_isa_name() + "), primitive cache: " + std::to_string(runtime_->cache.misses()) +
         " created, " + std::to_string(runtime_->cache.size()) + " held";
}

}  // namespace vaelab::plugins
