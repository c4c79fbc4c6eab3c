#pragma once
// Shared by the tests of vae-torchscript: the paper's MLP VAE exactly as plugins/vae-mlp builds it
// (flatten → dense+ReLU per hidden width → dense to 2·latent, split into mean and log-variance;
// the decoder mirrored, its last layer giving the likelihood's parameters), as a TorchScript
// module built in C++ with torch::jit::Module::define, so no test needs Python. Its parameters
// have vae-mlp's names (encoder_0.linear.weight, ..., decoder_out.linear.bias), as
// examples/pytorch/mlp_vae.py writes them from PyTorch.

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <torch/script.h>
#include <torch/torch.h>

namespace vaelab::testing {

struct MlpShape {
  std::vector<int64_t> hidden = {512, 512};
  int64_t latent = 16;
  int64_t channels = 1;
  int64_t height = 32;
  int64_t width = 32;
  int64_t param_channels = 1;  ///< the likelihood's parameters per pixel and channel
};

struct MlpLayer {
  std::string name;
  int64_t in = 0;
  int64_t out = 0;
  bool relu = false;
};

/// vae-mlp's layers, encoder then decoder, in its order and with its names.
inline std::vector<MlpLayer> mlp_layers(const MlpShape& s) {
  std::vector<MlpLayer> layers;
  const auto n = static_cast<int64_t>(s.hidden.size());
  int64_t width = s.channels * s.height * s.width;
  for (int64_t i = 0; i < n; ++i) {
    layers.push_back({"encoder_" + std::to_string(i), width, s.hidden[i], true});
    width = s.hidden[i];
  }
  layers.push_back({"encoder_out", width, 2 * s.latent, false});
  width = s.latent;
  for (int64_t k = n - 1; k >= 0; --k) {
    layers.push_back({k == n - 1 ? "decoder_in" : "decoder_" + std::to_string(n - 1 - k), width,
                      s.hidden[k], true});
    width = s.hidden[k];
  }
  layers.push_back(
      {n == 0 ? "decoder_in" : "decoder_out", width, s.param_channels * s.height * s.width, false});
  return layers;
}

/// A module with the `training` flag every nn.Module has.
inline torch::jit::Module module_named(const std::string& name) {
  torch::jit::Module m(name);
  m.register_attribute("training", c10::BoolType::get(), true);
  return m;
}

/// The module. `weights` gives tensors by parameter name ("encoder_0.linear.weight"); the others
/// are drawn from torch's global generator (N(0, 0.05²)).
inline torch::jit::Module scripted_mlp(const MlpShape& s,
                                       const std::map<std::string, torch::Tensor>& weights = {}) {
  const auto tensor = [&](const std::string& name, std::vector<int64_t> shape) {
    const auto it = weights.find(name);
    return it != weights.end() ? it->second.detach().clone() : torch::randn(shape) * 0.05;
  };
  torch::jit::Module vae = module_named("MlpVae");
  std::string encode = "def encode(self, x):\n    h = torch.flatten(x, 1)\n";
  std::string decode = "def decode(self, z):\n    h = z\n";
  bool decoding = false;
  for (const MlpLayer& layer : mlp_layers(s)) {
    torch::jit::Module linear = module_named("Linear_" + layer.name);
    linear.register_parameter("weight",
                              tensor(layer.name + ".linear.weight", {layer.out, layer.in}), false);
    linear.register_parameter("bias", tensor(layer.name + ".linear.bias", {layer.out}), false);
    linear.define("def forward(self, x):\n    return torch.linear(x, self.weight, self.bias)\n");
    torch::jit::Module dense = module_named("Dense_" + layer.name);
    dense.register_module("linear", linear);
    dense.define("def forward(self, x):\n    return self.linear.forward(x)\n");
    vae.register_module(layer.name, dense);
    decoding = decoding || layer.name == "decoder_in";
    const std::string step = layer.relu ? "    h = torch.relu(self." + layer.name + ".forward(h))\n"
                                        : "    h = self." + layer.name + ".forward(h)\n";
    (decoding ? decode : encode) += step;
  }
  encode += "    parts = torch.chunk(h, 2, 1)\n    return parts[0], parts[1]\n";
  decode += "    return h.view(z.size(0), " + std::to_string(s.param_channels) + ", " +
            std::to_string(s.height) + ", " + std::to_string(s.width) + ")\n";
  vae.define(encode + "\n" + decode);
  return vae;
}

}  // namespace vaelab::testing
