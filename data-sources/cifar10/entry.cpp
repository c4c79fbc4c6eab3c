#include <vaelab_plugin_defaults.h>
#include <vaelab/plugin.hpp>

#include "cifar10_source.hpp"

VAELAB_PLUGIN(vaelab::describe<vaelab::DataSource, vaelab::plugins::cifar10::Cifar10Source>(
    "cifar10", "0.1.0", "CIFAR-10 binary batches: 32x32 RGB images in 10 classes",
    VAELAB_PLUGIN_DEFAULTS_TOML))
