#pragma once

#include <memory>
#include <string>
#include <vector>

#include <vaelab/config.hpp>
#include <vaelab/model.hpp>

namespace vaelab::plugins {

/// Encoder: flatten → dense+ReLU for each hidden width → dense to 2·latent (mean, log-variance).
/// Decoder: dense+ReLU from latent through the hidden widths in reverse → dense to the
/// likelihood's parameters for every pixel. Θ_z = encoder_out and decoder_in.
class MlpVae final : public Model {
 public:
  explicit MlpVae(const ConfigTable& config);
  void build(const ModelSpec& spec, Backend& backend) override;
  Posterior encode(const torch::Tensor& x) override;
  torch::Tensor decode(const torch::Tensor& z) override;
  torch::nn::Module& module() override { return *module_; }
  std::vector<std::string> latent_adjacent_parameters() const override;
  std::vector<int64_t> latent_shape() const override { return {latent_}; }

 private:
  std::vector<int64_t> hidden_;
  int64_t latent_;
  ModelSpec spec_;
  std::shared_ptr<torch::nn::Module> module_;
  std::vector<std::shared_ptr<Layer>> encoder_;  ///< the last one is encoder_out
  std::vector<std::shared_ptr<Layer>> decoder_;  ///< the first one is decoder_in
};

}  // namespace vaelab::plugins
