#include <vaelab/plugin.hpp>
#include <vaelab_plugin_defaults.h>

#include "torch_cuda_backend.hpp"

VAELAB_PLUGIN(vaelab::describe<vaelab::Backend, vaelab::plugins::TorchCudaBackend>(
    "torch-cuda", "0.1.0", "LibTorch CUDA kernels on one GPU, bf16 autocast-style compute",
    VAELAB_PLUGIN_DEFAULTS_TOML))
