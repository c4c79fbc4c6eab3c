#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include <torch/torch.h>

#include <vaelab/backend.hpp>
#include <vaelab/cpu.hpp>
#include <vaelab/error.hpp>
#include <vaelab/registry.hpp>
#include <vaelab/threads.hpp>

#include "plugin_registry.hpp"

using Catch::Contains;
using vaelab::Activation;

namespace {

const vaelab::Registry& registry() { return vaelab::testing::build_registry(); }

/// A full config table (the registry does not merge defaults.toml in, the host does).
std::string config(const std::string& precision, const std::string& threads) {
  return "precision = \"" + precision + "\"\nthreads = " + threads + "\ninterop_threads = 1\ncache_capacity = 1024\n";
}

vaelab::PluginPtr<vaelab::Backend> onednn(const std::string& precision = "f32") {
  auto b = registry().create<vaelab::Backend>("onednn-cpu", config(precision, "1"));
  b->apply_threads();
  return b;
}

/// Whether the CPU has native bfloat16 arithmetic, read from /proc/cpuinfo (vaelab/cpu.hpp:
/// independently of oneDNN, so the backend's own check is tested).
bool cpu_has_bf16() {
  const vaelab::CpuFeatures cpu = vaelab::cpu_features();
  return cpu.avx512_bf16 || cpu.amx_bf16;
}

/// "primitive cache: N created" in describe().
int64_t primitives_created(const vaelab::Backend& b) {
  const std::string d = b.describe();
  const std::string marker = "primitive cache: ";
  const size_t at = d.find(marker);
  REQUIRE(at != std::string::npos);
  return std::stoll(d.substr(at + marker.size()));
}

/// Compares within rtol/atol, reporting the largest difference.
void require_close(const torch::Tensor& got, const torch::Tensor& want, double rtol, double atol,
                   const std::string& what) {
  INFO(what << ": got " << got.sizes() << " want " << want.sizes());
  REQUIRE(got.defined());
  REQUIRE(got.sizes() == want.sizes());
  REQUIRE(got.scalar_type() == torch::kFloat32);
  INFO(what << ": largest difference " << (got - want).abs().max().item<double>());
  REQUIRE(torch::allclose(got, want, rtol, atol));
}

/// Relative error ‖got − want‖ / ‖want‖ (for bf16, where elementwise tolerances mislead).
double relative_error(const torch::Tensor& got, const torch::Tensor& want) {
  return ((got - want).norm() / want.norm().clamp_min(1e-12)).item<double>();
}

using Reference = std::function<torch::Tensor(const torch::Tensor&, const std::vector<torch::Tensor>&)>;

struct Gradients {
  torch::Tensor y;
  std::vector<torch::Tensor> grads;  // input, then each parameter in named_parameters() order
};

/// Output and gradients of sum(layer(x) · probe).
Gradients run_layer(vaelab::Layer& layer, const torch::Tensor& x, const torch::Tensor& probe) {
  const torch::Tensor input = x.detach().clone().requires_grad_(true);
  layer.zero_grad();
  Gradients g;
  g.y = layer.forward(input);
  (g.y * probe).sum().backward();
  g.grads.push_back(input.grad().clone());
  for (const auto& p : layer.named_parameters(true)) g.grads.push_back(p.value().grad().clone());
  return g;
}

/// The same for ATen's reference computation f(x, params).
Gradients run_reference(const Reference& f, const torch::Tensor& x, std::vector<torch::Tensor> params,
                        const torch::Tensor& probe) {
  const torch::Tensor input = x.detach().clone().requires_grad_(true);
  for (auto& p : params) p = p.detach().clone().requires_grad_(true);
  Gradients g;
  g.y = f(input, params);
  (g.y * probe).sum().backward();
  g.grads.push_back(input.grad().clone());
  for (const auto& p : params) g.grads.push_back(p.grad().clone());
  return g;
}

std::vector<torch::Tensor> parameters_of(vaelab::Layer& layer) {
  std::vector<torch::Tensor> out;
  for (const auto& p : layer.named_parameters(true)) out.push_back(p.value());
  return out;
}

/// The layer against the reference: output and every gradient within f32 tolerances.
void compare_f32(vaelab::Layer& layer, const Reference& f, const torch::Tensor& x, const std::string& what) {
  const torch::Tensor probe = torch::randn_like(f(x, parameters_of(layer)).detach());
  const Gradients got = run_layer(layer, x, probe);
  const Gradients want = run_reference(f, x, parameters_of(layer), probe);
  require_close(got.y, want.y, 1e-4, 1e-5, what + " output");
  REQUIRE(got.grads.size() == want.grads.size());
  for (size_t i = 0; i < got.grads.size(); ++i) {
    require_close(got.grads[i], want.grads[i], 1e-4, 1e-5, what + " gradient " + std::to_string(i));
  }
}

torch::Tensor act(const torch::Tensor& y, bool relu) { return relu ? torch::relu(y) : y; }

}  // namespace

TEST_CASE("onednn-cpu applies its thread settings and describes itself", "[onednn-cpu]") {
  auto b = onednn();
  REQUIRE(b->threads() == 1);
  REQUIRE(at::get_num_threads() == 1);
  REQUIRE(b->device() == torch::Device(torch::kCPU));
  const std::string d = b->describe();
  REQUIRE_THAT(d, Contains("cpu") && Contains("1 threads (ATen intra-op and large oneDNN primitives") &&
                      Contains("precision f32") &&
                      Contains("oneDNN 2.") && Contains("ISA "));
  REQUIRE(d.find('\n') == std::string::npos);

  auto two = registry().create<vaelab::Backend>("onednn-cpu", config("f32", "2"));
  two->apply_threads();
  REQUIRE(two->threads() == 2);
  REQUIRE(at::get_num_threads() == 2);
  // OpenBLAS threads beside spinning OpenMP threads halve throughput: BLAS stays on one.
  if (vaelab::blas_threads() > 0) REQUIRE(vaelab::blas_threads() == 1);
  // The default is the measured one (defaults.toml): every CPU for large primitives.
  auto measured = registry().create<vaelab::Backend>("onednn-cpu", config("f32", "0"));
  REQUIRE(measured->threads() == vaelab::available_cpus());
  onednn();  // back to one thread for the rest of the tests
}

TEST_CASE("onednn-cpu is preferred to torch-cpu by plugin = \"auto\"", "[onednn-cpu]") {
  int32_t ours = 0, torch_cpu = 0;
  for (const auto& r : registry().records()) {
    if (r.ok() && r.kind == VL_PLUGIN_KIND_BACKEND && r.name == "onednn-cpu") ours = r.preference;
    if (r.ok() && r.kind == VL_PLUGIN_KIND_BACKEND && r.name == "torch-cpu") torch_cpu = r.preference;
  }
  REQUIRE(ours == 20);
  REQUIRE(torch_cpu > 0);
  REQUIRE(ours > torch_cpu);
}

TEST_CASE("onednn-cpu refuses bad config values", "[onednn-cpu]") {
  REQUIRE_THROWS_WITH(registry().create<vaelab::Backend>("onednn-cpu", config("f16", "1")),
                      Contains("precision"));
  REQUIRE_THROWS_WITH(registry().create<vaelab::Backend>("onednn-cpu", config("f32", "-1")),
                      Contains("threads") && Contains("out of range"));
}

TEST_CASE("onednn-cpu layers have torch-cpu's parameter names, layouts and initialization", "[onednn-cpu]") {
  auto ours = onednn();
  auto ref = vaelab::testing::single_thread_cpu();
  const auto same = [](vaelab::Layer& a, vaelab::Layer& b) {
    const auto pa = a.named_parameters(true), pb = b.named_parameters(true);
    REQUIRE(pa.keys() == pb.keys());
    for (const auto& item : pa) {
      INFO(item.key());
      REQUIRE(torch::equal(item.value(), pb[item.key()]));
    }
    const auto ba = a.named_buffers(true), bb = b.named_buffers(true);
    REQUIRE(ba.keys() == bb.keys());
    for (const auto& item : ba) {
      INFO(item.key());
      REQUIRE(torch::equal(item.value(), bb[item.key()]));
    }
  };
  vaelab::DenseOptions d;
  d.in_features = 9;
  d.out_features = 4;
  d.activation = Activation::relu;
  torch::manual_seed(7);
  auto a = ours->dense(d);
  torch::manual_seed(7);
  auto b = ref->dense(d);
  same(*a, *b);
  REQUIRE(a->named_parameters(true).keys() == std::vector<std::string>{"linear.weight", "linear.bias"});

  vaelab::Conv2dOptions c;
  c.in_channels = 3;
  c.out_channels = 5;
  c.kernel_size = 4;
  c.stride = 2;
  c.padding = 1;
  torch::manual_seed(8);
  a = ours->conv2d(c);
  torch::manual_seed(8);
  b = ref->conv2d(c);
  same(*a, *b);
  REQUIRE(a->named_parameters(true)["conv.weight"].sizes() == torch::IntArrayRef({5, 3, 4, 4}));
  c.output_padding = 1;
  torch::manual_seed(9);
  a = ours->conv_transpose2d(c);
  torch::manual_seed(9);
  b = ref->conv_transpose2d(c);
  same(*a, *b);
  REQUIRE(a->named_parameters(true)["conv.weight"].sizes() == torch::IntArrayRef({3, 5, 4, 4}));

  vaelab::BatchNormOptions n;
  n.channels = 6;
  a = ours->batch_norm2d(n);
  b = ref->batch_norm2d(n);
  same(*a, *b);
  REQUIRE(a->named_buffers(true).keys() ==
          std::vector<std::string>{"bn.running_mean", "bn.running_var", "bn.num_batches_tracked"});
}

TEST_CASE("onednn-cpu dense layers match torch::linear in values and gradients", "[onednn-cpu]") {
  auto b = onednn();
  torch::manual_seed(11);
  for (const bool bias : {true, false}) {
    for (const bool relu : {false, true}) {
      vaelab::DenseOptions o;
      o.in_features = 13;
      o.out_features = 6;
      o.bias = bias;
      o.activation = relu ? Activation::relu : Activation::none;
      auto layer = b->dense(o);
      REQUIRE(layer->named_parameters(true).size() == (bias ? 2u : 1u));
      const Reference f = [&](const torch::Tensor& x, const std::vector<torch::Tensor>& p) {
        return act(torch::linear(x, p[0], bias ? p[1] : torch::Tensor()), relu);
      };
      const std::string what = std::string("dense bias ") + (bias ? "on" : "off") + (relu ? ", relu" : "");
      compare_f32(*layer, f, torch::randn({5, 13}), what);
      // A non-contiguous input (a transposed view) gives the same.
      compare_f32(*layer, f, torch::randn({13, 4}).t(), what + ", transposed input");
    }
  }
  // Known values: row 1: 1 − 2 + 1 + 0.25 = 0.25; row 2: −1 + 2 − 3 = −2 → ReLU → 0.
  vaelab::DenseOptions o;
  o.in_features = 3;
  o.out_features = 2;
  o.activation = Activation::relu;
  auto layer = b->dense(o);
  {
    torch::NoGradGuard no_grad;
    layer->named_parameters(true)["linear.weight"].copy_(torch::tensor({{1.0f, -2.0f, 0.5f}, {-1.0f, 0.0f, 1.0f}}));
    layer->named_parameters(true)["linear.bias"].copy_(torch::tensor({0.25f, -3.0f}));
  }
  REQUIRE(torch::allclose(layer->forward(torch::tensor({{1.0f, 1.0f, 2.0f}})), torch::tensor({{0.25f, 0.0f}})));
}

TEST_CASE("onednn-cpu conv2d layers match torch::conv2d in values and gradients", "[onednn-cpu]") {
  auto b = onednn();
  torch::manual_seed(12);
  struct Case {
    int64_t kernel, stride, padding, height, width;
    bool bias, relu;
  };
  // Includes sizes where the last rows are not reached (7 with k4 s2 p0: oneDNN's right padding
  // is negative) and odd, non-square inputs.
  for (const Case c : {Case{3, 1, 1, 6, 5, true, true}, Case{4, 2, 1, 9, 7, false, false}, Case{4, 2, 0, 7, 8, true, false},
                       Case{1, 1, 0, 4, 4, false, true}, Case{3, 2, 2, 5, 6, true, true}, Case{5, 3, 1, 11, 10, true, false}}) {
    vaelab::Conv2dOptions o;
    o.in_channels = 3;
    o.out_channels = 4;
    o.kernel_size = c.kernel;
    o.stride = c.stride;
    o.padding = c.padding;
    o.bias = c.bias;
    o.activation = c.relu ? Activation::relu : Activation::none;
    auto layer = b->conv2d(o);
    const Reference f = [&](const torch::Tensor& x, const std::vector<torch::Tensor>& p) {
      return act(torch::conv2d(x, p[0], c.bias ? p[1] : torch::Tensor(), c.stride, c.padding), c.relu);
    };
    std::ostringstream what;
    what << "conv2d k" << c.kernel << " s" << c.stride << " p" << c.padding << " on " << c.height << "×" << c.width
         << (c.bias ? ", bias" : "") << (c.relu ? ", relu" : "");
    compare_f32(*layer, f, torch::randn({2, 3, c.height, c.width}), what.str());
  }
}

TEST_CASE("onednn-cpu conv_transpose2d layers match torch::conv_transpose2d in values and gradients",
          "[onednn-cpu]") {
  auto b = onednn();
  torch::manual_seed(13);
  struct Case {
    int64_t kernel, stride, padding, output_padding;
    bool bias, relu;
  };
  // Includes output_padding > padding (oneDNN's right padding is negative).
  for (const Case c : {Case{4, 2, 1, 0, true, true}, Case{3, 2, 1, 1, false, false}, Case{4, 2, 0, 1, true, false},
                       Case{1, 1, 0, 0, true, true}, Case{5, 3, 2, 2, false, true}}) {
    vaelab::Conv2dOptions o;
    o.in_channels = 3;
    o.out_channels = 2;
    o.kernel_size = c.kernel;
    o.stride = c.stride;
    o.padding = c.padding;
    o.output_padding = c.output_padding;
    o.bias = c.bias;
    o.activation = c.relu ? Activation::relu : Activation::none;
    auto layer = b->conv_transpose2d(o);
    const Reference f = [&](const torch::Tensor& x, const std::vector<torch::Tensor>& p) {
      return act(torch::conv_transpose2d(x, p[0], c.bias ? p[1] : torch::Tensor(), c.stride, c.padding,
                                         c.output_padding),
                 c.relu);
    };
    std::ostringstream what;
    what << "conv_transpose2d k" << c.kernel << " s" << c.stride << " p" << c.padding << " op" << c.output_padding
         << (c.bias ? ", bias" : "") << (c.relu ? ", relu" : "");
    const torch::Tensor x = torch::randn({2, 3, 5, 6});
    REQUIRE(layer->forward(x).size(2) == (5 - 1) * c.stride - 2 * c.padding + c.kernel + c.output_padding);
    compare_f32(*layer, f, x, what.str());
  }
}

TEST_CASE("onednn-cpu batch_norm2d matches torch::batch_norm in training and eval mode", "[onednn-cpu]") {
  auto b = onednn();
  torch::manual_seed(14);
  for (const bool relu : {false, true}) {
    vaelab::BatchNormOptions o;
    o.channels = 3;
    o.eps = 1e-3;
    o.momentum = 0.25;
    o.activation = relu ? Activation::relu : Activation::none;
    auto layer = b->batch_norm2d(o);
    {
      torch::NoGradGuard no_grad;
      layer->named_parameters(true)["bn.weight"].copy_(torch::tensor({1.5f, -0.5f, 2.0f}));
      layer->named_parameters(true)["bn.bias"].copy_(torch::tensor({0.1f, 0.2f, -0.3f}));
    }
    torch::Tensor ref_mean = torch::zeros({3});
    torch::Tensor ref_var = torch::ones({3});
    const auto reference = [&](bool training) -> Reference {
      return [&, training](const torch::Tensor& x, const std::vector<torch::Tensor>& p) {
        return act(torch::batch_norm(x, p[0], p[1], ref_mean, ref_var, training, 0.25, 1e-3, false), relu);
      };
    };
    const std::string what = std::string("batch_norm2d") + (relu ? ", relu" : "");

    // Two training steps: batch statistics; running ones move by momentum (unbiased variance).
    layer->train();
    for (int step = 0; step < 2; ++step) {
      const torch::Tensor x = torch::randn({4, 3, 5, 6}) * 2 + 0.7;
      const torch::Tensor probe = torch::randn({4, 3, 5, 6});
      const torch::Tensor mean_before = ref_mean.clone(), var_before = ref_var.clone();
      const Gradients got = run_layer(*layer, x, probe);
      const Gradients want = run_reference(reference(true), x, parameters_of(*layer), probe);
      require_close(got.y, want.y, 1e-4, 1e-5, what + " training output");
      for (size_t i = 0; i < got.grads.size(); ++i) {
        require_close(got.grads[i], want.grads[i], 1e-4, 1e-5, what + " training gradient " + std::to_string(i));
      }
      // The running statistics by hand, and against ATen's (run_reference ran it once on ref_*).
      const auto buffers = layer->named_buffers(true);
      const torch::Tensor batch_mean = x.mean({0, 2, 3});
      const torch::Tensor batch_var = x.var({0, 2, 3}, /*unbiased=*/true);
      require_close(buffers["bn.running_mean"], 0.75 * mean_before + 0.25 * batch_mean, 1e-5, 1e-6,
                    what + " running mean");
      require_close(buffers["bn.running_var"], 0.75 * var_before + 0.25 * batch_var, 1e-5, 1e-5,
                    what + " running variance");
      require_close(buffers["bn.running_mean"], ref_mean, 1e-5, 1e-6, what + " running mean vs ATen");
      require_close(buffers["bn.running_var"], ref_var, 1e-5, 1e-6, what + " running variance vs ATen");
      REQUIRE(buffers["bn.num_batches_tracked"].item<int64_t>() == step + 1);
    }

    // Eval mode: the running statistics, unchanged; gradients still flow.
    layer->eval();
    const torch::Tensor rm = layer->named_buffers(true)["bn.running_mean"].clone();
    const torch::Tensor rv = layer->named_buffers(true)["bn.running_var"].clone();
    const torch::Tensor x = torch::randn({2, 3, 4, 5}) * 1.5 - 0.3;
    compare_f32(*layer, reference(false), x, what + " eval");
    REQUIRE(torch::equal(layer->named_buffers(true)["bn.running_mean"], rm));
    REQUIRE(torch::equal(layer->named_buffers(true)["bn.running_var"], rv));
    REQUIRE(layer->named_buffers(true)["bn.num_batches_tracked"].item<int64_t>() == 2);
    {
      torch::NoGradGuard no_grad;  // the inference primitive (no workspace)
      const torch::Tensor want = reference(false)(x, parameters_of(*layer));
      require_close(layer->forward(x), want, 1e-4, 1e-5, what + " eval without gradients");
    }
  }
}

TEST_CASE("onednn-cpu bf16 computes in bfloat16 with float32 parameters and gradients", "[onednn-cpu]") {
  if (!cpu_has_bf16()) {
    REQUIRE_THROWS_WITH(onednn("bf16"), Contains("bf16") && Contains("AVX512-BF16"));
    WARN("this CPU has no native bfloat16 instructions: onednn-cpu refuses bf16 (checked); bf16 values not tested");
    return;
  }
  auto b = onednn("bf16");
  REQUIRE_THAT(b->describe(), Contains("precision bf16"));
  torch::manual_seed(15);
  // bfloat16 keeps 8 significant bits (relative rounding 2^-9 ≈ 0.2 %); products of a few dozen
  // terms accumulated in float32 stay within about 1 % of the float32 result in norm.
  const double tolerance = 1e-2;
  // `pre` is the layer's computation before its ReLU (if `relu`). A bfloat16 pre-activation near 0
  // can land on the other side of the ReLU's kink than the float32 one, which moves a gradient by
  // a whole upstream value; so the reference applies the layer's own ReLU mask.
  const auto compare = [&](vaelab::Layer& layer, const Reference& pre, bool relu, const torch::Tensor& x,
                           const std::string& what) {
    const torch::Tensor probe = torch::randn_like(pre(x, parameters_of(layer)).detach());
    const Gradients got = run_layer(layer, x, probe);
    const torch::Tensor mask = (got.y > 0).to(torch::kFloat32);
    const Reference f = [&](const torch::Tensor& in, const std::vector<torch::Tensor>& p) {
      return relu ? pre(in, p) * mask : pre(in, p);
    };
    const Gradients want = run_reference(f, x, parameters_of(layer), probe);
    REQUIRE(got.y.scalar_type() == torch::kFloat32);
    const torch::Tensor exact = relu ? torch::relu(pre(x, parameters_of(layer))) : want.y;
    INFO(what << " output relative error " << relative_error(got.y, exact));
    REQUIRE(relative_error(got.y, exact) < tolerance);
    REQUIRE(relative_error(got.y, exact) > 0);  // it did not compute in float32
    for (size_t i = 0; i < got.grads.size(); ++i) {
      INFO(what << " gradient " << i << " relative error " << relative_error(got.grads[i], want.grads[i]));
      REQUIRE(got.grads[i].scalar_type() == torch::kFloat32);
      REQUIRE(relative_error(got.grads[i], want.grads[i]) < tolerance);
    }
    // The weight's gradient came from bfloat16 operands too.
    REQUIRE(relative_error(got.grads[1], want.grads[1]) > 0);
    for (const auto& p : layer.named_parameters(true)) REQUIRE(p.value().scalar_type() == torch::kFloat32);
  };
  vaelab::DenseOptions d;
  d.in_features = 40;
  d.out_features = 24;
  d.activation = Activation::relu;
  auto dense = b->dense(d);
  compare(*dense, [](const torch::Tensor& x, const std::vector<torch::Tensor>& p) {
    return torch::linear(x, p[0], p[1]);
  }, true, torch::randn({16, 40}), "bf16 dense");

  vaelab::Conv2dOptions c;
  c.in_channels = 4;
  c.out_channels = 6;
  c.kernel_size = 4;
  c.stride = 2;
  c.padding = 1;
  auto conv = b->conv2d(c);
  compare(*conv, [](const torch::Tensor& x, const std::vector<torch::Tensor>& p) {
    return torch::conv2d(x, p[0], p[1], 2, 1);
  }, false, torch::randn({2, 4, 8, 8}), "bf16 conv2d");
  c.output_padding = 1;
  c.activation = Activation::relu;
  auto deconv = b->conv_transpose2d(c);
  compare(*deconv, [](const torch::Tensor& x, const std::vector<torch::Tensor>& p) {
    return torch::conv_transpose2d(x, p[0], p[1], 2, 1, 1);
  }, true, torch::randn({2, 4, 5, 5}), "bf16 conv_transpose2d");

  // Batch norm stays in float32 under bf16: f32 tolerances.
  vaelab::BatchNormOptions n;
  n.channels = 4;
  auto bn = b->batch_norm2d(n);
  compare_f32(*bn, [](const torch::Tensor& x, const std::vector<torch::Tensor>& p) {
    return torch::batch_norm(x, p[0], p[1], torch::zeros({4}), torch::ones({4}), true, 0.1, 1e-5, false);
  }, torch::randn({3, 4, 5, 5}), "bf16 backend's batch_norm2d");
}

TEST_CASE("onednn-cpu creates no primitive in a repeated training step", "[onednn-cpu]") {
  auto b = onednn();
  torch::manual_seed(16);
  vaelab::Conv2dOptions c;
  c.in_channels = 2;
  c.out_channels = 3;
  c.kernel_size = 3;
  c.padding = 1;
  c.activation = Activation::relu;
  auto conv = b->conv2d(c);
  vaelab::BatchNormOptions n;
  n.channels = 3;
  n.activation = Activation::relu;
  auto bn = b->batch_norm2d(n);
  c.in_channels = 3;
  c.out_channels = 2;
  c.stride = 2;
  c.output_padding = 1;
  auto deconv = b->conv_transpose2d(c);
  vaelab::DenseOptions d;
  d.in_features = 2 * 12 * 12;
  d.out_features = 5;
  d.activation = Activation::relu;
  auto dense = b->dense(d);
  const auto step = [&] {
    const torch::Tensor x = torch::randn({4, 2, 6, 6}, torch::requires_grad());
    dense->forward(deconv->forward(bn->forward(conv->forward(x))).flatten(1)).sum().backward();
  };
  REQUIRE(primitives_created(*b) == 0);
  step();
  const int64_t after_first = primitives_created(*b);
  // Forward, backward data and backward weights of each layer, ReLU backward and reorders.
  REQUIRE(after_first >= 10);
  step();
  step();
  REQUIRE(primitives_created(*b) == after_first);
  // A new batch size is a new shape: new primitives.
  const torch::Tensor x = torch::randn({3, 2, 6, 6});
  dense->forward(deconv->forward(bn->forward(conv->forward(x))).flatten(1));
  REQUIRE(primitives_created(*b) > after_first);
}

TEST_CASE("onednn-cpu refuses what it cannot run, naming the layer", "[onednn-cpu]") {
  auto b = onednn();
  vaelab::DenseOptions d;
  d.in_features = 4;
  d.out_features = 3;
  d.activation = static_cast<Activation>(7);
  REQUIRE_THROWS_WITH(b->dense(d), Contains("dense(4→3") && Contains("activation 7"));
  d.activation = Activation::none;
  d.in_features = 0;
  REQUIRE_THROWS_WITH(b->dense(d), Contains("dense") && Contains("features"));
  d.in_features = 4;
  auto dense = b->dense(d);
  REQUIRE_THROWS_WITH(dense->forward(torch::randn({2, 5})), Contains("dense(4→3") && Contains("[B, 4]") &&
                                                                 Contains("[2, 5]"));
  REQUIRE_THROWS_WITH(dense->forward(torch::randn({2, 4, 1})), Contains("dense(4→3") && Contains("[2, 4, 1]"));
  REQUIRE_THROWS_WITH(dense->forward(torch::randn({2, 4}, torch::kFloat64)),
                      Contains("dense(4→3") && Contains("float32") && Contains("Double"));
  REQUIRE_THROWS_WITH(dense->forward(torch::randn({0, 4})), Contains("dense(4→3") && Contains("empty"));
  dense->to(torch::kFloat64);
  REQUIRE_THROWS_WITH(dense->forward(torch::randn({2, 4})), Contains("dense(4→3") && Contains("linear.weight"));

  vaelab::Conv2dOptions c;
  c.in_channels = 2;
  c.out_channels = 2;
  c.kernel_size = 3;
  c.output_padding = 1;
  REQUIRE_THROWS_WITH(b->conv2d(c), Contains("conv2d") && Contains("output_padding"));
  c.stride = 2;
  c.output_padding = 2;
  REQUIRE_THROWS_WITH(b->conv_transpose2d(c), Contains("conv_transpose2d") && Contains("output_padding"));
  c.output_padding = 0;
  c.activation = static_cast<Activation>(3);
  REQUIRE_THROWS_WITH(b->conv_transpose2d(c), Contains("conv_transpose2d") && Contains("activation 3"));
  c.activation = Activation::none;
  c.in_channels = 0;
  REQUIRE_THROWS_WITH(b->conv2d(c), Contains("conv2d") && Contains("channels"));
  c.in_channels = 2;
  auto conv = b->conv2d(c);
  REQUIRE_THROWS_WITH(conv->forward(torch::randn({1, 3, 8, 8})), Contains("conv2d(2→2") && Contains("[B, 2, H, W]"));
  REQUIRE_THROWS_WITH(conv->forward(torch::randn({2, 8, 8})), Contains("conv2d(2→2") && Contains("[2, 8, 8]"));
  REQUIRE_THROWS_WITH(conv->forward(torch::randn({1, 2, 2, 2})), Contains("conv2d(2→2") && Contains("empty output"));

  vaelab::BatchNormOptions n;
  REQUIRE_THROWS_WITH(b->batch_norm2d(n), Contains("batch_norm2d") && Contains("channels"));
  n.channels = 2;
  n.momentum = 1.5;
  REQUIRE_THROWS_WITH(b->batch_norm2d(n), Contains("batch_norm2d") && Contains("momentum"));
  n.momentum = 0.1;
  n.activation = static_cast<Activation>(5);
  REQUIRE_THROWS_WITH(b->batch_norm2d(n), Contains("batch_norm2d") && Contains("activation 5"));
  n.activation = Activation::relu;
  auto bn = b->batch_norm2d(n);
  bn->train();
  REQUIRE_THROWS_WITH(bn->forward(torch::randn({1, 2, 1, 1})), Contains("batch_norm2d(2") && Contains("more than one"));
  REQUIRE_THROWS_WITH(bn->forward(torch::randn({1, 2, 3, 3}, torch::kFloat64)), Contains("batch_norm2d(2") &&
                                                                                   Contains("float32"));
}

TEST_CASE("onednn-cpu refuses a differentiable backward instead of dropping second-order terms", "[onednn-cpu]") {
  auto b = onednn();
  vaelab::Conv2dOptions c;
  c.in_channels = 2;
  c.out_channels = 3;
  c.kernel_size = 3;
  auto conv = b->conv2d(c);
  const torch::Tensor x = torch::randn({2, 2, 5, 5}, torch::requires_grad());
  const torch::Tensor y = conv->forward(x).sum();
  REQUIRE_THROWS_WITH(torch::autograd::grad({y}, {x}, {}, /*retain_graph=*/true, /*create_graph=*/true),
                      Contains("conv2d(2→3") && Contains("create_graph"));
  // A plain gradient still works.
  const torch::Tensor g = torch::autograd::grad({y}, {x})[0];
  REQUIRE(g.sizes() == x.sizes());
}

TEST_CASE("checkpoints move between torch-cpu and onednn-cpu", "[onednn-cpu]") {
  auto ours = onednn();
  auto ref = vaelab::testing::single_thread_cpu();
  torch::manual_seed(17);
  vaelab::Conv2dOptions c;
  c.in_channels = 3;
  c.out_channels = 4;
  c.kernel_size = 3;
  c.padding = 1;
  c.activation = Activation::relu;
  auto a = ours->conv2d(c);
  auto t = ref->conv2d(c);  // different random weights
  vaelab::BatchNormOptions n;
  n.channels = 4;
  auto abn = ours->batch_norm2d(n);
  auto tbn = ref->batch_norm2d(n);
  // Train the onednn-cpu pair a step, then copy every parameter and buffer to torch-cpu by name.
  abn->forward(a->forward(torch::randn({2, 3, 5, 5})));
  {
    torch::NoGradGuard no_grad;
    for (const auto& [from, to] : {std::make_pair(a, t), std::make_pair(abn, tbn)}) {
      auto dst = to->named_parameters(true);
      for (const auto& p : from->named_parameters(true)) dst[p.key()].copy_(p.value());
      auto dst_buffers = to->named_buffers(true);
      for (const auto& p : from->named_buffers(true)) dst_buffers[p.key()].copy_(p.value());
    }
  }
  abn->eval();
  tbn->eval();
  const torch::Tensor x = torch::randn({2, 3, 5, 5});
  require_close(abn->forward(a->forward(x)), tbn->forward(t->forward(x)), 1e-4, 1e-5, "after moving the checkpoint");
}

namespace {

/// The paper MLP's dense layers (vae-mlp's defaults on 32×32 grayscale images: 1024 → 512 → 512
/// → 2·16 and 16 → 512 → 512 → 1024) made by `backend`.
struct Mlp {
  std::vector<std::shared_ptr<vaelab::Layer>> encoder, decoder;
  explicit Mlp(vaelab::Backend& backend) {
    const auto add = [&](std::vector<std::shared_ptr<vaelab::Layer>>& stack, int64_t in, int64_t out, bool relu) {
      vaelab::DenseOptions o;
      o.in_features = in;
      o.out_features = out;
      o.activation = relu ? Activation::relu : Activation::none;
      stack.push_back(backend.dense(o));
    };
    add(encoder, 1024, 512, true);
    add(encoder, 512, 512, true);
    add(encoder, 512, 32, false);
    add(decoder, 16, 512, true);
    add(decoder, 512, 512, true);
    add(decoder, 512, 1024, false);
  }
  /// One forward and backward through encoder and decoder (the latent is the mean half).
  void step(const torch::Tensor& x, const torch::Tensor& probe) {
    torch::Tensor h = x;
    for (auto& l : encoder) h = l->forward(h);
    h = h.narrow(1, 0, 16);
    for (auto& l : decoder) h = l->forward(h);
    for (auto* stack : {&encoder, &decoder}) {
      for (auto& l : *stack) l->zero_grad();
    }
    (h * probe).sum().backward();
  }
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}


struct BenchConfig {
  std::string name, plugin, config;
};

/// Times one forward+backward step of the MLP on each config: medians of interleaved repeats,
/// and ratios to the first config.
void bench(const std::vector<BenchConfig>& configs) {
  std::vector<vaelab::PluginPtr<vaelab::Backend>> backends;
  std::vector<std::unique_ptr<Mlp>> models;
  for (const auto& c : configs) {
    backends.push_back(registry().create<vaelab::Backend>(c.plugin, c.config));
    torch::manual_seed(1);
    models.push_back(std::make_unique<Mlp>(*backends.back()));
  }
  const torch::Tensor x = torch::rand({128, 1024});
  const torch::Tensor probe = torch::randn({128, 1024});
  const int repeats = 15, steps = 10;
  std::vector<std::vector<double>> ms(configs.size());
  for (size_t i = 0; i < configs.size(); ++i) {  // warm-up: primitives, caches, thread pools
    backends[i]->apply_threads();
    for (int s = 0; s < 3; ++s) models[i]->step(x, probe);
  }
  for (int r = 0; r < repeats; ++r) {
    for (size_t i = 0; i < configs.size(); ++i) {
      backends[i]->apply_threads();
      const auto start = std::chrono::steady_clock::now();
      for (int s = 0; s < steps; ++s) models[i]->step(x, probe);
      ms[i].push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count() /
                      steps);
    }
  }
  const double base = median(ms[0]);
  for (size_t i = 0; i < configs.size(); ++i) {
    std::printf("%-55s %7.2f ms/step (median of %d x %d), time ratio to the first %.2f\n", configs[i].name.c_str(),
                median(ms[i]), repeats, steps, median(ms[i]) / base);
  }
}

}  // namespace

// Not run by ctest (hidden): `test-onednn-cpu "[.bench]"` prints the forward+backward time of the
// paper MLP's dense layers (batch 128) on torch-cpu (its defaults) and onednn-cpu f32 and bf16
// with 1 thread, as medians of interleaved repeats, and their ratios to torch-cpu.
TEST_CASE("onednn-cpu MLP dense layers against torch-cpu (timing)", "[.bench][slow]") {
  std::vector<BenchConfig> configs{{"torch-cpu (defaults: 1 intra-op, BLAS on every CPU)", "torch-cpu",
                                    "threads = 0\nblas_threads = 0\ninterop_threads = 1\n"},
                                   {"torch-cpu (1 intra-op, 1 BLAS thread)", "torch-cpu",
                                    "threads = 1\nblas_threads = 1\ninterop_threads = 1\n"},
                                   {"onednn-cpu f32, 1 thread", "onednn-cpu", config("f32", "1")}};
  if (cpu_has_bf16()) configs.push_back({"onednn-cpu bf16, 1 thread", "onednn-cpu", config("bf16", "1")});
  bench(configs);
}

// Hidden too: onednn-cpu alone (no OpenBLAS threads spinning beside it), 1 against 2 threads; the
// measurement behind defaults.toml's `threads`.
TEST_CASE("onednn-cpu MLP dense layers with 1 and 2 threads (timing)", "[.bench-threads][slow]") {
  std::vector<BenchConfig> configs{{"onednn-cpu f32, 1 thread", "onednn-cpu", config("f32", "1")},
                                   {"onednn-cpu f32, 2 threads", "onednn-cpu", config("f32", "2")}};
  if (cpu_has_bf16()) {
    configs.push_back({"onednn-cpu bf16, 1 thread", "onednn-cpu", config("bf16", "1")});
    configs.push_back({"onednn-cpu bf16, 2 threads", "onednn-cpu", config("bf16", "2")});
  }
  bench(configs);
}
