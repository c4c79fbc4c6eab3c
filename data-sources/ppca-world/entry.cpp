#include <vaelab/plugin.hpp>
#include <vaelab_plugin_defaults.h>

#include "ppca_world.hpp"

VAELAB_PLUGIN(vaelab::describe<vaelab::DataSource, vaelab::plugins::PpcaWorldSource>(
    "ppca-world", "0.1.0",
    "Continuous images from a known probabilistic-PCA model, with their exact log-likelihood",
    VAELAB_PLUGIN_DEFAULTS_TOML))
