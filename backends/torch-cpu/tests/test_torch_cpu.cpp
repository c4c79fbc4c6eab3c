#include <catch2/catch.hpp>

#include <torch/torch.h>

#include <vaelab/backend.hpp>
#include <vaelab/registry.hpp>
#include <vaelab/threads.hpp>

#include "plugin_registry.hpp"

using Catch::Contains;

namespace {

const vaelab::Registry& registry() { return vaelab::testing::build_registry(); }

}  // namespace

TEST_CASE("torch-cpu applies its thread settings", "[torch-cpu]") {
  auto cpu = registry().create<vaelab::Backend>("torch-cpu", "threads = 1\nblas_threads = 1\ninterop_threads = 1\n");
  cpu->apply_threads();
  REQUIRE(cpu->threads() == 1);
  REQUIRE(at::get_num_threads() == 1);
  REQUIRE(cpu->device() == torch::Device(torch::kCPU));
  REQUIRE_THAT(cpu->describe(), Contains("1 intra-op threads"));
  if (vaelab::blas_threads() > 0) REQUIRE(vaelab::blas_threads() == 1);

  auto two = registry().create<vaelab::Backend>("torch-cpu", "threads = 2\nblas_threads = 0\ninterop_threads = 1\n");
  two->apply_threads();
  REQUIRE(at::get_num_threads() == 2);
  if (vaelab::blas_threads() > 0) REQUIRE(vaelab::blas_threads() == vaelab::available_cpus());
}

TEST_CASE("torch-cpu's defaults are the measured ones: 1 intra-op thread, BLAS on every CPU", "[torch-cpu]") {
  auto cpu = registry().create<vaelab::Backend>("torch-cpu", "threads = 0\nblas_threads = 0\ninterop_threads = 1\n");
  cpu->apply_threads();
  REQUIRE(cpu->threads() == 1);
  REQUIRE(at::get_num_threads() == 1);
  if (vaelab::blas_threads() > 0) REQUIRE(vaelab::blas_threads() == vaelab::available_cpus());
}

TEST_CASE("torch-cpu dense layers compute act(x Wᵀ + b)", "[torch-cpu]") {
  auto cpu = registry().create<vaelab::Backend>("torch-cpu", "threads = 1\nblas_threads = 1\ninterop_threads = 1\n");
  vaelab::DenseOptions o;
  o.in_features = 3;
  o.out_features = 2;
  o.activation = vaelab::Activation::relu;
  auto layer = cpu->dense(o);
  auto params = layer->named_parameters(true);
  REQUIRE(params.size() == 2);
  torch::NoGradGuard no_grad;
  params["linear.weight"].copy_(torch::tensor({{1.0f, -2.0f, 0.5f}, {-1.0f, 0.0f, 1.0f}}));
  params["linear.bias"].copy_(torch::tensor({0.25f, -3.0f}));
  const torch::Tensor x = torch::tensor({{1.0f, 1.0f, 2.0f}});
  const torch::Tensor y = layer->forward(x);
  // Row 1: 1 − 2 + 1 + 0.25 = 0.25; row 2: −1 + 2 − 3 = −2 → ReLU → 0.
  REQUIRE(torch::allclose(y, torch::tensor({{0.25f, 0.0f}})));

  o.activation = vaelab::Activation::none;
  o.bias = false;
  auto plain = cpu->dense(o);
  REQUIRE(plain->named_parameters(true).size() == 1);
}

TEST_CASE("torch-cpu refuses bad thread counts", "[torch-cpu]") {
  REQUIRE_THROWS_WITH(registry().create<vaelab::Backend>("torch-cpu", "threads = -1\nblas_threads = 0\ninterop_threads = 1\n"),
                      Contains("threads") && Contains("out of range"));
}

namespace {

vaelab::PluginPtr<vaelab::Backend> one_thread_backend() {
  return registry().create<vaelab::Backend>("torch-cpu", "threads = 1\nblas_threads = 1\ninterop_threads = 1\n");
}

/// Autograd gradients of sum(y · probe) with respect to x and to every parameter of `layer`,
/// in named_parameters() order.
std::vector<torch::Tensor> layer_gradients(vaelab::Layer& layer, const torch::Tensor& x, const torch::Tensor& probe) {
  const torch::Tensor input = x.detach().clone().requires_grad_(true);
  layer.zero_grad();
  (layer.forward(input) * probe).sum().backward();
  std::vector<torch::Tensor> grads{input.grad().clone()};
  for (const auto& p : layer.named_parameters(true)) grads.push_back(p.value().grad().clone());
  return grads;
}

/// The same gradients for a reference computation f(x, params...).
template <class F>
std::vector<torch::Tensor> reference_gradients(const F& f, const torch::Tensor& x, std::vector<torch::Tensor> params,
                                               const torch::Tensor& probe) {
  const torch::Tensor input = x.detach().clone().requires_grad_(true);
  for (auto& p : params) p = p.detach().clone().requires_grad_(true);
  (f(input, params) * probe).sum().backward();
  std::vector<torch::Tensor> grads{input.grad().clone()};
  for (const auto& p : params) grads.push_back(p.grad().clone());
  return grads;
}

}  // namespace

TEST_CASE("torch-cpu conv2d layers match ATen's conv2d in values and gradients", "[torch-cpu]") {
  auto cpu = one_thread_backend();
  torch::manual_seed(1);
  vaelab::Conv2dOptions o;
  o.in_channels = 3;
  o.out_channels = 4;
  o.kernel_size = 3;
  o.stride = 2;
  o.padding = 1;
  o.activation = vaelab::Activation::relu;
  auto layer = cpu->conv2d(o);
  auto params = layer->named_parameters(true);
  REQUIRE(params.size() == 2);
  const torch::Tensor w = params["conv.weight"];
  const torch::Tensor b = params["conv.bias"];
  REQUIRE(w.sizes() == torch::IntArrayRef({4, 3, 3, 3}));
  REQUIRE(b.sizes() == torch::IntArrayRef({4}));

  const torch::Tensor x = torch::randn({2, 3, 9, 7});
  const torch::Tensor y = layer->forward(x);
  // floor((9 + 2 − 3) / 2) + 1 = 5, floor((7 + 2 − 3) / 2) + 1 = 4.
  REQUIRE(y.sizes() == torch::IntArrayRef({2, 4, 5, 4}));
  const auto conv = [&](const torch::Tensor& in, const std::vector<torch::Tensor>& p) {
    return torch::relu(torch::conv2d(in, p[0], p[1], /*stride=*/2, /*padding=*/1));
  };
  REQUIRE(torch::allclose(y, conv(x, {w, b}), 1e-5, 1e-6));
  REQUIRE((y >= 0).all().item<bool>());

  const torch::Tensor probe = torch::randn_like(y);
  const auto got = layer_gradients(*layer, x, probe);
  const auto want = reference_gradients(conv, x, {w, b}, probe);
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    INFO("gradient " << i);
    REQUIRE(torch::allclose(got[i], want[i], 1e-4, 1e-5));
  }

  // The paper's encoder convolution: k4 s2 p1 without bias halves 32 → 16.
  o.kernel_size = 4;
  o.padding = 1;
  o.bias = false;
  o.activation = vaelab::Activation::none;
  auto plain = cpu->conv2d(o);
  REQUIRE(plain->named_parameters(true).size() == 1);
  const torch::Tensor x32 = torch::randn({1, 3, 32, 32});
  const torch::Tensor y32 = plain->forward(x32);
  REQUIRE(y32.sizes() == torch::IntArrayRef({1, 4, 16, 16}));
  REQUIRE(torch::allclose(y32, torch::conv2d(x32, plain->named_parameters(true)["conv.weight"], {}, 2, 1), 1e-5, 1e-6));
  REQUIRE((y32 < 0).any().item<bool>());  // no activation
}

TEST_CASE("torch-cpu conv_transpose2d layers match ATen's conv_transpose2d in values and gradients", "[torch-cpu]") {
  auto cpu = one_thread_backend();
  torch::manual_seed(2);
  vaelab::Conv2dOptions o;
  o.in_channels = 3;
  o.out_channels = 2;
  o.kernel_size = 4;
  o.stride = 2;
  o.padding = 1;
  o.output_padding = 1;
  o.activation = vaelab::Activation::relu;
  auto layer = cpu->conv_transpose2d(o);
  auto params = layer->named_parameters(true);
  REQUIRE(params.size() == 2);
  const torch::Tensor w = params["conv.weight"];
  const torch::Tensor b = params["conv.bias"];
  REQUIRE(w.sizes() == torch::IntArrayRef({3, 2, 4, 4}));  // [in, out, k, k]

  const torch::Tensor x = torch::randn({2, 3, 5, 6});
  const torch::Tensor y = layer->forward(x);
  // (5 − 1)·2 − 2 + 4 + 1 = 11, (6 − 1)·2 − 2 + 4 + 1 = 13.
  REQUIRE(y.sizes() == torch::IntArrayRef({2, 2, 11, 13}));
  const auto deconv = [&](const torch::Tensor& in, const std::vector<torch::Tensor>& p) {
    return torch::relu(torch::conv_transpose2d(in, p[0], p[1], /*stride=*/2, /*padding=*/1, /*output_padding=*/1));
  };
  REQUIRE(torch::allclose(y, deconv(x, {w, b}), 1e-5, 1e-6));

  const torch::Tensor probe = torch::randn_like(y);
  const auto got = layer_gradients(*layer, x, probe);
  const auto want = reference_gradients(deconv, x, {w, b}, probe);
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    INFO("gradient " << i);
    REQUIRE(torch::allclose(got[i], want[i], 1e-4, 1e-5));
  }

  // The paper's decoder upsampling: k4 s2 p1 without bias doubles 8 → 16.
  o.output_padding = 0;
  o.bias = false;
  o.activation = vaelab::Activation::none;
  auto plain = cpu->conv_transpose2d(o);
  REQUIRE(plain->named_parameters(true).size() == 1);
  const torch::Tensor x8 = torch::randn({1, 3, 8, 8});
  const torch::Tensor y8 = plain->forward(x8);
  REQUIRE(y8.sizes() == torch::IntArrayRef({1, 2, 16, 16}));
  REQUIRE(torch::allclose(y8, torch::conv_transpose2d(x8, plain->named_parameters(true)["conv.weight"], {}, 2, 1),
                          1e-5, 1e-6));
}

TEST_CASE("torch-cpu batch_norm2d uses batch statistics in training and running ones in eval", "[torch-cpu]") {
  auto cpu = one_thread_backend();
  torch::manual_seed(3);
  vaelab::BatchNormOptions o;
  o.channels = 3;
  o.eps = 1e-3;
  o.momentum = 0.25;
  o.activation = vaelab::Activation::relu;
  auto layer = cpu->batch_norm2d(o);
  auto params = layer->named_parameters(true);
  REQUIRE(params.size() == 2);
  auto buffers = layer->named_buffers(true);
  REQUIRE(buffers.contains("bn.running_mean"));
  REQUIRE(buffers.contains("bn.running_var"));
  {
    torch::NoGradGuard no_grad;
    params["bn.weight"].copy_(torch::tensor({1.5f, -0.5f, 2.0f}));
    params["bn.bias"].copy_(torch::tensor({0.1f, 0.2f, -0.3f}));
  }
  const torch::Tensor w = params["bn.weight"];
  const torch::Tensor b = params["bn.bias"];
  const torch::Tensor x = torch::randn({4, 3, 5, 5}) * 2 + 1;

  // Training mode: normalized by the batch's own statistics (biased variance), and the running
  // statistics move by `momentum` towards the batch's (unbiased variance).
  layer->train();
  const torch::Tensor y = layer->forward(x);
  REQUIRE(y.sizes() == x.sizes());
  torch::Tensor ref_mean = torch::zeros({3});
  torch::Tensor ref_var = torch::ones({3});
  const torch::Tensor want =
      torch::relu(torch::batch_norm(x, w, b, ref_mean, ref_var, /*training=*/true, 0.25, 1e-3, false));
  REQUIRE(torch::allclose(y, want, 1e-5, 1e-6));
  const torch::Tensor batch_mean = x.mean({0, 2, 3});
  const torch::Tensor batch_var = x.var({0, 2, 3}, /*unbiased=*/true);
  const torch::Tensor by_hand =
      torch::relu((x - batch_mean.view({1, 3, 1, 1})) / torch::sqrt(x.var({0, 2, 3}, false).view({1, 3, 1, 1}) + 1e-3) *
                      w.view({1, 3, 1, 1}) +
                  b.view({1, 3, 1, 1}));
  REQUIRE(torch::allclose(y, by_hand, 1e-4, 1e-5));
  buffers = layer->named_buffers(true);
  REQUIRE(torch::allclose(buffers["bn.running_mean"], 0.25 * batch_mean, 1e-5, 1e-6));
  REQUIRE(torch::allclose(buffers["bn.running_var"], 0.75 + 0.25 * batch_var, 1e-5, 1e-6));
  REQUIRE(torch::allclose(buffers["bn.running_mean"], ref_mean, 1e-5, 1e-6));
  REQUIRE(torch::allclose(buffers["bn.running_var"], ref_var, 1e-5, 1e-6));

  // Eval mode: normalized by the running statistics, which stay as they are.
  layer->eval();
  const torch::Tensor rm = buffers["bn.running_mean"].clone();
  const torch::Tensor rv = buffers["bn.running_var"].clone();
  const torch::Tensor e1 = layer->forward(x);
  const torch::Tensor e2 = layer->forward(x);
  REQUIRE(torch::equal(e1, e2));
  REQUIRE(torch::equal(buffers["bn.running_mean"], rm));
  REQUIRE(torch::equal(buffers["bn.running_var"], rv));
  REQUIRE(torch::allclose(e1, torch::relu(torch::batch_norm(x, w, b, rm, rv, false, 0.25, 1e-3, false)), 1e-5, 1e-6));
  const torch::Tensor eval_by_hand =
      torch::relu((x - rm.view({1, 3, 1, 1})) / torch::sqrt(rv.view({1, 3, 1, 1}) + 1e-3) * w.view({1, 3, 1, 1}) +
                  b.view({1, 3, 1, 1}));
  REQUIRE(torch::allclose(e1, eval_by_hand, 1e-4, 1e-5));
  REQUIRE_FALSE(torch::allclose(e1, y, 1e-3, 1e-3));  // not the batch statistics

  // The running statistics are buffers: they follow the module's dtype.
  layer->to(torch::kFloat64);
  REQUIRE(layer->named_buffers(true)["bn.running_var"].scalar_type() == torch::kFloat64);
  REQUIRE(layer->forward(x.to(torch::kFloat64)).scalar_type() == torch::kFloat64);
}

TEST_CASE("torch-cpu refuses impossible convolution and batch-norm options", "[torch-cpu]") {
  auto cpu = one_thread_backend();
  vaelab::Conv2dOptions o;
  o.in_channels = 2;
  o.out_channels = 2;
  o.kernel_size = 3;
  o.output_padding = 1;
  REQUIRE_THROWS_WITH(cpu->conv2d(o), Contains("conv2d") && Contains("output_padding"));
  o.stride = 2;
  o.output_padding = 2;
  REQUIRE_THROWS_WITH(cpu->conv_transpose2d(o), Contains("conv_transpose2d") && Contains("output_padding"));
  o.output_padding = 0;
  o.in_channels = 0;
  REQUIRE_THROWS_WITH(cpu->conv2d(o), Contains("channels"));
  vaelab::BatchNormOptions bn;
  REQUIRE_THROWS_WITH(cpu->batch_norm2d(bn), Contains("batch_norm2d") && Contains("channels"));
  bn.channels = 2;
  bn.momentum = 1.5;
  REQUIRE_THROWS_WITH(cpu->batch_norm2d(bn), Contains("momentum"));
}

TEST_CASE("torch-cpu offers no bf16: a precision key is refused as unknown", "[torch-cpu]") {
  // LibTorch 1.13's CPU bf16 transposed convolution runs as a plain convolution (mkldnn), so
  // torch-cpu stays the f32 reference; bf16 on the CPU is onednn-cpu's.
  const vaelab::PluginRecord& record = registry().find(VL_PLUGIN_KIND_BACKEND, "torch-cpu");
  REQUIRE(record.defaults_toml.find("precision") == std::string::npos);
}
