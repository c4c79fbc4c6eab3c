#pragma once
// Studies: a base run config crossed with axes (grid, zip, named paths), run into one SQLite
// database (docs/study-database.md). `vaelab study` is the front end; `vaelab report` reads the
// database back.
//
//   expand_study()  study file → the ordered list of runs (pure: no plugins, no files written)
//   run_study()     fits each needed generator once, samples its pool, trains the runs in child
//                   processes (`vaelab train`), and writes every result into DIR/study.sqlite

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <toml++/toml.h>

namespace vaelab {

/// One run of a study.
struct StudyRun {
  std::string id;            ///< r0000, r0001, ... in expansion order
  int64_t ordinal = 0;
  std::string label;         ///< "regime=synthetic latent=8 seed=0"
  std::string regime;        ///< train.regime
  int64_t seed = 0;          ///< train.seed
  nlohmann::json axes;       ///< canonical axis key → value of this run
  std::optional<std::string> path_name;
  int64_t path_step = -1;
  std::string purpose = "main";  ///< main | anomaly
  toml::table config;        ///< the run config before defaults are merged
};

/// The [study] table.
struct StudySettings {
  std::string name;
  int64_t jobs = 1;              ///< runs trained at once
  std::string generators;        ///< folder of fitted generators shared across studies ("" = DIR/generators)
  int64_t check_samples = 1000;  ///< `vaelab generator check --n` on each pool (0 = no check)
  int64_t anomaly_label = -1;    ///< >= 0: extra runs that hold this class out of training
};

/// The most runs one study's grid may expand to (before anomaly runs are added).
constexpr int64_t kMaxStudyRuns = 10000;

/// A study file after expansion.
struct StudyPlan {
  std::filesystem::path file;
  std::string text;                   ///< the study file as given
  StudySettings settings;
  std::vector<std::string> axes;      ///< canonical axis keys in the file's order
  nlohmann::json base_point;          ///< non-regime, non-seed axis → its base (first) value
  std::vector<StudyRun> runs;
  std::string hash;                   ///< FNV-1a 64 (hex) of the expanded run list
};

/// Short axis names accepted in a study file and the run-config keys they stand for.
std::string canonical_axis(const std::string& name);

/// Reads and expands a study file. Errors name the file and the key.
StudyPlan expand_study(const std::filesystem::path& file);
/// The same from text; `origin` names it in messages and anchors a relative `[study] base`.
StudyPlan expand_study_text(const std::string& text, const std::filesystem::path& origin);

/// Resolves every run's config against the framework's and the plugins' schemas (plugins found as
/// for `vaelab train`); throws naming the study file, the run and the key. `vaelab study --list`.
void validate_study(const StudyPlan& plan);

/// `--shard i/n`: run ordinals with ordinal % n == i.
struct Shard {
  int64_t index = 0;
  int64_t count = 1;
  static Shard parse(const std::string& text);  ///< "" = the whole study
  bool holds(int64_t ordinal) const { return ordinal % count == index; }
  std::string text() const { return std::to_string(index) + "/" + std::to_string(count); }
};

struct StudyRunOptions {
  std::filesystem::path out;          ///< the study folder
  int64_t jobs = 0;                   ///< 0 = settings.jobs
  bool resume = false;
  Shard shard;
  std::filesystem::path executable;   ///< the `vaelab` binary that trains runs
};

/// Seconds until the study's runs are done, for its progress line: each run not yet started takes
/// `mean_run_seconds` (the mean wall time of the runs finished so far), each running one that mean
/// less the seconds it has run (at least 0), and `parallel` run at once. Generator fits are not in
/// the mean, so they do not inflate the estimate after the first runs (a study that begins with
/// fits would otherwise promise hours at its first finished run); time still to be spent fitting
/// is not in the estimate either.
double study_eta_seconds(double mean_run_seconds, const std::vector<double>& running_seconds, size_t not_started,
                         int64_t parallel);

/// Runs the study into options.out/study.sqlite. Returns the number of runs that failed.
int64_t run_study(const StudyPlan& plan, const StudyRunOptions& options);

/// Joins shard study folders into `out` (a new study.sqlite; run folders stay where they are and
/// are recorded by path). Refuses shards of different studies or overlapping runs.
void merge_studies(const std::filesystem::path& out, const std::vector<std::filesystem::path>& shards);

}  // namespace vaelab
