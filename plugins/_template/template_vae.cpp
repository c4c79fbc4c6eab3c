#include "template_vae.hpp"

#include <torch/torch.h>

#include <vaelab/error.hpp>
#include <vaelab/plugin.hpp>

namespace vaelab::plugins {

TemplateVae::TemplateVae(const ConfigTable& config)
    : hidden_(config.get_int_in("hidden", 1, 1 << 20)), latent_(config.get_int_in("latent", 1, 1 << 16)) {}

void TemplateVae::build(const ModelSpec& spec, Backend& backend) {
  if (module_) throw Error("template-vae: build() called twice");
  spec_ = spec;
  module_ = std::make_shared<torch::nn::Module>("TemplateVae");
  // Layers come from the backend's factory, so the model runs on every backend.
  const auto dense = [&](const std::string& name, int64_t in, int64_t out, Activation act) {
    DenseOptions o;
    o.in_features = in;
    o.out_features = out;
    o.activation = act;
    return module_->register_module(name, backend.dense(o));
  };
  const int64_t pixels = spec.channels * spec.height * spec.width;
  encoder_hidden_ = dense("encoder_hidden", pixels, hidden_, Activation::relu);
  encoder_out_ = dense("encoder_out", hidden_, 2 * latent_, Activation::none);
  decoder_in_ = dense("decoder_in", latent_, hidden_, Activation::relu);
  decoder_out_ = dense("decoder_out", hidden_, spec.param_channels * spec.height * spec.width,
                       Activation::none);
  sdk::log().debug("template-vae: {} -> {} -> {} latent dimensions", pixels, hidden_, latent_);
}

Posterior TemplateVae::encode(const torch::Tensor& x) {
  const auto parts = encoder_out_->forward(encoder_hidden_->forward(x.flatten(1))).chunk(2, 1);
  return {parts[0], parts[1]};
}

torch::Tensor TemplateVae::decode(const torch::Tensor& z) {
  return decoder_out_->forward(decoder_in_->forward(z))
      .view({z.size(0), spec_.param_channels, spec_.height, spec_.width});
}

std::vector<std::string> TemplateVae::latent_adjacent_parameters() const {
  std::vector<std::string> names;
  for (const auto& p : module_->named_parameters(true)) {
    if (p.key().rfind("encoder_out.", 0) == 0 || p.key().rfind("decoder_in.", 0) == 0) {
      names.push_back(p.key());
    }
  }
  return names;
}

}  // namespace vaelab::plugins
