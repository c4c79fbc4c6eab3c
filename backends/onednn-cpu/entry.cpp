#include <vaelab/plugin.hpp>
#include <vaelab_plugin_defaults.h>

#include "onednn_cpu_backend.hpp"

VAELAB_PLUGIN(vaelab::describe<vaelab::Backend, vaelab::plugins::OnednnCpuBackend>(
    "onednn-cpu", "0.1.0", "oneDNN primitives on the CPU for every layer's forward and backward (f32 or bf16)",
    VAELAB_PLUGIN_DEFAULTS_TOML))
