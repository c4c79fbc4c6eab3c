#include "mlp_vae.hpp"

#include <torch/torch.h>

#include <vaelab/error.hpp>

namespace vaelab::plugins {

MlpVae::MlpVae(const ConfigTable& config)
    : hidden_(config.get_int_array("hidden")), latent_(config.get_int_in("latent", 1, 1 << 20)) {
  for (size_t i = 0; i < hidden_.size(); ++i) {
    if (hidden_[i] < 1 || hidden_[i] > (1 << 20)) {
      throw ConfigError(config.key_path("hidden") + "[" + std::to_string(i) +
                        "]: widths must be in [1, 1048576], got " + std::to_string(hidden_[i]));
    }
  }
}

void MlpVae::build(const ModelSpec& spec, Backend& backend) {
  if (module_) throw Error("vae-mlp: build() called twice");
  spec_ = spec;
  module_ = std::make_shared<torch::nn::Module>("MlpVae");
  const int64_t pixels = spec.channels * spec.height * spec.width;
  const auto add = [&](std::vector<std::shared_ptr<Layer>>& stack, const std::string& name,
                       int64_t in, int64_t out, Activation act) {
    DenseOptions o;
    o.in_features = in;
    o.out_features = out;
    o.activation = act;
    stack.push_back(module_->register_module(name, backend.dense(o)));
  };
  int64_t width = pixels;
  for (size_t i = 0; i < hidden_.size(); ++i) {
    add(encoder_, "encoder_" + std::to_string(i), width, hidden_[i], Activation::relu);
    width = hidden_[i];
  }
  add(encoder_, "encoder_out", width, 2 * latent_, Activation::none);

  width = latent_;
  for (size_t k = hidden_.size(); k-- > 0;) {
    add(decoder_, decoder_.empty() ? "decoder_in" : "decoder_" + std::to_string(hidden_.size() - 1 - k),
        width, hidden_[k], Activation::relu);
    width = hidden_[k];
  }
  add(decoder_, decoder_.empty() ? "decoder_in" : "decoder_out", width,
      spec.param_channels * spec.height * spec.width, Activation::none);
}

Posterior MlpVae::encode(const torch::Tensor& x) {
  torch::Tensor h = x.flatten(1);
  for (const auto& layer : encoder_) h = layer->forward(h);
  const auto parts = h.chunk(2, 1);
  return {parts[0], parts[1]};
}

torch::Tensor MlpVae::decode(const torch::Tensor& z) {
  torch::Tensor h = z;
  for (const auto& layer : decoder_) h = layer->forward(h);
  return h.view({z.size(0), spec_.param_channels, spec_.height, spec_.width});
}

std::vector<std::string> MlpVae::latent_adjacent_parameters() const {
  std::vector<std::string> names;
  for (const auto& p : module_->named_parameters(true)) {
    if (p.key().rfind("encoder_out.", 0) == 0 || p.key().rfind("decoder_in.", 0) == 0) {
      names.push_back(p.key());
    }
  }
  return names;
}

}  // namespace vaelab::plugins
