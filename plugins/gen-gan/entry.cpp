#include <vaelab_plugin_defaults.h>
#include <vaelab/plugin.hpp>

#include "gan_generator.hpp"

VAELAB_PLUGIN(vaelab::describe<vaelab::Generator, vaelab::plugins::GanGenerator>(
    "gen-gan", "0.1.0",
    "DCGAN (Radford et al. 2016) with the non-saturating loss and R1 or spectral-norm "
    "regularization",
    VAELAB_PLUGIN_DEFAULTS_TOML))
