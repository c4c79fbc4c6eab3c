// The coder with a LibTorch model (docs/compression.md): a small randomly initialized MLP VAE
// through TorchCodingModel round trips byte for byte, for Bernoulli and mixture-of-logistics
// images; the weight and numerics hashes see a changed weight.

#include <random>

#include <catch2/catch.hpp>
#include <torch/torch.h>

#include <vaelab/compress/bbans.hpp>
#include <vaelab/compress/run_codec.hpp>
#include <vaelab/model.hpp>

using namespace vaelab;

namespace {

/// x → 32 → (mean, log-variance) of `latent`; z → 32 → params.
class TinyVae final : public Model {
 public:
  TinyVae(int64_t latent, int64_t params_per_image) : latent_(latent), out_(params_per_image) {}
  void build(const ModelSpec& spec, Backend&) override { spec_ = spec; }
  /// What build() does, without a backend: plain LibTorch layers.
  void init(const ModelSpec& spec) {
    spec_ = spec;
    const int64_t pixels = spec.channels * spec.height * spec.width;
    torch::manual_seed(3);
    enc1_ = module_.register_module("enc1", torch::nn::Linear(pixels, 32));
    enc2_ = module_.register_module("enc2", torch::nn::Linear(32, 2 * latent_));
    dec1_ = module_.register_module("dec1", torch::nn::Linear(latent_, 32));
    dec2_ = module_.register_module("dec2", torch::nn::Linear(32, out_));
    module_.eval();
  }
  Posterior encode(const torch::Tensor& x) override {
    const auto parts = enc2_->forward(torch::relu(enc1_->forward(x.flatten(1)))).chunk(2, 1);
    return {parts[0], parts[1]};
  }
  torch::Tensor decode(const torch::Tensor& z) override {
    return dec2_->forward(torch::relu(dec1_->forward(z))).view({z.size(0), spec_.param_channels, spec_.height, spec_.width});
  }
  torch::nn::Module& module() override { return module_; }
  std::vector<std::string> latent_adjacent_parameters() const override { return {}; }
  std::vector<int64_t> latent_shape() const override { return {latent_}; }
  torch::nn::Linear dec2() { return dec2_; }

 private:
  int64_t latent_, out_;
  ModelSpec spec_;
  torch::nn::Module module_;
  torch::nn::Linear enc1_{nullptr}, enc2_{nullptr}, dec1_{nullptr}, dec2_{nullptr};
};

compress::CodecSettings settings_for(compress::LikelihoodKind kind) {
  compress::CodecSettings s;
  s.likelihood = kind;
  s.mixtures = kind == compress::LikelihoodKind::mol ? 3 : 0;
  s.channels = 1;
  s.height = 6;
  s.width = 6;
  s.latent_dims = 4;
  s.lanes = 5;
  return s;
}

}  // namespace

TEST_CASE("a LibTorch VAE codes and decodes images byte for byte through TorchCodingModel", "[compress]") {
  torch::set_num_threads(1);
  for (auto kind : {compress::LikelihoodKind::bernoulli, compress::LikelihoodKind::mol}) {
    const compress::CodecSettings s = settings_for(kind);
    TinyVae vae(s.latent_dims, s.param_channels() * s.height * s.width);
    vae.init(ModelSpec{s.channels, s.height, s.width, s.param_channels()});
    const bool binary = kind == compress::LikelihoodKind::bernoulli;
    compress::TorchCodingModel coding(vae, s, binary);

    std::mt19937 rng(1);
    const int64_t count = 23;  // 4 full batches of 5 and one of 3
    std::vector<uint8_t> images(static_cast<size_t>(count * s.image_symbols()));
    for (auto& v : images) v = static_cast<uint8_t>(binary ? rng() % 2 : rng() % 256);
    compress::CodingStats stats;
    const auto lanes = compress::bbans_encode(s, coding, images.data(), count, 4, &stats);
    REQUIRE(lanes.size() == 5);
    CHECK(stats.likelihood_bits > 0);
    std::vector<uint8_t> back(images.size());
    compress::bbans_decode(s, coding, lanes, count, 4, back.data());
    CHECK(back == images);

    const uint64_t weights = compress::weights_hash(vae.module());
    const uint64_t numerics = compress::numerics_hash(coding, s, s.lanes);
    CHECK(compress::numerics_hash(coding, s, s.lanes) == numerics);
    {
      torch::NoGradGuard no_grad;
      vae.dec2()->weight[0][0].add_(1e-3f);
    }
    CHECK(compress::weights_hash(vae.module()) != weights);
    CHECK(compress::numerics_hash(coding, s, s.lanes) != numerics);
    // Decoding with the changed weights does not give the images back: it is refused.
    CHECK_THROWS_AS(compress::bbans_decode(s, coding, lanes, count, 4, back.data()), compress::ChainError);
  }
}
