#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <torch/optim/adam.h>

#include <vaelab/config.hpp>
#include <vaelab/generator.hpp>

#include "dcgan.hpp"

namespace vaelab::plugins {

/// The gen-gan plugin: a DCGAN fitted with the non-saturating loss, optionally regularized by R1
/// or spectral norm, with an optional EMA of the generator's weights used for sampling.
///
/// Exact resume: a step's batch and latents are drawn from a generator seeded by (seed, step)
/// alone, and save() writes the weights, batch-norm statistics, spectral-norm vectors, both Adam
/// states and the step counter, so fit(N) equals fit(k), save, load, fit(N).
///
/// Folder written by save(): gan.json (step counter, fit seconds, image shape and the
/// architecture settings, checked by load()), generator.safetensors, discriminator.safetensors,
/// generator_ema.safetensors (with ema_decay > 0), optimizers.pt (both Adam states, LibTorch's
/// archive format).
class GanGenerator final : public Generator {
 public:
  explicit GanGenerator(const ConfigTable& config);
  void attach(Backend& backend) override;
  void fit(const ImageSet& train, const FitBudget& budget, const FitProgress& progress) override;
  void save(const std::string& directory) const override;
  void load(const std::string& directory) override;
  ImageSet sample(int64_t n, uint64_t first_seed) override;
  std::string describe() const override;

 private:
  struct Settings {
    int64_t latent, generator_width, discriminator_width, steps, batch_size;
    double lr_generator, lr_discriminator, beta1, beta2;
    std::string regularizer;
    double r1_gamma;
    int64_t power_iterations;
    double ema_decay;
    uint64_t seed;
    int64_t sample_batch;
  };

  /// Makes the networks and optimizers for images of this shape, initialized from the seed.
  void build(int64_t channels, int64_t height, int64_t width);
  /// One discriminator and one generator update on `real` ([B, C, H, W] in [-1, 1]) and `z`.
  /// Returns the discriminator's loss (before its update, without the R1 term).
  double train_step(const torch::Tensor& real, const torch::Tensor& z);
  void update_ema();
  DcganGenerator& sampling_network();

  Settings settings_;
  Backend* backend_ = nullptr;
  DcganShape shape_;
  bool built_ = false;
  std::shared_ptr<DcganGenerator> generator_;
  std::shared_ptr<DcganGenerator> ema_;  ///< null when ema_decay = 0
  std::shared_ptr<DcganDiscriminator> discriminator_;
  std::unique_ptr<torch::optim::Adam> generator_optimizer_;
  std::unique_ptr<torch::optim::Adam> discriminator_optimizer_;
  int64_t step_ = 0;
  double fit_seconds_ = 0;
};

}  // namespace vaelab::plugins
