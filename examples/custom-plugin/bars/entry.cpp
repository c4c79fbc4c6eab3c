#include <vaelab/plugin.hpp>
#include <vaelab_plugin_defaults.h>

#include "bars_source.hpp"

VAELAB_PLUGIN(vaelab::describe<vaelab::DataSource, custom::BarsSource>(
    "bars", "0.1.0", "Procedural horizontal and vertical bars, 8-bit, 3 classes (third-party example)",
    VAELAB_PLUGIN_DEFAULTS_TOML))
