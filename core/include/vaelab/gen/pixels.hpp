#pragma once
// Conversions between stored 8-bit images and the float ranges networks work in: [0, 1] (the
// likelihoods' means, image grids) and [−1, 1] (the generators). One rounding rule everywhere:
// scale, round half away from zero, clamp to 0..255. Part of vaelab::core.

#include <torch/types.h>

#include <vaelab/data_source.hpp>

namespace vaelab {

/// The 8-bit pixels of `images` as a uint8 tensor [N, C, H, W] on the CPU: a view of
/// images.pixels (not a copy), valid while `images` lives unchanged.
torch::Tensor pixel_tensor(const ImageSet& images);

/// uint8 pixels (any shape, any device) → float32 in [−1, 1]: p / 127.5 − 1.
torch::Tensor bytes_to_signed_unit(const torch::Tensor& bytes);

/// Float images in [−1, 1] (any shape, any device) → contiguous uint8 on the CPU:
/// round((x + 1) · 127.5) clamped to 0..255.
torch::Tensor signed_unit_to_bytes(const torch::Tensor& x);

/// Float images in [0, 1] (any shape, any device) → contiguous uint8 on the CPU:
/// round(x · 255) clamped to 0..255.
torch::Tensor unit_to_bytes(const torch::Tensor& x);

/// Float images [B, C, H, W] in [0, 1] → an 8-bit ImageSet (as unit_to_bytes; values outside
/// [0, 1], which a continuous likelihood's mean can take, are clamped).
ImageSet unit_to_image_set(const torch::Tensor& images);

}  // namespace vaelab
