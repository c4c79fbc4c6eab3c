#include <vaelab/plugin.hpp>
#include <vaelab_plugin_defaults.h>

#include "diffusion_generator.hpp"

VAELAB_PLUGIN(vaelab::describe<vaelab::Generator, vaelab::plugins::DiffusionGenerator>(
    "gen-diffusion", "0.1.0",
    "EDM diffusion model (Karras et al. 2022) fitted to the training images: MLP or U-Net "
    "denoiser, pixel or PCA space, Heun sampler with one seed per image",
    VAELAB_PLUGIN_DEFAULTS_TOML))
