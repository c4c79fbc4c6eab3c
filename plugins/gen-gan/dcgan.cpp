#include "dcgan.hpp"

#include <torch/torch.h>

#include <vaelab/error.hpp>

#include "spectral_norm.hpp"

namespace vaelab::plugins {
namespace {

constexpr double kLeakySlope = 0.2;

/// Weights (tensors of two or more dimensions) N(0, 0.02); batch-norm scales N(1, 0.02); other
/// vectors (biases) 0.
void init_layer(torch::nn::Module& layer, at::Generator& init, bool batch_norm) {
  torch::NoGradGuard no_grad;
  for (auto& p : layer.named_parameters(true)) {
    torch::Tensor t = p.value();
    const bool is_weight =
        p.key().size() >= 6 && p.key().compare(p.key().size() - 6, 6, "weight") == 0;
    if (t.dim() >= 2) {
      t.copy_(at::normal(0.0, 0.02, t.sizes(), init, t.options().device(torch::kCPU)));
    } else if (batch_norm && is_weight) {
      t.copy_(at::normal(1.0, 0.02, t.sizes(), init, t.options().device(torch::kCPU)));
    } else {
      t.zero_();
    }
  }
}

}  // namespace

int64_t DcganShape::stages_for(int64_t channels, int64_t height, int64_t width) {
  if (channels != 1 && channels != 3) {
    throw Error("gen-gan: images must have 1 or 3 channels, got " + std::to_string(channels));
  }
  int64_t stages = -1;
  for (int64_t k = 1, side = 8; side <= 128; ++k, side *= 2) {
    if (height == side && width == side) stages = k;
  }
  if (stages < 0) {
    throw Error("gen-gan: images must be square with a power-of-two side from 8 to 128, got " +
                std::to_string(height) + "x" + std::to_string(width));
  }
  return stages;
}

DcganGenerator::DcganGenerator(const DcganShape& shape, Backend& backend) : shape_(shape) {
  const int64_t stages = DcganShape::stages_for(shape.channels, shape.side, shape.side);
  first_channels_ = shape.generator_width << (stages - 1);
  DenseOptions dense;
  dense.in_features = shape.latent;
  dense.out_features = first_channels_ * 16;
  input_ = register_module("input", backend.dense(dense));
  int64_t channels = first_channels_;
  for (int64_t i = 0; i < stages; ++i) {
    BatchNormOptions bn;
    bn.channels = channels;
    bn.activation = Activation::relu;
    norms_.push_back(register_module("norm_" + std::to_string(i), backend.batch_norm2d(bn)));
    const bool last = i + 1 == stages;
    Conv2dOptions up;
    up.in_channels = channels;
    up.out_channels = last ? shape.channels : channels / 2;
    up.kernel_size = 4;
    up.stride = 2;
    up.padding = 1;
    up.bias = last;  // a bias before batch norm is cancelled by it
    upsamples_.push_back(register_module("up_" + std::to_string(i), backend.conv_transpose2d(up)));
    channels = up.out_channels;
  }
}

torch::Tensor DcganGenerator::forward(const torch::Tensor& z) {
  torch::Tensor h = input_->forward(z).view({z.size(0), first_channels_, 4, 4});
  for (size_t i = 0; i < upsamples_.size(); ++i) h = upsamples_[i]->forward(norms_[i]->forward(h));
  return torch::tanh(h);
}

void DcganGenerator::initialize(at::Generator& init) {
  init_layer(*input_, init, false);
  for (size_t i = 0; i < upsamples_.size(); ++i) {
    init_layer(*norms_[i], init, true);
    init_layer(*upsamples_[i], init, false);
  }
}

DcganDiscriminator::DcganDiscriminator(const DcganShape& shape, Backend& backend,
                                       bool spectral_norm, int64_t power_iterations,
                                       at::Generator& init)
    : spectral_norm_(spectral_norm) {
  const int64_t stages = DcganShape::stages_for(shape.channels, shape.side, shape.side);
  int64_t in = shape.channels;
  for (int64_t i = 0; i < stages; ++i) {
    Conv2dOptions down;
    down.in_channels = in;
    down.out_channels = shape.discriminator_width << i;
    down.kernel_size = 4;
    down.stride = 2;
    down.padding = 1;
    std::shared_ptr<Layer> layer;
    if (spectral_norm) {
      layer = std::make_shared<SpectralNormConv2d>(down, power_iterations, init);
    } else {
      layer = backend.conv2d(down);
    }
    convs_.push_back(register_module("down_" + std::to_string(i), layer));
    in = down.out_channels;
  }
  DenseOptions out;
  out.in_features = in * 16;
  out.out_features = 1;
  if (spectral_norm) {
    output_ = std::make_shared<SpectralNormDense>(out, power_iterations, init);
  } else {
    output_ = backend.dense(out);
  }
  register_module("output", output_);
}

torch::Tensor DcganDiscriminator::forward(const torch::Tensor& x) {
  torch::Tensor h = x;
  for (const auto& conv : convs_) h = torch::leaky_relu(conv->forward(h), kLeakySlope);
  return output_->forward(h.flatten(1)).squeeze(1);
}

void DcganDiscriminator::initialize(at::Generator& init) {
  if (spectral_norm_) return;
  for (const auto& conv : convs_) init_layer(*conv, init, false);
  init_layer(*output_, init, false);
}

}  // namespace vaelab::plugins
