#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <torch/types.h>

#include <vaelab/config.hpp>
#include <vaelab/gen/edm.hpp>
#include <vaelab/generator.hpp>

#include "denoiser_nets.hpp"

namespace vaelab::plugins {

/// What the network is and the space it runs in. Fixed by the first fit and saved with the
/// weights: a folder that load() reads brings its own architecture, whatever the config says.
struct DiffusionArchitecture {
  std::string space;  ///< "pixel" | "pca"
  int64_t pca_dims = 0;
  std::string network;  ///< "mlp" | "unet"
  int64_t mlp_width = 0;
  int64_t mlp_blocks = 0;
  int64_t unet_channels = 0;
  std::vector<int64_t> unet_multipliers;
  int64_t unet_blocks = 0;
  std::vector<int64_t> unet_attention;
  int64_t embedding_dims = 0;
  double sigma_data = 0;
};

/// Training hyperparameters; taken from the config on every fit, so a resumed fit may change them.
struct DiffusionTraining {
  int64_t steps = 0;
  int64_t batch_size = 0;
  double lr = 0;
  int64_t lr_warmup_steps = 0;
  double beta1 = 0, beta2 = 0;
  double ema_decay = 0;
  double p_mean = 0, p_std = 0;
  double dropout = 0;
  uint64_t seed = 0;
  bool pca_whiten = true;
};

/// The gen-diffusion generator: EDM (Karras et al. 2022) with an MLP or U-Net denoiser, trained
/// with log-normal noise levels, EDM's loss weighting, Adam and an EMA of the weights; sampled
/// with the Heun sampler from the EMA weights, one seed per image.
///
/// Folder written by save(): network.safetensors (the EMA weights sampling uses),
/// training.safetensors (the raw weights and Adam's moments, for resuming), pca.safetensors
/// (mean, components, scale; pca space only) and state.json (step counter, image shape,
/// architecture). Every file carries the step counter, so files from different saves are refused.
class DiffusionGenerator final : public Generator {
 public:
  explicit DiffusionGenerator(const ConfigTable& config);
  void attach(Backend& backend) override;
  void fit(const ImageSet& train, const FitBudget& budget, const FitProgress& progress) override;
  void save(const std::string& directory) const override;
  void load(const std::string& directory) override;
  ImageSet sample(int64_t n, uint64_t first_seed) override;
  std::string describe() const override;

 private:
  void build_networks();
  std::shared_ptr<DenoiserNet> make_network();
  void fit_pca(const torch::Tensor& pixels);
  /// uint8 images → the diffusion space ([N, C, H, W] in [−1, 1], or [N, pca_dims]).
  torch::Tensor to_space(const ImageSet& images) const;
  /// The diffusion space → uint8 pixels, rounded and clamped.
  std::vector<uint8_t> to_pixels(const torch::Tensor& z) const;
  std::vector<int64_t> space_shape() const;
  double train_step(const torch::Tensor& data);
  int64_t parameter_count() const;
  torch::Device device() const;

  DiffusionArchitecture arch_;
  DiffusionTraining training_;
  edm::SamplerSettings sampler_;
  int64_t sample_batch_ = 0;

  Backend* backend_ = nullptr;
  std::vector<int64_t> image_shape_;  ///< C, H, W; empty until fit or load
  std::shared_ptr<DenoiserNet> net_, ema_;
  std::vector<torch::Tensor> adam_m_, adam_v_;
  torch::Tensor pca_mean_, pca_components_, pca_scale_;
  int64_t step_ = 0;
  double fit_seconds_ = 0;
  double last_loss_ = 0;
};

}  // namespace vaelab::plugins
