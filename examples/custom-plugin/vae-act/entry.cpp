#include <vaelab/plugin.hpp>
#include <vaelab_plugin_defaults.h>

#include "act_vae.hpp"

VAELAB_PLUGIN(vaelab::describe<vaelab::Model, custom::ActVae>(
    "vae-act", "0.1.0", "Fully-connected VAE with a configurable hidden activation (third-party example)",
    VAELAB_PLUGIN_DEFAULTS_TOML))
