// vae-mlp through the plugin boundary, as the host uses it: loaded by the registry, built with
// the torch-cpu backend's layers.

#include <catch2/catch.hpp>

#include <torch/torch.h>

#include <vaelab/backend.hpp>
#include <vaelab/likelihood.hpp>
#include <vaelab/metrics/elbo.hpp>
#include <vaelab/model.hpp>
#include <vaelab/registry.hpp>
#include <vaelab/torch_shim.hpp>

#include "gradient_check.hpp"
#include "plugin_registry.hpp"

using Catch::Contains;

namespace {

const vaelab::Registry& registry() { return vaelab::testing::build_registry(); }

vaelab::PluginPtr<vaelab::Backend> backend() { return vaelab::testing::single_thread_cpu(); }

}  // namespace

TEST_CASE("vae-mlp has the paper's shapes and exact parameter counts", "[vae-mlp]") {
  auto cpu = backend();
  auto model = registry().create<vaelab::Model>("vae-mlp", "hidden = [512, 512]\nlatent = 16\n");
  model->build({1, 32, 32, 1}, *cpu);
  int64_t total = 0;
  for (const auto& p : model->module().parameters()) total += p.numel();
  const int64_t enc = (1024 * 512 + 512) + (512 * 512 + 512) + (512 * 32 + 32);
  const int64_t dec = (16 * 512 + 512) + (512 * 512 + 512) + (512 * 1024 + 1024);
  REQUIRE(total == enc + dec);

  const auto names = model->latent_adjacent_parameters();
  REQUIRE(names.size() == 4);  // weight and bias of encoder_out and decoder_in
  int64_t latent_adjacent = 0;
  for (const auto& p : model->module().named_parameters()) {
    if (std::find(names.begin(), names.end(), p.key()) != names.end()) latent_adjacent += p.value().numel();
  }
  REQUIRE(latent_adjacent == (512 * 32 + 32) + (16 * 512 + 512));

  const torch::Tensor x = torch::rand({3, 1, 32, 32});
  const vaelab::Posterior q = model->encode(x);
  REQUIRE(q.mean.sizes() == torch::IntArrayRef({3, 16}));
  REQUIRE(q.log_var.sizes() == torch::IntArrayRef({3, 16}));
  REQUIRE(model->decode(q.mean).sizes() == torch::IntArrayRef({3, 1, 32, 32}));
  REQUIRE(model->latent_shape() == std::vector<int64_t>{16});
}

TEST_CASE("vae-mlp follows its config: widths, latent size and likelihood channels", "[vae-mlp]") {
  auto cpu = backend();
  auto model = registry().create<vaelab::Model>("vae-mlp", "hidden = [8]\nlatent = 3\n");
  model->build({1, 4, 4, 2}, *cpu);  // a likelihood with 2 parameters per pixel
  int64_t total = 0;
  for (const auto& p : model->module().parameters()) total += p.numel();
  REQUIRE(total == (16 * 8 + 8) + (8 * 6 + 6) + (3 * 8 + 8) + (8 * 32 + 32));
  REQUIRE(model->decode(torch::zeros({5, 3})).sizes() == torch::IntArrayRef({5, 2, 4, 4}));
}

TEST_CASE("vae-mlp refuses bad config values with the key named", "[vae-mlp]") {
  REQUIRE_THROWS_WITH(registry().create<vaelab::Model>("vae-mlp", "hidden = [512, 0]\nlatent = 16\n"),
                      Contains("failed to start") && Contains("hidden[1]"));
  REQUIRE_THROWS_WITH(registry().create<vaelab::Model>("vae-mlp", "hidden = [8]\nlatent = 0\n"),
                      Contains("latent") && Contains("out of range"));
}

TEST_CASE("the gradient of −ELBO through vae-mlp matches finite differences", "[vae-mlp]") {
  auto cpu = backend();
  auto model = registry().create<vaelab::Model>("vae-mlp", "hidden = [6]\nlatent = 2\n");
  model->build({1, 2, 2, 1}, *cpu);
  model->module().to(torch::kFloat64);
  torch::manual_seed(0);
  const torch::Tensor x = torch::rand({4, 1, 2, 2}, torch::kFloat64);
  vaelab::GaussianLikelihood lik(0.3);
  const auto loss = [&] {
    at::Generator gen = vaelab::shim::make_cpu_generator(42);  // the same noise every call
    return -vaelab::elbo_terms(*model, lik, x, 3, &gen).elbo.mean();
  };
  REQUIRE(vaelab::testing::check_gradients(model->module(), loss, 1e-7) >= 12);
}
