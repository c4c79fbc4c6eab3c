#include <vaelab/plugin.hpp>
#include <vaelab_plugin_defaults.h>

#include "pool_generator.hpp"

VAELAB_PLUGIN(vaelab::describe<vaelab::Generator, vaelab::plugins::PoolGenerator>(
    "gen-pool", "0.1.0", "Serves the images of an existing sample pool file; not fitted",
    VAELAB_PLUGIN_DEFAULTS_TOML))
