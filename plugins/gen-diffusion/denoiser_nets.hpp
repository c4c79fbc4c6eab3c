#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Generator.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/normalization.h>
#include <torch/types.h>

#include <vaelab/backend.hpp>

namespace vaelab::plugins {

/// The raw network F of EDM's D = c_skip·x + c_out·F(c_in·x, c_noise): maps a batch x [B, ...]
/// and noise conditions c_noise [B] to a tensor shaped like x.
///
/// Dropout (the rate set by set_dropout) acts only in training mode, on the hidden activations
/// before each residual block's second layer, as in EDM's networks. Its masks are drawn from the
/// generator set by set_dropout_generator, so a training step is a function of its own seed; with
/// no generator set, training-mode dropout is an error rather than a silent draw from the global one.
class DenoiserNet : public torch::nn::Module {
 public:
  virtual torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& c_noise) = 0;
  void set_dropout(double rate);
  double dropout() const { return dropout_->rate; }
  /// The generator the next training-mode forward passes draw their masks from (not owned; null
  /// to clear).
  void set_dropout_generator(at::Generator* generator) { dropout_->generator = generator; }

 protected:
  struct DropoutState {
    double rate = 0;
    at::Generator* generator = nullptr;
  };
  /// h with each element zeroed with probability rate and the rest scaled by 1/(1 − rate), when
  /// `training` and rate > 0; h itself otherwise.
  static torch::Tensor drop(const DropoutState& state, bool training, const torch::Tensor& h);
  std::shared_ptr<DropoutState> dropout_ = std::make_shared<DropoutState>();
};

/// c_noise [B] → [B, dims]: cos and sin of c_noise at dims/2 fixed frequencies, geometrically
/// spaced from 1/4 to 32 cycles per unit of c_noise (c_noise = ln σ / 4 spans about [−1.6, 1.1]
/// between σ = 0.002 and σ = 80).
torch::Tensor fourier_features(const torch::Tensor& c_noise, int64_t dims);

/// The noise-level embedding: Fourier features, then dense + SiLU twice.
class NoiseEmbedding final : public torch::nn::Module {
 public:
  NoiseEmbedding(Backend& backend, int64_t dims);
  torch::Tensor forward(const torch::Tensor& c_noise);

 private:
  int64_t dims_;
  std::shared_ptr<Layer> fc1_, fc2_;
};

/// A residual MLP on flattened inputs: dense in → `blocks` × [LayerNorm, SiLU, dense, + embedding
/// projection, SiLU, dense, residual add] → LayerNorm, SiLU, dense out (zero-initialised by the
/// caller's choice, see zero_output()). For PCA coordinates or small images.
class MlpDenoiser final : public DenoiserNet {
 public:
  MlpDenoiser(Backend& backend, int64_t dims, int64_t width, int64_t blocks, int64_t embedding_dims);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& c_noise) override;
  /// Sets the output layer's weights and bias to zero, so F starts at 0 and D at c_skip·x.
  void zero_output();

 private:
  struct Block {
    torch::nn::LayerNorm norm{nullptr};
    std::shared_ptr<Layer> fc1, condition, fc2;
  };
  std::shared_ptr<NoiseEmbedding> embedding_;
  std::shared_ptr<Layer> in_, out_;
  std::vector<Block> blocks_;
  torch::nn::LayerNorm out_norm_{nullptr};
};

struct UNetOptions {
  int64_t image_channels = 1;
  int64_t channels = 32;                  ///< at full resolution
  std::vector<int64_t> multipliers{1, 2, 2};  ///< per level
  int64_t blocks = 1;                     ///< residual blocks per level on the way down
  std::vector<int64_t> attention{2};      ///< levels whose blocks end in self-attention
  int64_t embedding_dims = 128;
};

/// A small U-Net (Ronneberger et al. 2015, as used for diffusion by Ho et al. 2020): residual
/// blocks with group norm and a noise-embedding projection, stride-2 convolutions down,
/// transposed convolutions up, skip connections concatenated, optional single-head
/// self-attention. Convolutions and dense layers come from the backend's layer factory; group
/// norm and the attention's softmax are plain torch operations.
class UNetDenoiser final : public DenoiserNet {
 public:
  UNetDenoiser(Backend& backend, const UNetOptions& options);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& c_noise) override;
  void zero_output();

 private:
  class ResBlock;
  class Attention;
  struct Stage {  ///< one residual block, optionally followed by attention
    std::shared_ptr<ResBlock> block;
    std::shared_ptr<Attention> attention;  ///< may be null
  };
  Stage make_stage(Backend& backend, const std::string& name, int64_t in, int64_t out, bool attend);
  torch::Tensor run(const Stage& stage, const torch::Tensor& h, const torch::Tensor& e);

  UNetOptions options_;
  std::shared_ptr<NoiseEmbedding> embedding_;
  std::shared_ptr<Layer> conv_in_, conv_out_;
  torch::nn::GroupNorm norm_out_{nullptr};
  std::vector<std::vector<Stage>> down_;        ///< per level
  std::vector<std::shared_ptr<Layer>> downsample_;  ///< per level but the last
  std::vector<Stage> middle_;
  std::vector<std::vector<Stage>> up_;          ///< per level, lowest resolution first
  std::vector<std::shared_ptr<Layer>> upsample_;    ///< after each up level but the last
};

}  // namespace vaelab::plugins
