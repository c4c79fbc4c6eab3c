#include "torchscript_model.hpp"

#include <set>

#include <c10/util/StringUtil.h>
#include <torch/nn/module.h>

#include <vaelab/error.hpp>
#include <vaelab/plugin.hpp>

namespace vaelab::plugins {
namespace {

/// `entry` names the parameter `name` itself, or a module holding it ("encoder_out" and
/// "encoder_out." both take "encoder_out.linear.weight", not "encoder_outer.weight").
bool takes(const std::string& entry, const std::string& name) {
  if (name == entry) return true;
  if (name.size() <= entry.size() || name.compare(0, entry.size(), entry) != 0) return false;
  return entry.back() == '.' || name[entry.size()] == '.';
}

}  // namespace

TorchScriptModel::TorchScriptModel(const ConfigTable& config)
    : path_(config.get_string("path")),
      seeded_(config.get_choice("init", {"seeded", "file"}) == "seeded"),
      latent_adjacent_(config.get_string_array("latent_adjacent")),
      latent_adjacent_key_(config.key_path("latent_adjacent")) {
  if (latent_adjacent_.empty()) {
    throw ConfigError(
        latent_adjacent_key_ +
        ": name the layers touching z (Θ_z: the encoder's last, the decoder's first)");
  }
  for (size_t i = 0; i < latent_adjacent_.size(); ++i) {
    if (latent_adjacent_[i].empty() || latent_adjacent_[i] == ".") {
      throw ConfigError(latent_adjacent_key_ + "[" + std::to_string(i) + "]: an empty name");
    }
  }
}

void TorchScriptModel::build(const ModelSpec& spec, Backend& backend) {
  if (vae_) throw Error("vae-torchscript: build() called twice");
  if (path_.empty())
    throw ConfigError("vae-torchscript: path: no TorchScript file given (model.config.path)");
  // Opened, drawn and checked on the CPU, as the built-in models' layers are made: the same seed
  // gives the same weights on every backend. The host then moves module() to the backend's
  // device; the scripted methods hold the same tensors, so they follow.
  (void)backend;
  auto vae = std::make_unique<TorchScriptVae>(path_, torch::kCPU, "vae-torchscript");
  if (seeded_ && vae->reset_parameters() == 0) {
    throw Error(
        "vae-torchscript: " + vae->path() +
        ": init = \"seeded\" draws weights of Linear and Conv layers (a parameter `weight` of 2 "
        "or more dimensions), and the module has none; set init = \"file\" to train from the "
        "file's");
  }
  latent_ = vae->check(spec);

  const auto named = vae->module().named_parameters(true);
  std::vector<std::string> names;
  std::set<std::string> taken;
  for (size_t i = 0; i < latent_adjacent_.size(); ++i) {
    bool any = false;
    for (const auto& p : named) {
      if (!takes(latent_adjacent_[i], p.key())) continue;
      any = true;
      if (taken.insert(p.key()).second) names.push_back(p.key());
    }
    if (!any) {
      std::string all;
      for (const auto& p : named) all += (all.empty() ? "" : ", ") + p.key();
      throw ConfigError(latent_adjacent_key_ + "[" + std::to_string(i) + "]: '" +
                        latent_adjacent_[i] + "' names no parameter of " + vae->path() +
                        " (it has " + all + ")");
    }
  }
  if (names.size() == named.size()) {
    throw ConfigError(latent_adjacent_key_ + ": takes every parameter of " + vae->path() +
                      "; Θ_z is the layers touching z only");
  }
  int64_t total = 0;
  for (const auto& p : named) total += p.value().numel();
  sdk::log().info(
      "vae-torchscript: {} ({} bytes, crc32 {}): {} parameters in {} tensors, latent {}, weights "
      "{}",
      vae->path(), vae->bytes(), vae->crc32(), total, named.size(), c10::str(latent_),
      seeded_ ? "drawn from the seed" : "from the file");
  latent_adjacent_names_ = std::move(names);
  vae_ = std::move(vae);
}

TorchScriptVae& TorchScriptModel::built() const {
  if (!vae_) throw Error("vae-torchscript: build() must come first");
  return *vae_;
}

Posterior TorchScriptModel::encode(const torch::Tensor& x) { return built().encode(x); }
torch::Tensor TorchScriptModel::decode(const torch::Tensor& z) { return built().decode(z); }
torch::nn::Module& TorchScriptModel::module() { return built().module(); }

}  // namespace vaelab::plugins
