#pragma once
// The commands on a run: train one (new or resumed), evaluate and score a finished one.
// docs/architecture.md shows where each stage of a run lives.

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include <vaelab/train/run_config.hpp>

namespace vaelab {

/// `vaelab train`: resolves the config, trains, evaluates and writes the run folder. Returns the
/// run folder. `out_dir` empty = runs/<config name>-<UTC time>.
std::filesystem::path train_run(const std::filesystem::path& config_file,
                                const std::vector<std::string>& overrides,
                                const std::filesystem::path& out_dir);

/// `vaelab train --resume RUN_DIR`: continues a stopped run from its checkpoints/last.safetensors
/// (docs/checkpoints.md) with the run's own config.toml. `config_file` and `overrides` may be
/// given (both optional): they must resolve to the run's config, else ConfigError naming the first
/// difference. metrics.jsonl is cut back to the checkpoint's records; a finished run (summary.json)
/// or one without a checkpoint is refused. On the CPU with one thread the final weights equal an
/// uninterrupted run's bit for bit. Returns the run folder.
std::filesystem::path resume_run(const std::filesystem::path& run_dir,
                                 const std::filesystem::path& config_file,
                                 const std::vector<std::string>& overrides);

/// `vaelab eval`: rebuilds the model of a finished run from its config.toml and
/// checkpoints/last.safetensors and runs the named metrics (metric_names()) with the run's [eval]
/// settings, changed by `overrides` ("eval.KEY=VALUE" only: the model, data and backend are the
/// run's). Returns the numbers as JSON, under summary.json's keys. Nothing in the run folder changes.
nlohmann::json eval_run(const std::filesystem::path& run_dir, const std::vector<std::string>& metrics,
                        const std::vector<std::string>& overrides = {});

/// What `vaelab score` computes per image.
struct ScoreOptions {
  std::string metric = "elbo";  ///< elbo | iwae
  std::string split = "test";   ///< test | train | all (of the data named by `data_file`)
  int64_t samples = 0;          ///< MC (elbo) or importance (iwae) samples; 0 = the run's [eval] setting
};

/// `vaelab score`: per image of a dataset, −ELBO (or −IWAE) in nats and, for a discrete
/// likelihood, bits per dimension — the anomaly score and the code length of a trained VAE.
/// `data_file` is either a TOML file (extension .toml) with one [data] table (as in a run config:
/// plugin, config, sizes) or a sample pool file (vaelab generator sample), scored whole; empty =
/// the run's own data. Images stay as stored — 8-bit in memory for a data source, memory-mapped
/// for a pool — and are converted to float one batch (the run's eval.batch_size) at a time, so a
/// pool of any size is scored in bounded memory. Rows are written to `out_csv` (through a
/// temporary file renamed at the end). Returns the rows written.
int64_t score_run(const std::filesystem::path& run_dir, const std::filesystem::path& data_file,
                  const ScoreOptions& options, const std::filesystem::path& out_csv);

}  // namespace vaelab
