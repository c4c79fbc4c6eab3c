#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <vaelab/backend.hpp>
#include <vaelab/config.hpp>
#include <vaelab/model.hpp>

namespace vaelab::plugins {

/// The residual block of Table 6: x + BN(Conv3×3(ReLU(BN(Conv3×3(ReLU(x)))))), both convolutions
/// n_c → n_c, stride 1, padding 1, without bias. Submodules: conv_a, bn_a, conv_b, bn_b.
class ResidualBlock final : public torch::nn::Module {
 public:
  ResidualBlock(Backend& backend, int64_t channels, const BatchNormOptions& bn);
  /// x: [B, channels, H, W] → same shape.
  torch::Tensor forward(const torch::Tensor& x);

 private:
  std::shared_ptr<Layer> conv_a_;
  std::shared_ptr<Layer> bn_a_;  ///< with the fused ReLU before conv_b
  std::shared_ptr<Layer> conv_b_;
  std::shared_ptr<Layer> bn_b_;
};

/// The residual convolutional VAE of Xiao, Zenn & Bamler (2024, Tables 4–6) for 32×32 images
/// with 1 or 3 channels; the latent is d_z = m_z · latent_channels_per_m_z channels at 8×8.
/// The decoder has the second stride-2 upsampling the printed Table 5 lacks and a 1×1 head with
/// the likelihood's parameter channels (defaults.toml documents every choice). Θ_z = encoder_out
/// (weight, bias) and decoder_in (weight).
class ConvVae final : public Model {
 public:
  explicit ConvVae(const ConfigTable& config);
  /// Refuses (vaelab::Error) inputs other than 1 or 3 channels at 32×32.
  void build(const ModelSpec& spec, Backend& backend) override;
  /// x: [B, C, 32, 32] → mean and log-variance, each [B, d_z, 8, 8].
  Posterior encode(const torch::Tensor& x) override;
  /// z: [B, d_z, 8, 8] → [B, param_channels, 32, 32].
  torch::Tensor decode(const torch::Tensor& z) override;
  torch::nn::Module& module() override;
  std::vector<std::string> latent_adjacent_parameters() const override;
  std::vector<int64_t> latent_shape() const override { return {latent_channels_, kLatentSide, kLatentSide}; }

  /// Supported input side (height = width) and the latent's side after two stride-2 convolutions.
  static constexpr int64_t kImageSide = 32;
  static constexpr int64_t kLatentSide = 8;

 private:
  void require_built(const char* what) const;

  int64_t channels_;         ///< n_c
  int64_t latent_channels_;  ///< d_z
  BatchNormOptions bn_;      ///< eps and momentum of every BatchNorm
  ModelSpec spec_;
  std::shared_ptr<torch::nn::Module> module_;
  // Encoder (Table 4).
  std::shared_ptr<Layer> encoder_conv0_;
  std::shared_ptr<Layer> encoder_bn0_;  ///< with the fused ReLU
  std::shared_ptr<Layer> encoder_conv1_;
  std::shared_ptr<Layer> encoder_bn1_;
  std::shared_ptr<ResidualBlock> encoder_res0_;
  std::shared_ptr<ResidualBlock> encoder_res1_;
  std::shared_ptr<Layer> encoder_out_;  ///< Θ_z
  // Decoder (Table 5 with the second upsampling).
  std::shared_ptr<Layer> decoder_in_;  ///< Θ_z
  std::shared_ptr<Layer> decoder_bn0_;
  std::shared_ptr<ResidualBlock> decoder_res0_;
  std::shared_ptr<ResidualBlock> decoder_res1_;
  std::shared_ptr<Layer> decoder_up0_;
  std::shared_ptr<Layer> decoder_bn1_;  ///< with the fused ReLU
  std::shared_ptr<Layer> decoder_up1_;
  std::shared_ptr<Layer> decoder_bn2_;  ///< with the fused ReLU
  std::shared_ptr<Layer> decoder_out_;
};

}  // namespace vaelab::plugins
