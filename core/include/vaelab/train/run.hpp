#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>
#include <toml++/toml.h>

#include <vaelab/config.hpp>
#include <vaelab/registry.hpp>

namespace vaelab {

/// The framework's own defaults (core/defaults.toml): the schema of a run config.
std::string_view core_defaults_toml();

/// A run config after resolution: the framework defaults merged under the user's file, the
/// plugins found, each plugin's `config` table checked against and merged with its
/// defaults.toml, and `--set` overrides applied (each typed by its key's default).
class RunConfig {
 public:
  static RunConfig load(const std::filesystem::path& file,
                        const std::vector<std::string>& overrides);
  /// The same from a parsed table (its nodes carry their file positions for messages).
  static RunConfig resolve(const toml::table& user, const std::vector<std::string>& overrides);

  const toml::table& table() const { return table_; }
  /// A framework section, e.g. "train".
  ConfigTable section(std::string_view key) const;
  /// The plugin named in a section ("data", "model", "backend").
  std::string plugin(std::string_view section) const;
  /// The section's resolved `config` table as TOML text, for the plugin's create().
  std::string plugin_config(std::string_view section) const;
  const Registry& registry() const { return *registry_; }
  /// The full resolved config as TOML (what a run writes to config.toml).
  std::string to_toml() const;

 private:
  toml::table table_;
  std::shared_ptr<Registry> registry_;
};

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
/// settings. Returns the numbers as JSON, under summary.json's keys.
nlohmann::json eval_run(const std::filesystem::path& run_dir,
                        const std::vector<std::string>& metrics);

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
