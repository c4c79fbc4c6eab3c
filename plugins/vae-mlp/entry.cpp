#include <vaelab/plugin.hpp>
#include <vaelab_plugin_defaults.h>

#include "mlp_vae.hpp"

VAELAB_PLUGIN(vaelab::describe<vaelab::Model, vaelab::plugins::MlpVae>(
    "vae-mlp", "0.1.0", "Fully-connected VAE (Xiao, Zenn & Bamler 2024) for small grayscale images",
    VAELAB_PLUGIN_DEFAULTS_TOML))
