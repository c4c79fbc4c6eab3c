#include <vaelab_plugin_defaults.h>
#include <vaelab/plugin.hpp>

#include "npy_source.hpp"

VAELAB_PLUGIN(vaelab::describe<vaelab::DataSource, vaelab::plugins::npy::NpySource>(
    "npy", "0.1.0", "NumPy .npy image arrays (uint8 or float) with optional integer labels",
    VAELAB_PLUGIN_DEFAULTS_TOML))
