#include "conv_vae.hpp"

#include <string>

#include <torch/torch.h>

#include <vaelab/error.hpp>

namespace vaelab::plugins {
namespace {

Conv2dOptions conv(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t padding, bool bias) {
  Conv2dOptions o;
  o.in_channels = in;
  o.out_channels = out;
  o.kernel_size = kernel;
  o.stride = stride;
  o.padding = padding;
  o.bias = bias;
  return o;
}

BatchNormOptions with_activation(BatchNormOptions o, Activation activation) {
  o.activation = activation;
  return o;
}

/// get_double() that also checks lo < value <= hi (lo_open) or lo <= value <= hi.
double get_double_in(const ConfigTable& config, std::string_view key, double lo, double hi, bool lo_open) {
  const double value = config.get_double(key);
  const bool ok = (lo_open ? value > lo : value >= lo) && value <= hi;
  if (!ok) {
    throw ConfigError(config.key_path(key) + ": " + std::to_string(value) + " is out of range " +
                      (lo_open ? "(" : "[") + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  }
  return value;
}

bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

}  // namespace

ResidualBlock::ResidualBlock(Backend& backend, int64_t channels, const BatchNormOptions& bn) {
  BatchNormOptions o = bn;
  o.channels = channels;
  conv_a_ = register_module("conv_a", backend.conv2d(conv(channels, channels, 3, 1, 1, false)));
  bn_a_ = register_module("bn_a", backend.batch_norm2d(with_activation(o, Activation::relu)));
  conv_b_ = register_module("conv_b", backend.conv2d(conv(channels, channels, 3, 1, 1, false)));
  bn_b_ = register_module("bn_b", backend.batch_norm2d(with_activation(o, Activation::none)));
}

torch::Tensor ResidualBlock::forward(const torch::Tensor& x) {
  torch::Tensor h = conv_a_->forward(torch::relu(x));
  h = conv_b_->forward(bn_a_->forward(h));
  return x + bn_b_->forward(h);
}

ConvVae::ConvVae(const ConfigTable& config)
    : channels_(config.get_int_in("n_c", 1, 4096)) {
  const int64_t m_z = config.get_int_in("m_z", 1, 1024);
  const int64_t per_m_z = config.get_int_in("latent_channels_per_m_z", 1, 4096);
  latent_channels_ = m_z * per_m_z;
  if (latent_channels_ > 65536) {
    throw ConfigError(config.key_path("m_z") + " × " + config.key_path("latent_channels_per_m_z") + " = " +
                      std::to_string(latent_channels_) + " latent channels; at most 65536 are supported");
  }
  bn_.momentum = get_double_in(config, "bn_momentum", 0.0, 1.0, false);
  bn_.eps = get_double_in(config, "bn_eps", 0.0, 1.0, true);
}

void ConvVae::build(const ModelSpec& spec, Backend& backend) {
  if (module_) throw Error("vae-conv: build() called twice");
  if ((spec.channels != 1 && spec.channels != 3) || spec.height != kImageSide || spec.width != kImageSide) {
    throw Error("vae-conv: supports 1- or 3-channel 32x32 images only, got " + std::to_string(spec.channels) +
                " channel(s) at " + std::to_string(spec.height) + "x" + std::to_string(spec.width) +
                " (pad 28x28 images to 32, e.g. [data.config] pad_to = 32)");
  }
  if (spec.param_channels < 1) {
    throw Error("vae-conv: the likelihood needs " + std::to_string(spec.param_channels) +
                " parameter channels; expected at least 1");
  }
  spec_ = spec;
  auto root = std::make_shared<torch::nn::Module>("ConvVae");
  const int64_t n = channels_;
  const int64_t d = latent_channels_;
  BatchNormOptions bn = bn_;
  bn.channels = n;
  const auto add = [&](const std::string& name, std::shared_ptr<Layer> layer) {
    return root->register_module(name, std::move(layer));
  };
  const auto residual = [&](const std::string& name) {
    return root->register_module(name, std::make_shared<ResidualBlock>(backend, n, bn_));
  };

  // Encoder: 32 → 16 → 8.
  encoder_conv0_ = add("encoder_conv0", backend.conv2d(conv(spec.channels, n, 4, 2, 1, false)));
  encoder_bn0_ = add("encoder_bn0", backend.batch_norm2d(with_activation(bn, Activation::relu)));
  encoder_conv1_ = add("encoder_conv1", backend.conv2d(conv(n, n, 4, 2, 1, false)));
  encoder_bn1_ = add("encoder_bn1", backend.batch_norm2d(with_activation(bn, Activation::none)));
  encoder_res0_ = residual("encoder_res0");
  encoder_res1_ = residual("encoder_res1");
  encoder_out_ = add("encoder_out", backend.conv2d(conv(n, 2 * d, 1, 1, 0, true)));

  // Decoder: 8 → 16 → 32.
  decoder_in_ = add("decoder_in", backend.conv2d(conv(d, n, 1, 1, 0, false)));
  decoder_bn0_ = add("decoder_bn0", backend.batch_norm2d(with_activation(bn, Activation::none)));
  decoder_res0_ = residual("decoder_res0");
  decoder_res1_ = residual("decoder_res1");
  decoder_up0_ = add("decoder_up0", backend.conv_transpose2d(conv(n, n, 4, 2, 1, false)));
  decoder_bn1_ = add("decoder_bn1", backend.batch_norm2d(with_activation(bn, Activation::relu)));
  decoder_up1_ = add("decoder_up1", backend.conv_transpose2d(conv(n, n, 4, 2, 1, false)));
  decoder_bn2_ = add("decoder_bn2", backend.batch_norm2d(with_activation(bn, Activation::relu)));
  decoder_out_ = add("decoder_out", backend.conv2d(conv(n, spec.param_channels, 1, 1, 0, true)));
  module_ = std::move(root);
}

void ConvVae::require_built(const char* what) const {
  if (!module_) throw Error(std::string("vae-conv: ") + what + "() called before build()");
}

torch::nn::Module& ConvVae::module() {
  require_built("module");
  return *module_;
}

Posterior ConvVae::encode(const torch::Tensor& x) {
  require_built("encode");
  torch::Tensor h = encoder_bn0_->forward(encoder_conv0_->forward(x));
  h = encoder_bn1_->forward(encoder_conv1_->forward(h));
  h = encoder_res1_->forward(encoder_res0_->forward(h));
  const auto parts = encoder_out_->forward(h).chunk(2, 1);
  return {parts[0], parts[1]};
}

torch::Tensor ConvVae::decode(const torch::Tensor& z) {
  require_built("decode");
  torch::Tensor h = decoder_bn0_->forward(decoder_in_->forward(z));
  h = decoder_res1_->forward(decoder_res0_->forward(h));
  h = decoder_bn1_->forward(decoder_up0_->forward(h));
  h = decoder_bn2_->forward(decoder_up1_->forward(h));
  return decoder_out_->forward(h);
}

std::vector<std::string> ConvVae::latent_adjacent_parameters() const {
  require_built("latent_adjacent_parameters");
  std::vector<std::string> names;
  for (const auto& p : module_->named_parameters(true)) {
    if (starts_with(p.key(), "encoder_out.") || starts_with(p.key(), "decoder_in.")) names.push_back(p.key());
  }
  return names;
}

}  // namespace vaelab::plugins
