// template-vae through the plugin boundary, as the host uses it: loaded by the registry, built
// with the torch-cpu backend's layers. A copy keeps the shape of these tests and changes the
// numbers: exact parameter counts, Θ_z, shapes, config errors naming the key, a training signal.

#include <catch2/catch.hpp>

#include <torch/torch.h>

#include <vaelab/backend.hpp>
#include <vaelab/likelihood.hpp>
#include <vaelab/metrics/elbo.hpp>
#include <vaelab/model.hpp>
#include <vaelab/registry.hpp>

#include "plugin_registry.hpp"

using Catch::Contains;

namespace {

/// The skeleton's folder, then the build tree's plugins (for torch-cpu).
const vaelab::Registry& registry() {
  static const vaelab::Registry r({VAELAB_TEMPLATE_PLUGIN_DIR, VAELAB_TEST_PLUGIN_DIR});
  return r;
}

vaelab::PluginPtr<vaelab::Backend> cpu() {
  return registry().create<vaelab::Backend>("torch-cpu", "threads = 1\nblas_threads = 1\ninterop_threads = 1\n");
}

int64_t count(const torch::nn::Module& m) {
  int64_t n = 0;
  for (const auto& p : m.parameters()) n += p.numel();
  return n;
}

}  // namespace

TEST_CASE("template-vae has exact parameter counts, shapes and Θ_z", "[template-vae]") {
  auto backend = cpu();
  auto model = registry().create<vaelab::Model>("template-vae", "hidden = 10\nlatent = 3\n");
  model->build({1, 4, 4, 2}, *backend);  // 16 pixels, 2 likelihood parameters per pixel
  const int64_t enc_hidden = 16 * 10 + 10;
  const int64_t enc_out = 10 * 6 + 6;
  const int64_t dec_in = 3 * 10 + 10;
  const int64_t dec_out = 10 * 32 + 32;
  REQUIRE(count(model->module()) == enc_hidden + enc_out + dec_in + dec_out);

  const auto names = model->latent_adjacent_parameters();
  REQUIRE(names == std::vector<std::string>{"encoder_out.linear.weight", "encoder_out.linear.bias",
                                            "decoder_in.linear.weight", "decoder_in.linear.bias"});

  const vaelab::Posterior q = model->encode(torch::rand({5, 1, 4, 4}));
  REQUIRE(q.mean.sizes() == torch::IntArrayRef({5, 3}));
  REQUIRE(q.log_var.sizes() == torch::IntArrayRef({5, 3}));
  REQUIRE(model->decode(q.mean).sizes() == torch::IntArrayRef({5, 2, 4, 4}));
  REQUIRE(model->latent_shape() == std::vector<int64_t>{3});
}

TEST_CASE("template-vae's defaults are its defaults.toml", "[template-vae]") {
  const vaelab::PluginRecord& record = registry().find(VL_PLUGIN_KIND_MODEL, "template-vae");
  REQUIRE_THAT(record.defaults_toml, Contains("hidden = 64") && Contains("latent = 8"));
  auto backend = cpu();
  auto model = registry().create<vaelab::Model>("template-vae", record.defaults_toml);
  model->build({1, 32, 32, 1}, *backend);
  REQUIRE(count(model->module()) == (1024 * 64 + 64) + (64 * 16 + 16) + (8 * 64 + 64) + (64 * 1024 + 1024));
}

TEST_CASE("template-vae refuses bad values with the key named", "[template-vae]") {
  REQUIRE_THROWS_WITH(registry().create<vaelab::Model>("template-vae", "hidden = 0\nlatent = 8\n"),
                      Contains("failed to start") && Contains("hidden") && Contains("out of range"));
  REQUIRE_THROWS_WITH(registry().create<vaelab::Model>("template-vae", "hidden = 64\n"), Contains("latent"));
}

TEST_CASE("a few Adam steps on −ELBO raise the ELBO of template-vae", "[template-vae]") {
  auto backend = cpu();
  torch::manual_seed(0);
  auto model = registry().create<vaelab::Model>("template-vae", "hidden = 32\nlatent = 4\n");
  model->build({1, 6, 6, 1}, *backend);
  const torch::Tensor x = torch::rand({16, 1, 6, 6});
  const vaelab::GaussianLikelihood likelihood(0.1);
  torch::optim::Adam adam(model->module().parameters(), torch::optim::AdamOptions(1e-2));
  const auto elbo = [&] { return vaelab::elbo_terms(*model, likelihood, x, 1).elbo.mean(); };
  torch::manual_seed(1);
  const double before = elbo().item<double>();
  for (int step = 0; step < 50; ++step) {
    adam.zero_grad();
    (-elbo()).backward();
    adam.step();
  }
  torch::manual_seed(1);
  REQUIRE(elbo().item<double>() > before + 100);
}
