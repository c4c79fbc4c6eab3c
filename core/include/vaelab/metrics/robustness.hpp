#pragma once

#include <array>
#include <cstdint>

#include <ATen/core/Generator.h>
#include <torch/types.h>

#include <vaelab/likelihood.hpp>
#include <vaelab/model.hpp>

namespace vaelab {

/// Weights of the five MS-SSIM scales, finest first (Wang, Simoncelli & Bovik 2003).
inline constexpr std::array<double, 5> kMsSsimWeights = {0.0448, 0.2856, 0.3001, 0.2363, 0.1333};

/// Settings of ms_ssim. The defaults are the usual MS-SSIM ones for images in [0, 1].
struct MsSsimOptions {
  /// Side of the square Gaussian window, pixels, before clamping. Default 11 (Wang et al.;
  /// `pytorch_msssim`). Kuzina et al.'s attack code passes 14: set it to match that code.
  int64_t window_size = 11;
  /// Standard deviation of the Gaussian window, pixels. Default 1.5; not rescaled when the window
  /// is clamped to a small scale.
  double sigma = 1.5;
  /// max − min of the pixel values; C1 = (0.01·data_range)², C2 = (0.03·data_range)². Default 1.
  double data_range = 1.0;
};

/// Multi-scale SSIM per image: float64 [B] on the CPU, in [0, 1] (1 for identical images).
///
/// a, b: float [B, C, H, W] of the same shape, any device, values in [0, data_range]; H and W at
/// least 16 so that the 5th scale has a pixel. Per scale j (finest first): a valid (unpadded)
/// Gaussian filter of side min(window_size, H_j, W_j), applied to each channel; the SSIM and the
/// contrast-structure maps are averaged over channels and pixels per image, then clamped at 0
/// (`normalize='relu'`). Result: cs_1^w1 · … · cs_4^w4 · ssim_5^w5 with kMsSsimWeights;
/// between scales, 2×2 average pooling (floor: 28 → 14 → 7 → 3 → 1, 32 → 16 → 8 → 4 → 2).
/// Unlike `pytorch_msssim.msssim`, whose product raises ssim_5 once per finer scale, this is the
/// published definition. Even window sizes are centred between pixels (symmetric weights).
torch::Tensor ms_ssim(const torch::Tensor& a, const torch::Tensor& b,
                      const MsSsimOptions& options = {});

/// Symmetric KL between two diagonal Gaussians with the same shape [B, latent...], in nats,
/// summed over latent dimensions: ½·KL(p‖q) + ½·KL(q‖p), shape [B]. The ½ follows Kuzina et al.'s
/// `gaus_skl`, which the attack's learning rate η was tuned with.
torch::Tensor symmetric_kl(const Posterior& p, const Posterior& q);

/// Hyperparameters of the unsupervised encoder attack (Xiao, Zenn & Bamler 2024, Table 2).
struct AttackOptions {
  int64_t images = 50;    ///< n_r: real test images attacked (the first n_r of the test set)
  int64_t restarts = 10;  ///< n_a: random restarts ("seeds") per image
  int64_t steps = 50;     ///< n_ε: gradient steps per restart
  double lr = 1.0;        ///< η: SGD learning rate on −SKL
  double radius = 0.1;    ///< δ: L∞ radius of ε, in pixel units of [0, 1] images
  /// Half-width of the uniform random start of ε, as a fraction of `radius`: ε₀ ~ U(−s·δ, s·δ)
  /// per pixel, drawn per restart from the seeded generator. Default 0.1. The SKL has a zero
  /// gradient at ε = 0 (its minimum), so an exact zero start would never move, and the
  /// restarts would all be the same; the paper does not say how its seeds randomize.
  double start = 0.1;
};

/// Table 2's attack settings by image channels: 1 (BinaryMNIST, FashionMNIST; 28 or 32 px) gives
/// n_r 50, n_a 10, n_ε 50, η 1.0, δ 0.1; 3 (CIFAR-10) gives n_r 20, n_a 10, n_ε 100, η 1.0,
/// δ 0.05. Throws vaelab::Error for any other channel count.
AttackOptions table2_attack_options(int64_t channels);

/// Outcome of attack_encoder, row k = a·n + i for restart a and image i (restart-major).
struct EncoderAttack {
  torch::Tensor clean;     ///< x_r repeated per restart: [n_a·n, C, H, W], on the device
  torch::Tensor attacked;  ///< x_a = x_r + ε in [0, 1], ‖ε‖∞ ≤ δ: [n_a·n, C, H, W], on the device
  torch::Tensor skl;       ///< symmetric_kl(q(·|x_a), q(·|x_r)) after the last step: [n_a·n], nats
};

/// The unsupervised encoder attack of Kuzina et al. (2022) on every image of `images`
/// (float [n, C, H, W] in [0, 1], any device; moved to `device`) with `options.restarts` restarts
/// each, all restarts and images in one batch. `options.images` is not used here.
///
/// ε starts uniform (AttackOptions::start); each of `options.steps` steps takes the gradient of
/// −Σ SKL(q(·|clamp(x+ε, 0, 1)), q(·|x)) with respect to ε alone, clamps it element-wise to
/// [−δ, δ], moves ε by −η·gradient (plain SGD), clamps ε to [−δ, δ] and then to [−x, 1 − x], so
/// that x + ε stays an image. The model is put in eval mode (and restored), its parameters get no
/// gradient and are not changed; autograd is enabled inside even under a NoGradGuard.
EncoderAttack attack_encoder(Model& model, const torch::Tensor& images, const AttackOptions& options,
                             at::Generator& generator, const torch::Device& device);

/// Robustness gap and its parts. MS-SSIM values are means over the n_a·n_r attacked pairs.
struct RobustnessResult {
  double robustness_gap = 0;          ///< G_r = msssim_inputs − msssim_reconstructions
  double msssim_inputs = 0;           ///< mean MS-SSIM(x_r, x_a)
  double msssim_reconstructions = 0;  ///< mean MS-SSIM(x̃_r, x̃_a)
  double skl_mean = 0;                ///< mean SKL(q(·|x_a), q(·|x_r)) after the attack, nats
  int64_t images = 0;                 ///< n_r actually attacked (≤ options.images)
  int64_t restarts = 0;               ///< n_a
};

/// Robustness gap G_r (Xiao, Zenn & Bamler 2024, Eq. 5) of `model` on the first
/// min(options.images, N) images of `test_images` (float [N, C, H, W] in [0, 1] on the CPU):
/// attack_encoder with `options`, then reconstructions x̃ = likelihood.mean(decode(z)) with z drawn
/// from q(·|x) for x_r and x_a of every pair (an independent draw per pair, also for the
/// repeated x_r), then G_r = mean MS-SSIM(x_r, x_a) − mean MS-SSIM(x̃_r, x̃_a), MS-SSIM with
/// `msssim` (defaults: MsSsimOptions). Every random number (ε starts, z draws) comes from one CPU
/// generator seeded with `seed`, so a seed gives the same draws on every device. Eval mode,
/// restored afterwards. Throws vaelab::Error for an empty or non-[N, C, H, W] test set.
RobustnessResult robustness_gap(Model& model, const Likelihood& likelihood,
                                const torch::Tensor& test_images, const AttackOptions& options,
                                uint64_t seed, const torch::Device& device,
                                const MsSsimOptions& msssim = {});

}  // namespace vaelab
