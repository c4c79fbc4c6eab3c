#include <vaelab/plugin.hpp>
#include <vaelab_plugin_defaults.h>

#include "torch_cpu_backend.hpp"

VAELAB_PLUGIN(vaelab::describe<vaelab::Backend, vaelab::plugins::TorchCpuBackend>(
    "torch-cpu", "0.1.0", "LibTorch ATen kernels on the CPU (the reference backend)",
    VAELAB_PLUGIN_DEFAULTS_TOML))
