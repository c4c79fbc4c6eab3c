#include "spectral_norm.hpp"

#include <algorithm>

#include <torch/torch.h>

namespace vaelab::plugins {
namespace {

constexpr double kEps = 1e-12;

torch::Tensor activate(const torch::Tensor& y, Activation activation) {
  return activation == Activation::relu ? torch::relu(y) : y;
}

torch::Tensor unit_vector(int64_t n, at::Generator& gen) {
  torch::Tensor u = at::randn({n}, gen, torch::TensorOptions().dtype(torch::kFloat32));
  return u / u.norm().clamp_min(kEps);
}

}  // namespace

torch::Tensor spectrally_normalized(const torch::Tensor& weight, torch::Tensor& u,
                                    int64_t iterations, bool training) {
  const torch::Tensor w = weight.reshape({weight.size(0), -1});
  torch::Tensor v, u_used;
  {
    torch::NoGradGuard no_grad;
    const torch::Tensor wd = w.detach();
    torch::Tensor uu = u;
    const int64_t n = training ? std::max<int64_t>(iterations, 1) : 1;
    for (int64_t i = 0; i < n; ++i) {
      v = torch::mv(wd.t(), uu);
      v = v / v.norm().clamp_min(kEps);
      if (!training) break;  // eval mode: v from the stored u, u unchanged
      uu = torch::mv(wd, v);
      uu = uu / uu.norm().clamp_min(kEps);
    }
    if (training) {
      u.copy_(uu);
    } else {
      uu = u.clone();
    }
    // σ uses this call's copy of u: a later forward (the discriminator runs on real and on
    // generated images before one backward) updates the buffer in place.
    u_used = uu;
  }
  const torch::Tensor sigma = torch::dot(u_used, torch::mv(w, v));
  return weight / sigma;
}

SpectralNormConv2d::SpectralNormConv2d(const Conv2dOptions& options, int64_t power_iterations,
                                       at::Generator& init)
    : options_(options), iterations_(power_iterations) {
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat32);
  weight_ = register_parameter("weight", at::normal(0.0, 0.02,
                                                    {options.out_channels, options.in_channels,
                                                     options.kernel_size, options.kernel_size},
                                                    init, f32));
  if (options.bias) bias_ = register_parameter("bias", torch::zeros({options.out_channels}, f32));
  u_ = register_buffer("u", unit_vector(options.out_channels, init));
}

torch::Tensor SpectralNormConv2d::forward(const torch::Tensor& x) {
  const torch::Tensor w = spectrally_normalized(weight_, u_, iterations_, is_training());
  return activate(torch::conv2d(x, w, bias_, options_.stride, options_.padding),
                  options_.activation);
}

SpectralNormDense::SpectralNormDense(const DenseOptions& options, int64_t power_iterations,
                                     at::Generator& init)
    : options_(options), iterations_(power_iterations) {
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat32);
  weight_ = register_parameter(
      "weight", at::normal(0.0, 0.02, {options.out_features, options.in_features}, init, f32));
  if (options.bias) bias_ = register_parameter("bias", torch::zeros({options.out_features}, f32));
  u_ = register_buffer("u", unit_vector(options.out_features, init));
}

torch::Tensor SpectralNormDense::forward(const torch::Tensor& x) {
  const torch::Tensor w = spectrally_normalized(weight_, u_, iterations_, is_training());
  return activate(torch::linear(x, w, bias_), options_.activation);
}

}  // namespace vaelab::plugins
