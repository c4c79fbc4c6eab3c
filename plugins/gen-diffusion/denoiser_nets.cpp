#include "denoiser_nets.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

#include <torch/torch.h>

#include <vaelab/error.hpp>
#include <vaelab/torch_shim.hpp>

namespace vaelab::plugins {
namespace {

std::shared_ptr<Layer> dense(Backend& backend, int64_t in, int64_t out) {
  DenseOptions o;
  o.in_features = in;
  o.out_features = out;
  return backend.dense(o);
}

std::shared_ptr<Layer> conv(Backend& backend, int64_t in, int64_t out, int64_t kernel,
                            int64_t stride = 1, int64_t padding = 0) {
  Conv2dOptions o;
  o.in_channels = in;
  o.out_channels = out;
  o.kernel_size = kernel;
  o.stride = stride;
  o.padding = padding;
  return backend.conv2d(o);
}

torch::nn::GroupNorm group_norm(int64_t channels) {
  return torch::nn::GroupNorm(torch::nn::GroupNormOptions(std::gcd(channels, int64_t{32}), channels));
}

void zero_parameters(torch::nn::Module& module) {
  torch::NoGradGuard no_grad;
  for (auto& p : module.parameters()) p.zero_();
}

constexpr double kSqrtHalf = 0.70710678118654752440;

}  // namespace

void DenoiserNet::set_dropout(double rate) {
  if (!(rate >= 0 && rate < 1)) {
    throw Error("gen-diffusion: dropout must be in [0, 1), got " + std::to_string(rate));
  }
  dropout_->rate = rate;
}

torch::Tensor DenoiserNet::drop(const DropoutState& state, bool training, const torch::Tensor& h) {
  if (!training || state.rate == 0) return h;
  if (state.generator == nullptr) {
    throw Error("gen-diffusion: dropout in training mode needs a generator (set_dropout_generator)");
  }
  const torch::Tensor keep = shim::rand(h.sizes(), h.options(), *state.generator) >= state.rate;
  return h * keep.to(h.scalar_type()) * (1.0 / (1.0 - state.rate));
}

torch::Tensor fourier_features(const torch::Tensor& c_noise, int64_t dims) {
  const int64_t half = dims / 2;
  const auto options = c_noise.options();
  const torch::Tensor freqs =
      half > 1 ? torch::exp(torch::linspace(std::log(0.25), std::log(32.0), half, options))
               : torch::full({half}, 1.0, options);
  const torch::Tensor angle = c_noise.reshape({-1, 1}) * freqs.unsqueeze(0) * (2 * M_PI);
  return torch::cat({angle.cos(), angle.sin()}, 1);
}

NoiseEmbedding::NoiseEmbedding(Backend& backend, int64_t dims) : dims_(dims) {
  if (dims < 2 || dims % 2 != 0) {
    throw Error("gen-diffusion: embedding_dims must be an even number >= 2, got " + std::to_string(dims));
  }
  fc1_ = register_module("fc1", dense(backend, dims, dims));
  fc2_ = register_module("fc2", dense(backend, dims, dims));
}

torch::Tensor NoiseEmbedding::forward(const torch::Tensor& c_noise) {
  const torch::Tensor f = fourier_features(c_noise, dims_);
  return torch::silu(fc2_->forward(torch::silu(fc1_->forward(f))));
}

// ---- MLP ----------------------------------------------------------------------------------------

MlpDenoiser::MlpDenoiser(Backend& backend, int64_t dims, int64_t width, int64_t blocks,
                         int64_t embedding_dims) {
  embedding_ = register_module("embedding", std::make_shared<NoiseEmbedding>(backend, embedding_dims));
  in_ = register_module("in", dense(backend, dims, width));
  for (int64_t b = 0; b < blocks; ++b) {
    const std::string name = "block" + std::to_string(b);
    Block block;
    block.norm = register_module(name + "_norm",
                                 torch::nn::LayerNorm(torch::nn::LayerNormOptions({width})));
    block.fc1 = register_module(name + "_fc1", dense(backend, width, width));
    block.condition = register_module(name + "_condition", dense(backend, embedding_dims, width));
    block.fc2 = register_module(name + "_fc2", dense(backend, width, width));
    blocks_.push_back(std::move(block));
  }
  out_norm_ = register_module("out_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({width})));
  out_ = register_module("out", dense(backend, width, dims));
}

torch::Tensor MlpDenoiser::forward(const torch::Tensor& x, const torch::Tensor& c_noise) {
  const torch::Tensor e = embedding_->forward(c_noise);
  torch::Tensor h = in_->forward(x.reshape({x.size(0), -1}));
  for (Block& b : blocks_) {
    torch::Tensor r = b.fc1->forward(torch::silu(b.norm->forward(h))) + b.condition->forward(e);
    h = h + b.fc2->forward(drop(*dropout_, is_training(), torch::silu(r)));
  }
  return out_->forward(torch::silu(out_norm_->forward(h))).view(x.sizes());
}

void MlpDenoiser::zero_output() { zero_parameters(*out_); }

// ---- U-Net --------------------------------------------------------------------------------------

/// GroupNorm, SiLU, 3×3 conv, + embedding projection, GroupNorm, SiLU, 3×3 conv; a 1×1 conv on
/// the skip path when the channel count changes; the sum scaled by √½.
class UNetDenoiser::ResBlock final : public torch::nn::Module {
 public:
  ResBlock(Backend& backend, int64_t in, int64_t out, int64_t embedding_dims,
           std::shared_ptr<const DropoutState> dropout)
      : dropout_(std::move(dropout)) {
    norm1_ = register_module("norm1", group_norm(in));
    conv1_ = register_module("conv1", conv(backend, in, out, 3, 1, 1));
    condition_ = register_module("condition", dense(backend, embedding_dims, out));
    norm2_ = register_module("norm2", group_norm(out));
    conv2_ = register_module("conv2", conv(backend, out, out, 3, 1, 1));
    if (in != out) skip_ = register_module("skip", conv(backend, in, out, 1));
  }
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& e) {
    torch::Tensor h = conv1_->forward(torch::silu(norm1_->forward(x)));
    h = h + condition_->forward(e).unsqueeze(-1).unsqueeze(-1);
    h = conv2_->forward(drop(*dropout_, is_training(), torch::silu(norm2_->forward(h))));
    return (h + (skip_ ? skip_->forward(x) : x)) * kSqrtHalf;
  }

 private:
  torch::nn::GroupNorm norm1_{nullptr}, norm2_{nullptr};
  std::shared_ptr<Layer> conv1_, condition_, conv2_, skip_;
  std::shared_ptr<const DropoutState> dropout_;
};

/// Single-head self-attention over all positions, residual, scaled by √½.
class UNetDenoiser::Attention final : public torch::nn::Module {
 public:
  Attention(Backend& backend, int64_t channels) {
    norm_ = register_module("norm", group_norm(channels));
    qkv_ = register_module("qkv", conv(backend, channels, 3 * channels, 1));
    proj_ = register_module("proj", conv(backend, channels, channels, 1));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    const int64_t b = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
    const auto qkv = qkv_->forward(norm_->forward(x)).reshape({b, 3, c, h * w}).unbind(1);
    const torch::Tensor weights =
        torch::softmax(torch::bmm(qkv[0].transpose(1, 2), qkv[1]) / std::sqrt(static_cast<double>(c)), -1);
    const torch::Tensor attended = torch::bmm(qkv[2], weights.transpose(1, 2)).reshape({b, c, h, w});
    return (x + proj_->forward(attended)) * kSqrtHalf;
  }

 private:
  torch::nn::GroupNorm norm_{nullptr};
  std::shared_ptr<Layer> qkv_, proj_;
};

UNetDenoiser::Stage UNetDenoiser::make_stage(Backend& backend, const std::string& name, int64_t in,
                                             int64_t out, bool attend) {
  Stage stage;
  stage.block = register_module(name, std::make_shared<ResBlock>(backend, in, out, options_.embedding_dims, dropout_));
  if (attend) stage.attention = register_module(name + "_attention", std::make_shared<Attention>(backend, out));
  return stage;
}

torch::Tensor UNetDenoiser::run(const Stage& stage, const torch::Tensor& h, const torch::Tensor& e) {
  torch::Tensor out = stage.block->forward(h, e);
  return stage.attention ? stage.attention->forward(out) : out;
}

UNetDenoiser::UNetDenoiser(Backend& backend, const UNetOptions& options) : options_(options) {
  const int64_t levels = static_cast<int64_t>(options.multipliers.size());
  const auto attends = [&](int64_t level) {
    return std::find(options.attention.begin(), options.attention.end(), level) != options.attention.end();
  };
  embedding_ = register_module("embedding", std::make_shared<NoiseEmbedding>(backend, options.embedding_dims));
  conv_in_ = register_module("conv_in", conv(backend, options.image_channels, options.channels, 3, 1, 1));
  int64_t current = options.channels;
  std::vector<int64_t> skips{current};
  for (int64_t l = 0; l < levels; ++l) {
    const int64_t out = options.channels * options.multipliers[static_cast<size_t>(l)];
    std::vector<Stage> stages;
    for (int64_t b = 0; b < options.blocks; ++b) {
      stages.push_back(make_stage(backend, "down" + std::to_string(l) + "_" + std::to_string(b),
                                  current, out, attends(l)));
      current = out;
      skips.push_back(current);
    }
    down_.push_back(std::move(stages));
    if (l + 1 < levels) {
      downsample_.push_back(register_module("downsample" + std::to_string(l),
                                            conv(backend, current, current, 3, 2, 1)));
      skips.push_back(current);
    }
  }
  middle_.push_back(make_stage(backend, "middle0", current, current, attends(levels - 1)));
  middle_.push_back(make_stage(backend, "middle1", current, current, false));
  for (int64_t l = levels - 1; l >= 0; --l) {
    const int64_t out = options.channels * options.multipliers[static_cast<size_t>(l)];
    std::vector<Stage> stages;
    for (int64_t b = 0; b <= options.blocks; ++b) {
      const int64_t skip = skips.back();
      skips.pop_back();
      stages.push_back(make_stage(backend, "up" + std::to_string(l) + "_" + std::to_string(b),
                                  current + skip, out, attends(l)));
      current = out;
    }
    up_.push_back(std::move(stages));
    if (l > 0) {
      Conv2dOptions o;
      o.in_channels = current;
      o.out_channels = current;
      o.kernel_size = 4;
      o.stride = 2;
      o.padding = 1;
      upsample_.push_back(register_module("upsample" + std::to_string(l), backend.conv_transpose2d(o)));
    }
  }
  norm_out_ = register_module("norm_out", group_norm(current));
  conv_out_ = register_module("conv_out", conv(backend, current, options.image_channels, 3, 1, 1));
}

torch::Tensor UNetDenoiser::forward(const torch::Tensor& x, const torch::Tensor& c_noise) {
  const torch::Tensor e = embedding_->forward(c_noise);
  torch::Tensor h = conv_in_->forward(x);
  std::vector<torch::Tensor> skips{h};
  for (size_t l = 0; l < down_.size(); ++l) {
    for (const Stage& stage : down_[l]) {
      h = run(stage, h, e);
      skips.push_back(h);
    }
    if (l < downsample_.size()) {
      h = downsample_[l]->forward(h);
      skips.push_back(h);
    }
  }
  for (const Stage& stage : middle_) h = run(stage, h, e);
  for (size_t u = 0; u < up_.size(); ++u) {
    for (const Stage& stage : up_[u]) {
      h = run(stage, torch::cat({h, skips.back()}, 1), e);
      skips.pop_back();
    }
    if (u < upsample_.size()) h = upsample_[u]->forward(h);
  }
  return conv_out_->forward(torch::silu(norm_out_->forward(h)));
}

void UNetDenoiser::zero_output() { zero_parameters(*conv_out_); }

}  // namespace vaelab::plugins
