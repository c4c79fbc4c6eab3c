#pragma once
// `vaelab compress` and `vaelab decompress`: a finished run's model as the CodingModel of the
// BB-ANS coder (bbans.hpp), run deterministically — torch-cpu, f32, one thread, the same batches
// when coding and decoding. docs/compression.md.

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>
#include <torch/types.h>

#include <vaelab/compress/bbans.hpp>
#include <vaelab/model.hpp>

namespace torch::nn {
class Module;
}

namespace vaelab::compress {

/// A vaelab Model as the coder sees it: symbols become the model's input (binary values as 0/1,
/// 8-bit values divided by 255), encode and decode run without gradients on the CPU in the
/// module's current mode (put it in eval mode).
class TorchCodingModel final : public CodingModel {
 public:
  /// `binary`: the symbols are 0/1 values (Bernoulli), else 8-bit values.
  TorchCodingModel(Model& model, const CodecSettings& settings, bool binary);
  void posterior(const uint8_t* symbols, int64_t n, float* mean, float* log_var) override;
  void likelihood_params(const float* z, int64_t n, float* params) override;

 private:
  Model& model_;
  CodecSettings settings_;
  bool binary_;
  std::vector<int64_t> latent_shape_;
};

/// FNV-1a 64 of a module's parameters and buffers: names, shapes and float bytes, in order.
uint64_t weights_hash(torch::nn::Module& module);

/// FNV-1a 64 of what `model` computes for a fixed probe: the posterior of `batch` pseudo-random
/// images and the likelihood parameters of `batch` pseudo-random bucket centres. Two machines
/// whose kernels round differently give different hashes (docs/compression.md).
uint64_t numerics_hash(CodingModel& model, const CodecSettings& settings, int64_t batch);

/// `vaelab compress RUN_DIR ...`.
struct CompressOptions {
  std::filesystem::path data_config;  ///< --data: a TOML file with a [data] table
  std::string split = "test";         ///< --split: test | train (with --data)
  std::filesystem::path images;       ///< --images: a .npy file of uint8 images, or a sample pool
  std::filesystem::path out;          ///< --out: the compressed file
  bool compare = false;               ///< --compare: −ELBO and the general-purpose compressors
  std::vector<std::string> sets;      ///< --set compress.KEY=VALUE
};

/// Compresses the images and writes `options.out` (through a temporary file). Returns the
/// numbers: file size, bits/dim and their parts, throughput, and with --compare the negative
/// ELBO in bits/dim and each compressor's size.
nlohmann::json compress_run(const std::filesystem::path& run_dir, const CompressOptions& options);

/// Decompresses `file` with the run's model into `out` (.npy: uint8 [N, C, H, W]; any other
/// extension: a sample pool). Refuses a file made with other weights, settings or arithmetic,
/// naming the difference; a corrupt file is an Error naming the byte offset.
nlohmann::json decompress_run(const std::filesystem::path& file, const std::filesystem::path& run_dir,
                              const std::filesystem::path& out);

/// Prints compress_run's numbers as a table (and the comparison when present).
void print_compress_report(const nlohmann::json& report);

}  // namespace vaelab::compress
