// vae-conv through the plugin boundary, as the host uses it: loaded by the registry, built with
// the torch-cpu backend's layers. Widths are tiny so the suite stays fast.

#include <catch2/catch.hpp>

#include <algorithm>
#include <map>
#include <string>

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

std::string config(int64_t n_c, int64_t m_z, int64_t per_m_z = 64, const std::string& extra = "") {
  std::string text = "n_c = " + std::to_string(n_c) + "\nm_z = " + std::to_string(m_z) +
                     "\nlatent_channels_per_m_z = " + std::to_string(per_m_z) + "\n";
  if (extra.find("bn_momentum") == std::string::npos) text += "bn_momentum = 0.1\n";
  if (extra.find("bn_eps") == std::string::npos) text += "bn_eps = 1e-5\n";
  return text + extra;
}

vaelab::PluginPtr<vaelab::Model> make_model(const std::string& toml) {
  return registry().create<vaelab::Model>("vae-conv", toml);
}

int64_t count(vaelab::Model& model) {
  int64_t total = 0;
  for (const auto& p : model.module().parameters()) total += p.numel();
  return total;
}

int64_t count_latent_adjacent(vaelab::Model& model) {
  const auto names = model.latent_adjacent_parameters();
  int64_t total = 0;
  for (const auto& p : model.module().named_parameters()) {
    if (std::find(names.begin(), names.end(), p.key()) != names.end()) total += p.value().numel();
  }
  return total;
}

/// Parameters of Tables 4–6 (with the added upsampling and the likelihood head), layer by layer,
/// for C input channels, n = n_c, d = d_z and P likelihood parameter channels. Convolutions
/// have in·out·k² weights (+ out biases where they have them); every BatchNorm has 2·n.
struct HandCount {
  int64_t total;
  int64_t latent_adjacent;
};
HandCount hand_count(int64_t C, int64_t n, int64_t d, int64_t P) {
  const int64_t bn = 2 * n;
  const int64_t residual = (n * n * 9) + bn + (n * n * 9) + bn;  // conv3x3, BN, conv3x3, BN
  const int64_t encoder_out = n * 2 * d + 2 * d;                 // conv1x1 with bias
  const int64_t decoder_in = d * n;                              // conv1x1 without bias
  const int64_t encoder = (C * n * 16) + bn                      // conv4x4 s2, BN (+ReLU)
                          + (n * n * 16) + bn                    // conv4x4 s2, BN
                          + 2 * residual + encoder_out;
  const int64_t decoder = decoder_in + bn                        // conv1x1, BN
                          + 2 * residual                         //
                          + (n * n * 16) + bn                    // convT4x4 s2, BN (+ReLU)
                          + (n * n * 16) + bn                    // the added convT4x4 s2, BN (+ReLU)
                          + (n * P + P);                         // the likelihood head, conv1x1 with bias
  return {encoder + decoder, encoder_out + decoder_in};
}

}  // namespace

TEST_CASE("vae-conv's parameter counts equal the hand count of Tables 4-6", "[vae-conv]") {
  auto cpu = backend();
  SECTION("n_c = 8, m_z = 1 (d_z = 64), RGB with a 10-component mixture of logistics (P = 100)") {
    auto model = make_model(config(8, 1));
    model->build({3, 32, 32, 100}, *cpu);
    const HandCount want = hand_count(3, 8, 64, 100);
    // 120·8² + (16·3 + 100 + 26)·8 + 3·64·8 + 2·64 + 100 = 7680 + 1392 + 1536 + 128 + 100.
    REQUIRE(want.total == 10836);
    REQUIRE(want.latent_adjacent == 3 * 64 * 8 + 2 * 64);
    REQUIRE(count(*model) == want.total);
    REQUIRE(count_latent_adjacent(*model) == want.latent_adjacent);
  }
  SECTION("n_c = 16, m_z = 2 (d_z = 128), grayscale with one parameter per pixel (P = 1)") {
    auto model = make_model(config(16, 2));
    model->build({1, 32, 32, 1}, *cpu);
    const HandCount want = hand_count(1, 16, 128, 1);
    // 120·16² + (16·1 + 1 + 26)·16 + 3·128·16 + 2·128 + 1 = 30720 + 688 + 6144 + 256 + 1.
    REQUIRE(want.total == 37809);
    REQUIRE(want.latent_adjacent == 6400);
    REQUIRE(count(*model) == want.total);
    REQUIRE(count_latent_adjacent(*model) == want.latent_adjacent);
  }
}

TEST_CASE("vae-conv's Θ_z is encoder_out (weight, bias) and decoder_in (weight)", "[vae-conv]") {
  auto cpu = backend();
  auto model = make_model(config(4, 1, 3));
  model->build({1, 32, 32, 1}, *cpu);
  const auto names = model->latent_adjacent_parameters();
  REQUIRE(names.size() == 3);
  int encoder_out = 0;
  int decoder_in = 0;
  for (const auto& name : names) {
    encoder_out += name.rfind("encoder_out.", 0) == 0 ? 1 : 0;
    decoder_in += name.rfind("decoder_in.", 0) == 0 ? 1 : 0;
  }
  REQUIRE(encoder_out == 2);
  REQUIRE(decoder_in == 1);
  REQUIRE(model->latent_shape() == std::vector<int64_t>{3, 8, 8});
}

TEST_CASE("vae-conv maps 32x32 images to an 8x8 latent and back to the likelihood's channels", "[vae-conv]") {
  auto cpu = backend();
  struct Case {
    int64_t channels;
    int64_t param_channels;
  };
  for (const Case c : {Case{1, 1}, Case{3, 3}, Case{3, 3 * 10}, Case{3, 10 * 10}, Case{1, 3 * 10}}) {
    INFO(c.channels << " channel(s), " << c.param_channels << " parameter channels");
    auto model = make_model(config(4, 2, 3));
    model->build({c.channels, 32, 32, c.param_channels}, *cpu);
    REQUIRE(model->latent_shape() == std::vector<int64_t>{6, 8, 8});
    const torch::Tensor x = torch::rand({2, c.channels, 32, 32});
    const vaelab::Posterior q = model->encode(x);
    REQUIRE(q.mean.sizes() == torch::IntArrayRef({2, 6, 8, 8}));
    REQUIRE(q.log_var.sizes() == torch::IntArrayRef({2, 6, 8, 8}));
    const torch::Tensor params = model->decode(q.mean);
    REQUIRE(params.sizes() == torch::IntArrayRef({2, c.param_channels, 32, 32}));
    REQUIRE(torch::isfinite(params).all().item<bool>());
  }
}

TEST_CASE("vae-conv refuses inputs other than 1 or 3 channels at 32x32", "[vae-conv]") {
  auto cpu = backend();
  REQUIRE_THROWS_AS(make_model(config(4, 1, 2))->build({1, 28, 28, 1}, *cpu), vaelab::Error);
  REQUIRE_THROWS_WITH(make_model(config(4, 1, 2))->build({1, 28, 28, 1}, *cpu),
                      Contains("32x32") && Contains("28x28"));
  REQUIRE_THROWS_WITH(make_model(config(4, 1, 2))->build({2, 32, 32, 2}, *cpu),
                      Contains("1- or 3-channel") && Contains("2 channel(s)"));
  REQUIRE_THROWS_WITH(make_model(config(4, 1, 2))->build({3, 64, 64, 3}, *cpu), Contains("64x64"));
  REQUIRE_THROWS_WITH(make_model(config(4, 1, 2))->build({3, 32, 32, 0}, *cpu), Contains("parameter channels"));
  auto model = make_model(config(4, 1, 2));
  model->build({1, 32, 32, 1}, *cpu);
  REQUIRE_THROWS_WITH(model->build({1, 32, 32, 1}, *cpu), Contains("twice"));
}

TEST_CASE("vae-conv is deterministic in eval mode and updates BatchNorm statistics in train mode", "[vae-conv]") {
  auto cpu = backend();
  torch::manual_seed(7);
  auto model = make_model(config(4, 1, 2));
  model->build({3, 32, 32, 30}, *cpu);
  const auto buffers = [&] {
    std::map<std::string, torch::Tensor> copy;
    for (const auto& b : model->module().named_buffers()) copy[b.key()] = b.value().clone();
    return copy;
  };
  const auto same = [](const std::map<std::string, torch::Tensor>& a, const std::map<std::string, torch::Tensor>& b) {
    if (a.size() != b.size()) return false;
    for (const auto& [name, t] : a) {
      if (!torch::equal(t, b.at(name))) return false;
    }
    return true;
  };
  REQUIRE(buffers().size() >= 12 * 2);  // at least a running mean and variance for each of the 12 BatchNorms
  const torch::Tensor x = torch::rand({4, 3, 32, 32});

  model->module().train();
  const auto before = buffers();
  const vaelab::Posterior t1 = model->encode(x);
  model->decode(t1.mean);
  const auto after_train = buffers();
  REQUIRE_FALSE(same(before, after_train));
  REQUIRE(t1.mean.requires_grad());

  model->module().eval();
  const vaelab::Posterior e1 = model->encode(x);
  const vaelab::Posterior e2 = model->encode(x);
  REQUIRE(torch::equal(e1.mean, e2.mean));
  REQUIRE(torch::equal(e1.log_var, e2.log_var));
  REQUIRE(torch::equal(model->decode(e1.mean), model->decode(e2.mean)));
  REQUIRE(same(after_train, buffers()));
  // Per image in eval mode: encoding a one-image batch gives that image's row of the full batch.
  const vaelab::Posterior one = model->encode(x.slice(0, 1, 2));
  REQUIRE(torch::allclose(one.mean, e1.mean.slice(0, 1, 2), 1e-5, 1e-6));
}

TEST_CASE("the gradient of −ELBO through vae-conv matches finite differences", "[vae-conv]") {
  auto cpu = backend();
  torch::manual_seed(0);
  auto model = make_model(config(2, 1, 2));
  model->build({1, 32, 32, 1}, *cpu);
  model->module().to(torch::kFloat64);
  model->module().train();  // batch statistics: the gradient flows through them too
  const torch::Tensor x = torch::rand({3, 1, 32, 32}, torch::kFloat64);
  vaelab::GaussianLikelihood lik(1.0);
  const auto loss = [&] {
    at::Generator gen = vaelab::shim::make_cpu_generator(42);  // the same noise every call
    return -vaelab::elbo_terms(*model, lik, x, 1, &gen).elbo.mean();
  };
  REQUIRE(vaelab::testing::check_gradients(model->module(), loss, 1e-6) >= 60);
}

TEST_CASE("vae-conv refuses bad config values with the key named", "[vae-conv]") {
  REQUIRE_THROWS_WITH(make_model(config(0, 1)), Contains("failed to start") && Contains("n_c") && Contains("out of range"));
  REQUIRE_THROWS_WITH(make_model(config(8, 0)), Contains("m_z") && Contains("out of range"));
  REQUIRE_THROWS_WITH(make_model(config(8, 1, 0)), Contains("latent_channels_per_m_z") && Contains("out of range"));
  REQUIRE_THROWS_WITH(make_model(config(8, 1024, 4096)), Contains("m_z") && Contains("latent_channels_per_m_z"));
  REQUIRE_THROWS_WITH(make_model(config(8, 1, 64, "bn_momentum = 1.5\n")), Contains("bn_momentum") && Contains("out of range"));
  REQUIRE_THROWS_WITH(make_model(config(8, 1, 64, "bn_eps = 0.0\n")), Contains("bn_eps") && Contains("out of range"));
  REQUIRE_THROWS_WITH(make_model(config(8, 1, 64, "bn_eps = \"small\"\n")), Contains("bn_eps"));
  REQUIRE_THROWS_WITH(registry().create<vaelab::Model>("vae-conv", "m_z = 1\nlatent_channels_per_m_z = 64\n"),
                      Contains("n_c"));
}
