// The ATen layers shared by torch-cpu and torch-cuda, in the bf16 compute mode: float32 in and
// out, float32 parameters and gradients, values within bfloat16's precision of the f32 layers.

#include <catch2/catch.hpp>

#include <torch/cuda.h>
#include <torch/torch.h>

#include "aten_layers.hpp"

namespace {

using vaelab::aten_layers::Compute;
constexpr Compute F32 = Compute::f32;
constexpr Compute BF16 = Compute::bf16;

std::shared_ptr<vaelab::Layer> dense_layer(const vaelab::DenseOptions& o, Compute c) {
  return vaelab::aten_layers::dense("test", o, c);
}
std::shared_ptr<vaelab::Layer> conv_layer(const vaelab::Conv2dOptions& o, Compute c) {
  return vaelab::aten_layers::conv2d("test", o, c);
}
std::shared_ptr<vaelab::Layer> deconv_layer(const vaelab::Conv2dOptions& o, Compute c) {
  return vaelab::aten_layers::conv_transpose2d("test", o, c);
}

}  // namespace

TEST_CASE("ATen layers in bf16 match f32 within bfloat16's precision, gradients included", "[aten-layers]") {
  torch::manual_seed(3);
  vaelab::Conv2dOptions conv;
  conv.in_channels = 4;
  conv.out_channels = 6;
  conv.kernel_size = 4;
  conv.stride = 2;
  conv.padding = 1;
  conv.activation = vaelab::Activation::relu;
  vaelab::DenseOptions dense;
  dense.in_features = 5;
  dense.out_features = 7;
  struct Case {
    std::shared_ptr<vaelab::Layer> a, b;
    torch::Tensor x;
  };
  std::vector<Case> cases;
  cases.push_back({dense_layer(dense, F32), dense_layer(dense, BF16), torch::randn({3, 5})});
  cases.push_back({conv_layer(conv, F32), conv_layer(conv, BF16), torch::randn({2, 4, 8, 8})});
  conv.output_padding = 1;
  if (torch::cuda::is_available()) {
    // LibTorch 1.13's CPU bf16 transposed convolution (mkldnn) computes a plain convolution, so
    // bf16 transposed convolutions are compared on the GPU only (torch-cuda's case).
    cases.push_back({deconv_layer(conv, F32), deconv_layer(conv, BF16), torch::randn({2, 4, 5, 5})});
  }
  for (auto& c : cases) {
    if (torch::cuda::is_available()) {
      c.a->to(torch::kCUDA);
      c.b->to(torch::kCUDA);
      c.x = c.x.to(torch::kCUDA);
    }
    {
      torch::NoGradGuard no_grad;
      auto pa = c.a->named_parameters(true);
      for (auto& p : c.b->named_parameters(true)) p.value().copy_(pa[p.key()]);
    }
    const torch::Tensor xa = c.x.clone().requires_grad_(true);
    const torch::Tensor xb = c.x.clone().requires_grad_(true);
    const torch::Tensor ya = c.a->forward(xa);
    const torch::Tensor yb = c.b->forward(xb);
    INFO(ya.sizes() << " vs " << yb.sizes());
    REQUIRE(yb.scalar_type() == torch::kFloat32);
    REQUIRE(ya.sizes() == yb.sizes());
    // bfloat16 keeps 8 significant bits: relative error ~ 2^-8 per product, summed over a few terms.
    REQUIRE(torch::allclose(ya, yb, 3e-2, 3e-2));
    ya.sum().backward();
    yb.sum().backward();
    REQUIRE(torch::allclose(xa.grad(), xb.grad(), 3e-2, 3e-2));
    auto pa = c.a->named_parameters(true);
    for (auto& p : c.b->named_parameters(true)) {
      INFO(p.key());
      REQUIRE(p.value().scalar_type() == torch::kFloat32);
      REQUIRE(p.value().grad().scalar_type() == torch::kFloat32);
      REQUIRE(torch::allclose(pa[p.key()].grad(), p.value().grad(), 3e-2, 5e-2));
    }
  }
}

TEST_CASE("ATen layers name the backend when they refuse options", "[aten-layers]") {
  vaelab::Conv2dOptions conv;
  conv.in_channels = 1;
  conv.out_channels = 1;
  conv.kernel_size = 3;
  conv.stride = 2;
  conv.output_padding = 2;
  REQUIRE_THROWS_WITH(vaelab::aten_layers::conv_transpose2d("torch-cuda", conv, F32),
                      Catch::Contains("torch-cuda conv_transpose2d") && Catch::Contains("output_padding"));
  vaelab::DenseOptions dense;
  dense.in_features = 0;
  dense.out_features = 3;
  REQUIRE_THROWS_WITH(dense_layer(dense, BF16), Catch::Contains("in_features"));
}
