#pragma once

#include <memory>
#include <string>
#include <vector>

#include <vaelab/config.hpp>
#include <vaelab/io/torchscript_vae.hpp>
#include <vaelab/model.hpp>

namespace vaelab::plugins {

/// The vae-torchscript model: a TorchScript module's encode(x) and decode(z) (vaelab::
/// TorchScriptVae), its parameters trained by vaelab. build() opens the file on the CPU (the host
/// moves module() to the backend's device), draws the weights from the seed (init = "seeded") or
/// keeps the file's (init = "file"),
/// runs both methods once on the data's shape and resolves Θ_z from the `latent_adjacent` entries.
/// The architecture is the file's: a likelihood that needs another param_channels than its
/// decode gives is refused in build().
class TorchScriptModel final : public Model {
 public:
  explicit TorchScriptModel(const ConfigTable& config);
  void build(const ModelSpec& spec, Backend& backend) override;
  Posterior encode(const torch::Tensor& x) override;
  torch::Tensor decode(const torch::Tensor& z) override;
  torch::nn::Module& module() override;
  std::vector<std::string> latent_adjacent_parameters() const override {
    return latent_adjacent_names_;
  }
  std::vector<int64_t> latent_shape() const override { return latent_; }

 private:
  TorchScriptVae& built() const;

  std::string path_;
  bool seeded_;
  std::vector<std::string> latent_adjacent_;  ///< the config's entries
  std::string latent_adjacent_key_;           ///< their key path, for messages
  std::unique_ptr<TorchScriptVae> vae_;
  std::vector<int64_t> latent_;
  std::vector<std::string> latent_adjacent_names_;  ///< resolved parameter names
};

}  // namespace vaelab::plugins
