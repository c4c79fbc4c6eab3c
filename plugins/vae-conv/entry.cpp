#include <vaelab/plugin.hpp>
#include <vaelab_plugin_defaults.h>

#include "conv_vae.hpp"

VAELAB_PLUGIN(vaelab::describe<vaelab::Model, vaelab::plugins::ConvVae>(
    "vae-conv", "0.1.0",
    "Residual convolutional VAE (Xiao, Zenn & Bamler 2024, Tables 4-6) for 32x32 images with an 8x8 latent",
    VAELAB_PLUGIN_DEFAULTS_TOML))
