#include <vaelab_plugin_defaults.h>
#include <vaelab/plugin.hpp>

#include "torchscript_model.hpp"

VAELAB_PLUGIN(vaelab::describe<vaelab::Model, vaelab::plugins::TorchScriptModel>(
    "vae-torchscript", "0.1.0",
    "A VAE written in PyTorch and saved with torch.jit.save, trained by vaelab",
    VAELAB_PLUGIN_DEFAULTS_TOML))
