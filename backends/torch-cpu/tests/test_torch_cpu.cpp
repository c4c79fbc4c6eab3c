#include <catch2/catch.hpp>

#include <torch/torch.h>

#include <vaelab/backend.hpp>
#include <vaelab/registry.hpp>
#include <vaelab/threads.hpp>

using Catch::Contains;

namespace {

const vaelab::Registry& registry() {
  static const vaelab::Registry r({VAELAB_TEST_PLUGIN_DIR});
  return r;
}

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
