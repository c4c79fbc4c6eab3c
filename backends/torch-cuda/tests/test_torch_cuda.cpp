// torch-cuda: where this LibTorch has no CUDA (Debian's), creating the backend must fail and say
// so; where it has a GPU, its layers must match torch-cpu's in values and gradients.

#include <catch2/catch.hpp>

#include <torch/torch.h>

#include <vaelab/backend.hpp>
#include <vaelab/registry.hpp>

#include "plugin_registry.hpp"

using Catch::Contains;

namespace {

const vaelab::Registry& registry() { return vaelab::testing::build_registry(); }

const std::string kDefaults = "device = 0\nprecision = \"f32\"\ncudnn_benchmark = false\nallow_tf32 = false\nthreads = 1\n";

bool cuda_here() { return at::globalContext().hasCUDA() && torch::cuda::device_count() > 0; }

}  // namespace

TEST_CASE("torch-cuda is found, and its probe ranks it above the CPU backends", "[torch-cuda]") {
  const vaelab::PluginRecord& cuda = registry().find(VL_PLUGIN_KIND_BACKEND, "torch-cuda");
  const vaelab::PluginRecord& cpu = registry().find(VL_PLUGIN_KIND_BACKEND, "torch-cpu");
  REQUIRE(cuda.preference > cpu.preference);
}

TEST_CASE("torch-cuda without CUDA: creating it fails and says why", "[torch-cuda]") {
  if (cuda_here()) {
    WARN("this LibTorch has CUDA and a GPU; the refusal is not reachable here");
    return;
  }
  try {
    registry().create<vaelab::Backend>("torch-cuda", kDefaults);
    FAIL("torch-cuda was created without CUDA");
  } catch (const vaelab::PluginError& e) {
    REQUIRE(e.refusal() == vaelab::Refusal::create_failed);
    if (!at::globalContext().hasCUDA()) {
      REQUIRE_THAT(e.what(), Contains("built without CUDA") && Contains("auto"));
    } else {
      REQUIRE_THAT(e.what(), Contains("sees no GPU"));
    }
  }
}

TEST_CASE("torch-cuda refuses a bad precision before looking for a GPU", "[torch-cuda]") {
  REQUIRE_THROWS_WITH(registry().create<vaelab::Backend>(
                          "torch-cuda", "device = 0\nprecision = \"f16\"\ncudnn_benchmark = false\n"
                                        "allow_tf32 = false\nthreads = 1\n"),
                      Contains("precision"));
}

TEST_CASE("torch-cuda layers match torch-cpu in values and gradients", "[torch-cuda]") {
  if (!cuda_here()) {
    WARN("no CUDA in this LibTorch or no GPU: the GPU layer comparison did not run");
    return;
  }
  auto gpu = registry().create<vaelab::Backend>("torch-cuda", kDefaults);
  auto cpu = registry().create<vaelab::Backend>("torch-cpu", "threads = 1\nblas_threads = 1\ninterop_threads = 1\n");
  gpu->apply_threads();
  vaelab::Conv2dOptions o;
  o.in_channels = 3;
  o.out_channels = 5;
  o.kernel_size = 4;
  o.stride = 2;
  o.padding = 1;
  o.activation = vaelab::Activation::relu;
  auto on_gpu = gpu->conv2d(o);
  auto on_cpu = cpu->conv2d(o);
  {
    torch::NoGradGuard no_grad;
    auto g = on_gpu->named_parameters(true);
    for (auto& p : on_cpu->named_parameters(true)) p.value().copy_(g[p.key()]);
  }
  on_gpu->to(gpu->device());
  const torch::Tensor x = torch::randn({2, 3, 8, 8});
  const torch::Tensor xg = x.to(gpu->device()).requires_grad_(true);
  const torch::Tensor xc = x.clone().requires_grad_(true);
  const torch::Tensor yg = on_gpu->forward(xg);
  const torch::Tensor yc = on_cpu->forward(xc);
  REQUIRE(torch::allclose(yg.cpu(), yc, 1e-4, 1e-5));
  yg.square().sum().backward();
  yc.square().sum().backward();
  gpu->synchronize();
  REQUIRE(torch::allclose(xg.grad().cpu(), xc.grad(), 1e-4, 1e-5));
  auto gg = on_gpu->named_parameters(true);
  for (auto& p : on_cpu->named_parameters(true)) {
    INFO(p.key());
    REQUIRE(torch::allclose(gg[p.key()].grad().cpu(), p.value().grad(), 1e-3, 1e-4));
  }
}
