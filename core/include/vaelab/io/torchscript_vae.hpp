#pragma once
// A VAE written in PyTorch and saved with torch.jit.save, opened for training by vaelab: its
// parameters and buffers appear in an ordinary torch::nn::Module under the TorchScript module's
// own names (the same tensors, not copies), so vaelab's optimizer, checkpoints
// (load_module_state), data-parallel broadcasts and to(device) act on what the scripted
// encode/decode compute with. Used by the vae-torchscript plugin and by `vaelab export`.

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <torch/nn/module.h>
#include <torch/types.h>

#include <vaelab/model.hpp>

namespace vaelab {

class TorchScriptVae {
 public:
  /// The buffer, at the top of module(), that records the file the weights belong to: int64
  /// [bytes, CRC-32]. It travels in checkpoints; once a checkpoint is loaded into module(),
  /// encode()/decode() refuse to run if the file is not the one recorded.
  static constexpr const char* kFileBuffer = "vaelab_torchscript_file";

  /// Reads `file` (its size and CRC-32 from the same bytes), loads it as TorchScript on `device`
  /// and checks it: methods encode(x) and decode(z), one argument each, and at least one
  /// parameter. `who` starts every error message (e.g. "vae-torchscript"). Throws vaelab::Error
  /// naming the file.
  TorchScriptVae(const std::filesystem::path& file, torch::Device device, const std::string& who);
  ~TorchScriptVae();
  TorchScriptVae(const TorchScriptVae&) = delete;
  TorchScriptVae& operator=(const TorchScriptVae&) = delete;

  /// The absolute path of the file, its size and its CRC-32 (8 hex digits).
  const std::string& path() const;
  uint64_t bytes() const;
  std::string crc32() const;

  /// Every parameter and buffer of the TorchScript module under its own dotted name, plus
  /// kFileBuffer. train()/eval() on it set the TorchScript module's mode too.
  torch::nn::Module& module();

  /// Runs encode(x) and decode(mean) once, in eval mode without gradients, on zeros shaped like
  /// the spec's images (batch of 2), checks what comes back and returns the latent shape (the
  /// mean's shape without the batch dimension). From then on every call is checked against it
  /// and against spec.param_channels. Throws vaelab::Error naming the file and the shapes.
  std::vector<int64_t> check(const ModelSpec& spec);

  /// x [B, C, H, W] → (mean, log_var), each [B, latent...].
  Posterior encode(const torch::Tensor& x);
  /// z [B, latent...] → [B, param_channels, H, W].
  torch::Tensor decode(const torch::Tensor& z);

  /// Re-initialises, from torch's global generator and in the module's parameter order, every
  /// parameter named `weight` with two or more dimensions as PyTorch initialises nn.Linear and
  /// nn.Conv*d (He et al. 2015 uniform with a = √5, fan-in from dims 1...), and the `bias`
  /// beside such a weight uniformly in ±1/√fan_in. Other parameters and all buffers keep the
  /// file's values. Returns how many tensors were drawn; 0 means none matched.
  int64_t reset_parameters();

  /// Throws vaelab::Error when kFileBuffer (e.g. loaded from a checkpoint) records another file
  /// than the one opened: "<who>: FILE changed since the run started: ...". `source` names where
  /// the record came from.
  void require_same_file(const std::string& source) const;

  /// Writes the TorchScript module with its current weights (CPU, eval mode) to `file`, through
  /// a temporary file renamed into place. Python loads it with torch.jit.load.
  void save(const std::filesystem::path& file);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace vaelab
