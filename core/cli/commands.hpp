#pragma once
// The `vaelab` subcommands; each returns the process exit code.

#include <cstdint>
#include <string>
#include <vector>

namespace vaelab::cli {

int plugins_list(const std::vector<std::string>& extra_paths, bool json);
int plugins_show(const std::vector<std::string>& extra_paths, const std::string& name);
struct BenchOptions {
  bool json = false;    ///< one JSON object instead of the table
  bool quick = false;   ///< tiny workloads, one repeat: checks the machinery, not the machine
  int repeats = 5;      ///< measurements per line (the median is reported)
  std::vector<std::string> backends;  ///< empty = every backend that can run here
  std::vector<std::string> sets;      ///< "BACKEND.KEY=VALUE" (TOML value) overriding a backend's default
};
/// `vaelab bench`: the GEMM peak and every backend's throughput, as ratios (bench_suite.cpp).
int bench_suite(const BenchOptions& options);
int bench_threads(const std::string& config_file, const std::vector<std::string>& overrides,
                  int steps, int repeats);

/// `vaelab generator fit CONFIG --out GEN_DIR`: fits [generator] to the config's training split;
/// resumes from GEN_DIR's checkpoint when it holds a fit of the same generator, config and data.
int generator_fit(const std::string& config_file, const std::vector<std::string>& overrides,
                  const std::string& out_dir);
/// `vaelab generator sample GEN_DIR --n N --seed S --out POOL [--set generator.config.KEY=VALUE]`:
/// image i gets seed S + i. The overrides change how the fitted generator samples (its sampler
/// settings); they are recorded in the pool's provenance and change its config hash.
int generator_sample(const std::string& gen_dir, int64_t n, uint64_t seed, const std::string& out,
                     int64_t batch, const std::vector<std::string>& overrides = {});
/// `vaelab generator check GEN_DIR|POOL --data CONFIG`: memorization, two-sample test and
/// Fréchet distance, written to out_dir (default GEN_DIR/check or POOL.check).
struct GeneratorCheckArgs {
  std::string target;
  std::string data_config;
  int64_t n = 1000;
  uint64_t seed = 0;
  std::string out_dir;
  /// Where the dataset's feature network is kept (default: the user cache folder's feature-nets).
  std::string features_cache;
  bool no_frechet = false;  ///< skip the Fréchet distance (and the feature network)
};
int generator_check(const GeneratorCheckArgs& args);

/// `vaelab study CONFIG ...`.
struct StudyOptions {
  std::string config;
  std::string out;
  int jobs = 0;  ///< 0 = the study file's [study] jobs
  bool resume = false;
  std::string shard;  ///< "i/n" or empty
  bool list = false;
  bool no_report = false;
};
int study_command(const StudyOptions& options);
/// `vaelab study merge OUT SHARD_DIR...`.
int study_merge(const std::string& out_dir, const std::vector<std::string>& shard_dirs);
/// `vaelab report DIR [--json]`.
int report_command(const std::string& study_dir, bool json);

}  // namespace vaelab::cli
