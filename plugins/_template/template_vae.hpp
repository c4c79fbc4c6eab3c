#pragma once

#include <memory>
#include <string>
#include <vector>

#include <vaelab/config.hpp>
#include <vaelab/model.hpp>

namespace vaelab::plugins {

/// A one-hidden-layer fully-connected VAE (defaults.toml). Θ_z = encoder_out and decoder_in.
class TemplateVae final : public Model {
 public:
  /// Reads and checks every key of defaults.toml; a bad value is a ConfigError naming the key.
  explicit TemplateVae(const ConfigTable& config);
  void build(const ModelSpec& spec, Backend& backend) override;
  Posterior encode(const torch::Tensor& x) override;
  torch::Tensor decode(const torch::Tensor& z) override;
  torch::nn::Module& module() override { return *module_; }
  std::vector<std::string> latent_adjacent_parameters() const override;
  std::vector<int64_t> latent_shape() const override { return {latent_}; }

 private:
  int64_t hidden_;
  int64_t latent_;
  ModelSpec spec_;
  std::shared_ptr<torch::nn::Module> module_;
  std::shared_ptr<Layer> encoder_hidden_;
  std::shared_ptr<Layer> encoder_out_;
  std::shared_ptr<Layer> decoder_in_;
  std::shared_ptr<Layer> decoder_out_;
};

}  // namespace vaelab::plugins
