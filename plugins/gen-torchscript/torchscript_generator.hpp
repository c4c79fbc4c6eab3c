#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <torch/script.h>

#include <vaelab/config.hpp>
#include <vaelab/gen/edm.hpp>
#include <vaelab/generator.hpp>

namespace vaelab::plugins {

/// The gen-torchscript plugin: samples a TorchScript module trained elsewhere.
///
/// kind = "denoiser": forward(x, sigma) → D(x, σ), driven by the EDM Heun sampler
/// (vaelab::edm::heun_sample). kind = "generator": forward(z) → images, z [B, latent_shape...].
///
/// fit() trains nothing: it loads the file, runs it once on the training data's shape (a wrong
/// file, a missing or wrongly typed forward, or a wrong output shape is a vaelab::Error naming
/// the file) and records the file's path, size and CRC-32; it reports progress once, as
/// (0, 0, 0), since there are no steps. save() writes that record
/// (torchscript.json); load() reads it, loads the file (the config's path, or else the recorded
/// one) and refuses it when its size or CRC-32 differ from the record.
class TorchScriptGenerator final : public Generator {
 public:
  explicit TorchScriptGenerator(const ConfigTable& config);
  void attach(Backend& backend) override;
  void fit(const ImageSet& train, const FitBudget& budget, const FitProgress& progress) override;
  void save(const std::string& directory) const override;
  void load(const std::string& directory) override;
  ImageSet sample(int64_t n, uint64_t first_seed) override;
  std::string describe() const override;

 private:
  /// Reads the file, records its size and CRC-32, loads it as TorchScript on the backend's device
  /// and checks its forward's arity.
  void open(const std::string& path);
  /// Runs forward once on inputs of the training shape and checks what comes back.
  void check(const torch::Tensor& example_images);
  /// forward(inputs) as a tensor; any failure becomes a vaelab::Error naming the file.
  torch::Tensor call(std::vector<torch::jit::IValue> inputs);
  std::string what_file() const { return "gen-torchscript: " + path_; }

  std::string configured_path_;
  std::string kind_;
  std::vector<int64_t> latent_shape_;
  bool unit_range_;  ///< output_range = "[0, 1]"
  int64_t batch_size_;
  edm::SamplerSettings sampler_;

  Backend* backend_ = nullptr;
  std::unique_ptr<torch::jit::Module> module_;
  std::string path_;  ///< absolute path of the loaded file
  uint64_t bytes_ = 0;
  std::string crc32_;
  std::vector<int64_t> image_shape_;  ///< [C, H, W]; empty before fit() or load()
  double fit_seconds_ = 0;
};

}  // namespace vaelab::plugins
