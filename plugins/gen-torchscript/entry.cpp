#include <vaelab_plugin_defaults.h>
#include <vaelab/plugin.hpp>

#include "torchscript_generator.hpp"

VAELAB_PLUGIN(vaelab::describe<vaelab::Generator, vaelab::plugins::TorchScriptGenerator>(
    "gen-torchscript", "0.1.0",
    "A model trained elsewhere, exported with torch.jit: an EDM denoiser (sampled with Heun) or a "
    "latent-to-image generator",
    VAELAB_PLUGIN_DEFAULTS_TOML))
