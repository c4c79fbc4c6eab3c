// The plugin's one exported symbol: nothing else belongs in this file.
#include <vaelab/plugin.hpp>
#include <vaelab_plugin_defaults.h>

#include "template_vae.hpp"

VAELAB_PLUGIN(vaelab::describe<vaelab::Model, vaelab::plugins::TemplateVae>(
    "template-vae", "0.1.0", "Copy-me skeleton: a one-hidden-layer fully-connected VAE",
    VAELAB_PLUGIN_DEFAULTS_TOML))
