#include <vaelab/plugin.hpp>
#include <vaelab_plugin_defaults.h>

#include "idx_source.hpp"

VAELAB_PLUGIN(vaelab::describe<vaelab::DataSource, vaelab::plugins::IdxSource>(
    "idx", "0.1.0", "MNIST-family IDX image and label files, raw or gzip-compressed",
    VAELAB_PLUGIN_DEFAULTS_TOML))
