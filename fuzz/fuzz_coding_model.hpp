#pragma once
// A small deterministic stand-in for a VAE, for the compressed-file fuzz target and its seeds
// (make_seeds.cpp): the coder's arithmetic is exercised in full without LibTorch. The posterior
// mean is a fixed linear function of the image, the likelihood parameters one of z.

#include <cmath>
#include <cstdint>

#include <vaelab/compress/bbans.hpp>

namespace vaelab::fuzz {

class StandInModel final : public compress::CodingModel {
 public:
  explicit StandInModel(const compress::CodecSettings& s) : s_(s) {}
  void posterior(const uint8_t* x, int64_t n, float* mean, float* log_var) override {
    const int64_t d = s_.latent_dims, image = s_.image_symbols();
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t j = 0; j < d; ++j) {
        double acc = 0;
        for (int64_t p = 0; p < image; ++p) acc += (((p * 7 + j * 3) % 5) - 2.0) * x[i * image + p] / 64.0;
        mean[i * d + j] = static_cast<float>(acc / std::sqrt(static_cast<double>(image)));
        log_var[i * d + j] = static_cast<float>(-1.0 - 0.25 * static_cast<double>(j % 8));
      }
    }
  }
  void likelihood_params(const float* z, int64_t n, float* params) override {
    const int64_t d = s_.latent_dims, per = s_.param_channels() * s_.height * s_.width;
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t q = 0; q < per; ++q) {
        double acc = 0.1 * static_cast<double>((q % 11) - 5);
        for (int64_t j = 0; j < d; ++j) acc += static_cast<double>(((q + 2 * j) % 7) - 3) * 0.4 * z[i * d + j];
        params[i * per + q] = static_cast<float>(acc);
      }
    }
  }

 private:
  compress::CodecSettings s_;
};

}  // namespace vaelab::fuzz
