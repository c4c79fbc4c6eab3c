#pragma once
// The augmentation baselines of Xiao, Zenn & Bamler (2024, Tables 8–10): subsets of the ADA
// pipeline (Karras et al. 2020), applied to whole batches with torch ops, each augmentation
// independently per image with probability p, from a seeded generator.

#include <cstdint>
#include <string>
#include <vector>

#include <ATen/core/Generator.h>
#include <torch/types.h>

#include <vaelab/config.hpp>

namespace vaelab {

/// The values images must keep after augmentation, so that the likelihood still applies.
enum class PixelGrid {
  continuous,  ///< clamp to [0, 1] (fixed-variance Gaussian)
  bytes,       ///< clamp and round to the 1/255 grid (mixture of logistics)
  binary,      ///< threshold at 1/2 (Bernoulli on binarized data)
};

struct AugmentSettings {
  double p = 0.12;  ///< probability of each enabled augmentation, per image
  bool xflip = false;
  bool yflip = false;
  int64_t translate_px = 0;        ///< integer shift, uniform in [−t, t] per axis (0 = off)
  double scale_std = 0;            ///< isotropic scale 2^(N(0,1)·std)
  double rotate_deg = 0;           ///< rotation uniform in [−d, d] degrees
  double aniso_std = 0;            ///< anisotropic scale 2^(±N(0,1)·std) along x / y
  double aniso_rotate_prob = 0;    ///< probability the anisotropic scale acts in a random frame
  double brightness_std = 0;       ///< additive N(0, std²)
  double contrast_std = 0;         ///< multiplicative 2^(N(0,1)·std) around the image mean
  double hue_max = 0;              ///< rotation about the grey axis, uniform in [−h, h] radians (RGB)
  double saturation_std = 0;       ///< chroma scaled by 2^(N(0,1)·std) (RGB)

  /// The regime's preset ("augment-naive": Table 8; "augment-tuned": Table 9 for one channel,
  /// Table 10 for three), then the [train.augment] keys of `table` that are not 0 / empty.
  static AugmentSettings from_config(const std::string& regime, int64_t channels,
                                     const ConfigTable& table);
  /// Names of the enabled augmentations, for the log.
  std::vector<std::string> enabled() const;
};

/// Applies the settings to a float batch [B, C, H, W] in [0, 1]; returns a new batch.
/// Geometric augmentations resample with bilinear interpolation and reflection at the borders.
torch::Tensor augment_batch(const torch::Tensor& batch, const AugmentSettings& settings,
                            PixelGrid grid, at::Generator& gen);

}  // namespace vaelab
