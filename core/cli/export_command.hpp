#pragma once
// `vaelab export RUN_DIR --torchscript OUT.pt`.

#include <string>

namespace vaelab::cli {

/// Writes the trained TorchScript module of a vae-torchscript run: the run's .pt file (checked
/// against the size and CRC-32 its checkpoint records) with the weights of
/// checkpoints/last.safetensors, saved for torch.jit.load in eval mode on the CPU. Reads the file
/// back and compares every tensor before it reports success.
int export_torchscript(const std::string& run_dir, const std::string& out_file);

}  // namespace vaelab::cli
