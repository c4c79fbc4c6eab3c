#include "act_vae.hpp"

#include <torch/torch.h>

#include <vaelab/error.hpp>
#include <vaelab/plugin.hpp>

namespace custom {

ActVae::ActVae(const vaelab::ConfigTable& config)
    : hidden_(config.get_int_array("hidden")),
      latent_(config.get_int_in("latent", 1, 1 << 16)),
      activation_(config.get_choice("activation", {"relu", "leaky_relu", "elu", "silu", "softplus", "tanh"})),
      negative_slope_(config.get_double("negative_slope")) {
  for (size_t i = 0; i < hidden_.size(); ++i) {
    if (hidden_[i] < 1 || hidden_[i] > (1 << 20)) {
      throw vaelab::ConfigError(config.key_path("hidden") + "[" + std::to_string(i) +
                                "]: widths must be in [1, 1048576], got " + std::to_string(hidden_[i]));
    }
  }
  if (!(negative_slope_ >= 0 && negative_slope_ <= 1)) {
    throw vaelab::ConfigError(config.key_path("negative_slope") + ": must be in [0, 1], got " +
                              std::to_string(negative_slope_));
  }
}

void ActVae::build(const vaelab::ModelSpec& spec, vaelab::Backend& backend) {
  if (module_) throw vaelab::Error("vae-act: build() called twice");
  spec_ = spec;
  module_ = std::make_shared<torch::nn::Module>("ActVae");
  // ReLU rides in the backend's fused layer; every other activation follows a plain affine layer.
  const vaelab::Activation hidden_act =
      activation_ == "relu" ? vaelab::Activation::relu : vaelab::Activation::none;
  const auto add = [&](std::vector<std::shared_ptr<vaelab::Layer>>& stack, const std::string& name,
                       int64_t in, int64_t out, vaelab::Activation act) {
    vaelab::DenseOptions o;
    o.in_features = in;
    o.out_features = out;
    o.activation = act;
    stack.push_back(module_->register_module(name, backend.dense(o)));
  };
  int64_t width = spec.channels * spec.height * spec.width;
  for (size_t i = 0; i < hidden_.size(); ++i) {
    add(encoder_, "encoder_" + std::to_string(i), width, hidden_[i], hidden_act);
    width = hidden_[i];
  }
  add(encoder_, "encoder_out", width, 2 * latent_, vaelab::Activation::none);
  width = latent_;
  for (size_t k = hidden_.size(); k-- > 0;) {
    add(decoder_, decoder_.empty() ? "decoder_in" : "decoder_" + std::to_string(hidden_.size() - 1 - k),
        width, hidden_[k], hidden_act);
    width = hidden_[k];
  }
  add(decoder_, decoder_.empty() ? "decoder_in" : "decoder_out", width,
      spec.param_channels * spec.height * spec.width, vaelab::Activation::none);
  vaelab::sdk::log().info("vae-act: {} hidden layers, {} activation, {} latent dimensions",
                          hidden_.size(), activation_, latent_);
}

torch::Tensor ActVae::activate(const torch::Tensor& x) const {
  if (activation_ == "relu") return x;  // already applied by the fused layer
  if (activation_ == "leaky_relu") return torch::leaky_relu(x, negative_slope_);
  if (activation_ == "elu") return torch::elu(x);
  if (activation_ == "silu") return torch::silu(x);
  if (activation_ == "softplus") return torch::softplus(x);
  return torch::tanh(x);
}

vaelab::Posterior ActVae::encode(const torch::Tensor& x) {
  torch::Tensor h = x.flatten(1);
  for (size_t i = 0; i + 1 < encoder_.size(); ++i) h = activate(encoder_[i]->forward(h));
  const auto parts = encoder_.back()->forward(h).chunk(2, 1);
  return {parts[0], parts[1]};
}

torch::Tensor ActVae::decode(const torch::Tensor& z) {
  torch::Tensor h = z;
  for (size_t i = 0; i + 1 < decoder_.size(); ++i) h = activate(decoder_[i]->forward(h));
  h = decoder_.back()->forward(h);
  return h.view({z.size(0), spec_.param_channels, spec_.height, spec_.width});
}

std::vector<std::string> ActVae::latent_adjacent_parameters() const {
  std::vector<std::string> names;
  for (const auto& p : module_->named_parameters(true)) {
    if (p.key().rfind("encoder_out.", 0) == 0 || p.key().rfind("decoder_in.", 0) == 0) {
      names.push_back(p.key());
    }
  }
  return names;
}

}  // namespace custom
