#pragma once

#include <memory>
#include <string>
#include <vector>

#include <vaelab/config.hpp>
#include <vaelab/model.hpp>

namespace custom {

/// An MLP VAE (defaults.toml) whose hidden layers use a configurable activation. ReLU is fused
/// into the backend's dense layer; the others are applied after it with ATen.
class ActVae final : public vaelab::Model {
 public:
  explicit ActVae(const vaelab::ConfigTable& config);
  void build(const vaelab::ModelSpec& spec, vaelab::Backend& backend) override;
  vaelab::Posterior encode(const torch::Tensor& x) override;
  torch::Tensor decode(const torch::Tensor& z) override;
  torch::nn::Module& module() override { return *module_; }
  std::vector<std::string> latent_adjacent_parameters() const override;
  std::vector<int64_t> latent_shape() const override { return {latent_}; }

 private:
  torch::Tensor activate(const torch::Tensor& x) const;

  std::vector<int64_t> hidden_;
  int64_t latent_;
  std::string activation_;
  double negative_slope_;
  vaelab::ModelSpec spec_;
  std::shared_ptr<torch::nn::Module> module_;
  std::vector<std::shared_ptr<vaelab::Layer>> encoder_;  ///< the last one is encoder_out
  std::vector<std::shared_ptr<vaelab::Layer>> decoder_;  ///< the first one is decoder_in
};

}  // namespace custom
