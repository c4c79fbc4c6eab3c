// vae-torchscript through the plugin boundary, as the host uses it. The TorchScript files are
// built here in C++ (torch::jit::Module::define, then save), the way torch.jit.save writes them
// from Python; one test also exports from Python where python3 has torch.

#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <torch/script.h>
#include <torch/torch.h>

#include <vaelab/backend.hpp>
#include <vaelab/config.hpp>
#include <vaelab/io/safetensors.hpp>
#include <vaelab/io/torchscript_vae.hpp>
#include <vaelab/likelihood.hpp>
#include <vaelab/metrics/elbo.hpp>
#include <vaelab/model.hpp>
#include <vaelab/registry.hpp>
#include <vaelab/torch_shim.hpp>

#include "gradient_check.hpp"
#include "plugin_registry.hpp"
#include "scratch_folder.hpp"
#include "scripted_mlp.hpp"

using Catch::Contains;

namespace {

namespace fs = std::filesystem;
using vaelab::testing::MlpShape;

fs::path scratch() { return vaelab::testing::scratch_folder("vaelab-test-vae-torchscript"); }

const vaelab::Registry& registry() { return vaelab::testing::build_registry(); }

/// The plugin's defaults with `overrides` (TOML) on top, as the host resolves a config.
std::string config(const std::string& overrides) {
  const auto& record = registry().find(VL_PLUGIN_KIND_MODEL, "vae-torchscript");
  return vaelab::format_toml(vaelab::merge_tables(
      vaelab::parse_toml(record.defaults_toml, "defaults"), vaelab::parse_toml(overrides, "test")));
}

fs::path save(torch::jit::Module module, const std::string& name) {
  const fs::path file = scratch() / name;
  module.save(file.string());
  return file;
}

fs::path save_mlp(const MlpShape& shape, const std::string& name,
                  const std::map<std::string, torch::Tensor>& weights = {}) {
  return save(vaelab::testing::scripted_mlp(shape, weights), name);
}

/// Made and built as the host does: seeded first.
struct Built {
  vaelab::PluginPtr<vaelab::Backend> backend = vaelab::testing::single_thread_cpu();
  vaelab::PluginPtr<vaelab::Model> model;
  Built(const std::string& plugin, const std::string& config_text, const vaelab::ModelSpec& spec,
        uint64_t seed) {
    torch::manual_seed(seed);
    model = registry().create<vaelab::Model>(plugin, config_text);
    model->build(spec, *backend);
  }
};

Built torchscript(const fs::path& file, const std::string& extra, const vaelab::ModelSpec& spec,
                  uint64_t seed = 0) {
  return Built("vae-torchscript", config("path = \"" + file.string() + "\"\n" + extra), spec, seed);
}

Built mlp(const MlpShape& s, uint64_t seed) {
  std::string hidden;
  for (const int64_t h : s.hidden) hidden += (hidden.empty() ? "" : ", ") + std::to_string(h);
  return Built("vae-mlp", "hidden = [" + hidden + "]\nlatent = " + std::to_string(s.latent) + "\n",
               {s.channels, s.height, s.width, s.param_channels}, seed);
}

std::map<std::string, torch::Tensor> weights_of(torch::nn::Module& module) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& p : module.named_parameters(true)) out[p.key()] = p.value().detach().clone();
  return out;
}

/// name → tensor of the module's parameters, in order, for comparisons.
std::vector<std::pair<std::string, torch::Tensor>> parameters_of(torch::nn::Module& module) {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& p : module.named_parameters(true)) out.emplace_back(p.key(), p.value());
  return out;
}

}  // namespace

TEST_CASE("vae-torchscript: the scripted paper MLP has vae-mlp's parameters, counts and Θ_z",
          "[vae-torchscript]") {
  const MlpShape shape;  // 1x32x32, [512, 512], latent 16
  Built ts = torchscript(save_mlp(shape, "paper.pt"), "", {1, 32, 32, 1});
  Built reference = mlp(shape, 0);
  const auto got = parameters_of(ts.model->module());
  const auto want = parameters_of(reference.model->module());
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    INFO(want[i].first);
    REQUIRE(got[i].first == want[i].first);
    REQUIRE(got[i].second.sizes() == want[i].second.sizes());
    REQUIRE(got[i].second.requires_grad());
  }
  REQUIRE(ts.model->latent_adjacent_parameters() == reference.model->latent_adjacent_parameters());
  REQUIRE(ts.model->latent_shape() == std::vector<int64_t>{16});
  // The file record is a buffer beside the weights, not a parameter.
  const auto buffers = ts.model->module().named_buffers(true);
  REQUIRE(buffers.size() == 1);
  REQUIRE(buffers.begin()->key() == vaelab::TorchScriptVae::kFileBuffer);
  REQUIRE(buffers.begin()->value().scalar_type() == torch::kInt64);
}

TEST_CASE(
    "vae-torchscript: init seeded draws vae-mlp's initial weights bit for bit, init file keeps the "
    "file's",
    "[vae-torchscript]") {
  const MlpShape shape{{32, 16}, 4, 1, 8, 8, 1};
  const fs::path file = save_mlp(shape, "small.pt");
  for (const uint64_t seed : {3, 4}) {
    Built ts = torchscript(file, "", {1, 8, 8, 1}, seed);
    Built reference = mlp(shape, seed);
    const auto got = parameters_of(ts.model->module());
    const auto want = parameters_of(reference.model->module());
    REQUIRE(got.size() == want.size());
    for (size_t i = 0; i < got.size(); ++i) {
      INFO("seed " << seed << ": " << want[i].first);
      REQUIRE(torch::equal(got[i].second, want[i].second));
    }
  }
  const torch::jit::Module saved = torch::jit::load(file.string());
  std::map<std::string, torch::Tensor> in_file;
  for (const auto& p : saved.named_parameters(true)) in_file[p.name] = p.value;
  Built kept = torchscript(file, "init = \"file\"\n", {1, 8, 8, 1}, 3);
  for (const auto& [name, value] : parameters_of(kept.model->module())) {
    INFO(name);
    REQUIRE(torch::equal(value, in_file.at(name)));
  }
}

TEST_CASE(
    "vae-torchscript: trained from vae-mlp's initial weights, the scripted MLP gives vae-mlp's "
    "losses",
    "[vae-torchscript]") {
  // The paper's sizes, a Bernoulli likelihood, Adam, 40 steps of 32 images; the same noise for
  // both.
  const MlpShape shape;
  Built reference = mlp(shape, 11);
  Built ts = torchscript(save_mlp(shape, "same-start.pt", weights_of(reference.model->module())),
                         "init = \"file\"\n", {1, 32, 32, 1}, 99);
  for (const auto& [name, value] : parameters_of(ts.model->module())) {
    REQUIRE(torch::equal(value, *reference.model->module().named_parameters().find(name)));
  }
  const vaelab::BernoulliLikelihood likelihood;
  // Four batches of striped images, cycled: something to learn.
  torch::manual_seed(5);
  const torch::Tensor stripes =
      torch::arange(32).remainder(torch::randint(2, 6, {4, 32, 1, 1, 1})).lt(1);
  const torch::Tensor data = stripes.expand({4, 32, 1, 32, 32}).to(torch::kFloat32);
  const auto train = [&](vaelab::Model& model) {
    torch::optim::Adam adam(model.module().parameters(), torch::optim::AdamOptions(1e-3));
    std::vector<double> losses;
    for (int64_t step = 0; step < 40; ++step) {
      at::Generator noise = vaelab::shim::make_cpu_generator(static_cast<uint64_t>(step));
      adam.zero_grad();
      const torch::Tensor loss =
          -vaelab::elbo_terms(model, likelihood, data[step % 4], 1, &noise).elbo.mean();
      loss.backward();
      adam.step();
      losses.push_back(loss.item<double>());
    }
    return losses;
  };
  const std::vector<double> want = train(*reference.model);
  const std::vector<double> got = train(*ts.model);
  INFO("vae-mlp's losses: " << want.front() << " at the first step, " << want.back()
                            << " at the last");
  REQUIRE(want.back() < want.front() / 2);  // it learns
  for (size_t i = 0; i < want.size(); ++i) {
    INFO("step " << i << ": vae-mlp " << want[i] << ", vae-torchscript " << got[i]);
    REQUIRE(got[i] == Approx(want[i]).epsilon(1e-5));
  }
  for (const auto& [name, value] : parameters_of(ts.model->module())) {
    INFO(name);
    REQUIRE(torch::allclose(value, *reference.model->module().named_parameters().find(name), 1e-4,
                            1e-6));
  }
}

TEST_CASE("vae-torchscript: checkpoints, dtype and mode reach what encode and decode compute with",
          "[vae-torchscript]") {
  const MlpShape shape{{24}, 3, 1, 4, 4, 1};
  Built reference = mlp(shape, 1);
  Built ts = torchscript(save_mlp(shape, "state.pt"), "", {1, 4, 4, 1}, 2);
  const torch::Tensor x = torch::rand({5, 1, 4, 4});
  REQUIRE_FALSE(torch::allclose(ts.model->encode(x).mean, reference.model->encode(x).mean));
  // vae-mlp's weights, loaded under their names as a checkpoint is: the scripted methods use them.
  const fs::path state = scratch() / "mlp.safetensors";
  vaelab::NamedTensors saved;
  for (const auto& p : reference.model->module().named_parameters(true))
    saved.emplace_back(p.key(), p.value());
  saved.emplace_back(
      vaelab::TorchScriptVae::kFileBuffer,
      ts.model->module().named_buffers().find(vaelab::TorchScriptVae::kFileBuffer)->clone());
  vaelab::save_safetensors(state, saved);
  vaelab::load_module_state(ts.model->module(), vaelab::load_safetensors(state), state.string());
  REQUIRE(torch::equal(ts.model->encode(x).mean, reference.model->encode(x).mean));
  REQUIRE(torch::equal(ts.model->decode(torch::ones({2, 3})),
                       reference.model->decode(torch::ones({2, 3}))));

  // to(float64) reaches the scripted module: the gradient of −ELBO matches finite differences.
  ts.model->module().to(torch::kFloat64);
  const torch::Tensor x64 = torch::rand({4, 1, 4, 4}, torch::kFloat64);
  vaelab::GaussianLikelihood lik(0.3);
  const auto loss = [&] {
    at::Generator gen = vaelab::shim::make_cpu_generator(42);
    return -vaelab::elbo_terms(*ts.model, lik, x64, 3, &gen).elbo.mean();
  };
  REQUIRE(vaelab::testing::check_gradients(ts.model->module(), loss, 1e-7) >= 6);
}

TEST_CASE("vae-torchscript: train() and eval() set the scripted module's mode",
          "[vae-torchscript]") {
  torch::jit::Module m = vaelab::testing::module_named("ModeVae");
  m.register_parameter("w", torch::ones({1}), false);
  m.register_parameter("v", torch::ones({2, 2}), false);
  m.define(R"(
def encode(self, x):
    mean = torch.flatten(x, 1)[:, :2] * self.w
    if self.training:
        mean = mean + 1.0
    return mean, torch.zeros_like(mean)

def decode(self, z):
    return torch.matmul(z, self.v).view(z.size(0), 1, 1, 2)
)");
  Built ts =
      torchscript(save(m, "mode.pt"), "init = \"file\"\nlatent_adjacent = [\"w\"]\n", {1, 1, 2, 1});
  const torch::Tensor x = torch::zeros({3, 1, 1, 2});
  ts.model->module().train();
  REQUIRE(ts.model->encode(x).mean.sum().item<double>() == 6.0);
  ts.model->module().eval();
  REQUIRE(ts.model->encode(x).mean.sum().item<double>() == 0.0);
  REQUIRE(ts.model->latent_adjacent_parameters() == std::vector<std::string>{"w"});
}

TEST_CASE("vae-torchscript: buffers updated in place are vaelab's, a buffer replaced is an error",
          "[vae-torchscript]") {
  const auto counting = [](const std::string& name, const std::string& update) {
    torch::jit::Module m = vaelab::testing::module_named(name);
    m.register_parameter("weight", torch::ones({16, 4}), false);
    m.register_parameter("scale", torch::ones({1}), false);
    m.register_buffer("seen", torch::zeros({1}));
    m.define(
        "def encode(self, x):\n    if self.training:\n        " + update +
        "\n    h = torch.matmul(torch.flatten(x, 1), self.weight)\n    return h, h\n\n"
        "def decode(self, z):\n"
        "    return (torch.matmul(z, self.weight.t()) * self.scale).view(z.size(0), 1, 4, 4)\n");
    return save(m, name + ".pt");
  };
  const std::string keys = "init = \"file\"\nlatent_adjacent = [\"scale\"]\n";
  Built in_place = torchscript(counting("InPlace", "self.seen.add_(1.0)"), keys, {1, 4, 4, 1});
  for (int i = 0; i < 3; ++i) in_place.model->encode(torch::zeros({2, 1, 4, 4}));
  REQUIRE(in_place.model->module().named_buffers().find("seen")->item<double>() == 3.0);
  in_place.model->module().eval();
  in_place.model->encode(torch::zeros({2, 1, 4, 4}));
  REQUIRE(in_place.model->module().named_buffers().find("seen")->item<double>() == 3.0);

  Built replacing =
      torchscript(counting("Replacing", "self.seen = self.seen + 1.0"), keys, {1, 4, 4, 1});
  REQUIRE_THROWS_WITH(
      replacing.model->encode(torch::zeros({2, 1, 4, 4})),
      Contains("Replacing.pt") && Contains("replaced the tensor 'seen'") && Contains("in place"));
}

TEST_CASE("vae-torchscript: a file that changed since the run started is refused",
          "[vae-torchscript]") {
  const MlpShape shape{{8}, 2, 1, 4, 4, 1};
  const fs::path file = scratch() / "changing.pt";
  vaelab::testing::scripted_mlp(shape).save(file.string());
  Built first = torchscript(file, "", {1, 4, 4, 1});
  const fs::path checkpoint = scratch() / "changing.safetensors";
  vaelab::save_safetensors(checkpoint, vaelab::module_state(first.model->module()));

  // The same file again: the checkpoint loads and the model runs.
  Built same = torchscript(file, "", {1, 4, 4, 1}, 5);
  vaelab::load_module_state(same.model->module(), vaelab::load_safetensors(checkpoint),
                            checkpoint.string());
  REQUIRE(torch::equal(same.model->decode(torch::ones({1, 2})),
                       first.model->decode(torch::ones({1, 2}))));

  // Re-exported (same parameter shapes, other bytes): the checkpoint loads, and the model refuses
  // to run.
  vaelab::testing::scripted_mlp(shape).save(file.string());
  Built changed = torchscript(file, "", {1, 4, 4, 1});
  vaelab::load_module_state(changed.model->module(), vaelab::load_safetensors(checkpoint),
                            checkpoint.string());
  REQUIRE_THROWS_WITH(changed.model->encode(torch::zeros({1, 1, 4, 4})),
                      Contains("changing.pt changed since the run started") && Contains("crc32") &&
                          Contains("the checkpoint loaded into the model records"));
}

TEST_CASE("vae-torchscript: broken modules and configs are one clear error naming the file or key",
          "[vae-torchscript]") {
  const vaelab::ModelSpec spec{1, 4, 4, 1};
  const auto build = [](const fs::path& file, const std::string& extra = "",
                        const vaelab::ModelSpec& s = {1, 4, 4, 1}) { torchscript(file, extra, s); };
  const auto module_with = [](const std::string& name, const std::string& source,
                              bool parameters = true) {
    torch::jit::Module m(name);
    if (parameters) m.register_parameter("weight", torch::ones({16, 4}), false);
    m.define(source);
    return save(m, name + ".pt");
  };

  REQUIRE_THROWS_WITH(build(scratch() / "missing.pt"),
                      Contains("missing.pt") && Contains("no such file"));
  REQUIRE_THROWS_WITH(registry()
                          .create<vaelab::Model>("vae-torchscript", config(""))
                          ->build(spec, *vaelab::testing::single_thread_cpu()),
                      Contains("path"));
  std::ofstream(scratch() / "garbage.pt") << "not a zip archive";
  REQUIRE_THROWS_WITH(build(scratch() / "garbage.pt"),
                      Contains("garbage.pt") && Contains("not a TorchScript file"));

  const std::string decode =
      "def decode(self, z):\n    return torch.matmul(z, self.weight.t()).view(z.size(0), 1, 4, "
      "4)\n";
  const std::string encode =
      "def encode(self, x):\n    h = torch.matmul(torch.flatten(x, 1), self.weight)\n    return h, "
      "h\n";
  REQUIRE_THROWS_WITH(build(module_with("NoEncode", decode)), Contains("NoEncode.pt") &&
                                                                  Contains("no method encode") &&
                                                                  Contains("torch.jit.export"));
  REQUIRE_THROWS_WITH(
      build(module_with("TwoArguments", encode + "\ndef decode(self, z, y):\n    return z\n")),
      Contains("TwoArguments.pt") && Contains("decode takes 2 argument(s)"));
  REQUIRE_THROWS_WITH(
      build(module_with(
                "NoParameters",
                "def encode(self, x):\n    return torch.flatten(x, 1), torch.flatten(x, 1)\n\n"
                "def decode(self, z):\n    return z.view(z.size(0), 1, 4, 4)\n",
                false),
            "init = \"file\"\n"),
      Contains("NoParameters.pt") && Contains("no parameters"));
  REQUIRE_THROWS_WITH(build(module_with("OneOutput",
                                        "def encode(self, x):\n    return "
                                        "torch.matmul(torch.flatten(x, 1), self.weight)\n\n" +
                                            decode),
                            "init = \"file\"\n"),
                      Contains("OneOutput.pt") && Contains("encode(x) returned a Tensor") &&
                          Contains("(mean, log_var)"));
  // Bernoulli on 3 channels needs 3 parameter channels; the decoder gives 1.
  REQUIRE_THROWS_WITH(
      build(module_with("Fits", encode + "\n" + decode), "init = \"file\"\n", {1, 4, 4, 3}),
      Contains("Fits.pt") && Contains("decode(z) returned [2, 1, 4, 4]") &&
          Contains("the likelihood needs [2, 3, 4, 4]"));
  // Images of another size: the scripted matmul fails, and the message says on what.
  REQUIRE_THROWS_WITH(
      build(module_with("Sized", encode + "\n" + decode), "init = \"file\"\n", {1, 5, 5, 1}),
      Contains("Sized.pt") && Contains("encode(x) failed on x [2, 1, 5, 5]"));
  {
    torch::jit::Module m("Seedless");  // no Linear- or Conv-shaped `weight` to draw
    m.register_parameter("scale", torch::ones({1}), false);
    m.define(
        "def encode(self, x):\n    h = torch.flatten(x, 1) * self.scale\n    return h, h\n\n"
        "def decode(self, z):\n    return z.view(z.size(0), 1, 4, 4)\n");
    REQUIRE_THROWS_WITH(build(save(m, "Seedless.pt")), Contains("Seedless.pt") &&
                                                           Contains("init = \"seeded\"") &&
                                                           Contains("init = \"file\""));
  }

  const fs::path mlp_file = save_mlp({{8}, 2, 1, 4, 4, 1}, "names.pt");
  REQUIRE_THROWS_WITH(build(mlp_file, "latent_adjacent = [\"encoder_out\", \"decoder\"]\n"),
                      Contains("latent_adjacent[1]") && Contains("'decoder' names no parameter") &&
                          Contains("decoder_in.linear.weight"));
  REQUIRE_THROWS_WITH(
      registry().create<vaelab::Model>("vae-torchscript", config("latent_adjacent = []\n")),
      Contains("failed to start") && Contains("latent_adjacent"));
  REQUIRE_THROWS_WITH(
      registry().create<vaelab::Model>("vae-torchscript", config("init = \"zeros\"\n")),
      Contains("init"));
  // Θ_z by module path or by parameter name.
  Built by_name = torchscript(
      mlp_file, "latent_adjacent = [\"encoder_out.linear.weight\", \"decoder_in.\"]\n", spec);
  REQUIRE(by_name.model->latent_adjacent_parameters() ==
          std::vector<std::string>{"encoder_out.linear.weight", "decoder_in.linear.weight",
                                   "decoder_in.linear.bias"});
}

TEST_CASE(
    "vae-torchscript: a VAE exported from Python (examples/pytorch/mlp_vae.py) loads with "
    "vae-mlp's names",
    "[vae-torchscript][python]") {
  // The first Python that imports torch: the one on PATH, else Debian's (python3-torch).
  std::string python;
  for (const std::string candidate : {"python3", "/usr/bin/python3"}) {
    if (std::system((candidate + " -c 'import torch' >/dev/null 2>&1").c_str()) == 0) {
      python = candidate;
      break;
    }
  }
  if (python.empty()) {
    WARN(
        "SKIPPED: neither python3 nor /usr/bin/python3 imports torch (apt-get install "
        "python3-torch); "
        "the export from Python is not checked");
    return;
  }
  const fs::path file = scratch() / "from-python.pt";
  const std::string command =
      python + " '" VAELAB_TEST_SOURCE_DIR "/examples/pytorch/mlp_vae.py' --out '" + file.string() +
      "' --seed 4 >'" + (scratch() / "python.log").string() + "' 2>&1";
  INFO(command);
  REQUIRE(std::system(command.c_str()) == 0);
  const MlpShape shape;
  Built ts = torchscript(file, "init = \"file\"\n", {1, 32, 32, 1});
  Built reference = mlp(shape, 0);
  const auto got = parameters_of(ts.model->module());
  const auto want = parameters_of(reference.model->module());
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    REQUIRE(got[i].first == want[i].first);
    REQUIRE(got[i].second.sizes() == want[i].second.sizes());
  }
  // The same weights in vae-mlp compute the same encoder and decoder.
  for (const auto& [name, value] : got) {
    torch::NoGradGuard no_grad;
    reference.model->module().named_parameters().find(name)->copy_(value);
  }
  const torch::Tensor x = torch::rand({3, 1, 32, 32});
  REQUIRE(
      torch::allclose(ts.model->encode(x).log_var, reference.model->encode(x).log_var, 1e-5, 1e-6));
  REQUIRE(torch::allclose(ts.model->decode(torch::ones({2, 16})),
                          reference.model->decode(torch::ones({2, 16})), 1e-5, 1e-6));
}
