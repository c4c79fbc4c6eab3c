#pragma once
// The study report's model: what is read from DIR/study.sqlite (report_data.cpp) and the numbers
// computed from it (report_analysis.cpp) — aggregates over seeds, the return table, the
// conclusion and the paper's findings. The Markdown/HTML rendering (report.cpp) and the plots
// (report_plots.cpp) only read these structures.

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace vaelab::report {

// ---- What the database holds ------------------------------------------------------------------

/// One row of `runs`, with the numbers the report uses gathered in `values`.
struct RunRecord {
  std::string id;
  int64_t ordinal = 0;
  std::string label;
  std::string regime;
  int64_t seed = 0;
  nlohmann::json axes =
      nlohmann::json::object();  ///< every axis of the run, regime and seed included
  std::optional<std::string> path_name;
  std::optional<int64_t> path_step;
  std::string purpose;
  std::optional<std::string> generator_key;
  std::string status;
  std::optional<std::string>
      run_dir;  ///< as stored (relative to the database's folder, or absolute)
  std::optional<double> wall_seconds;
  nlohmann::json summary;  ///< summary.json; null when the run has none
  std::optional<std::string> error;
  /// The numeric summary keys, plus the run's costs (docs/report.md): `wall_seconds`,
  /// `generator_seconds` (its generator's fit + sample; 0 without one), `cost_seconds` (their
  /// sum) and `cost_cpu_minutes` (cost_seconds × summary.threads / 60). A key is absent when its
  /// inputs are: it is never filled in with 0.
  std::map<std::string, double> values;
};

/// One row of `generators`.
struct GeneratorRecord {
  std::string key;
  std::string plugin;
  std::string dir;
  std::string pool;
  std::optional<int64_t> pool_images;
  std::optional<double> fit_seconds;
  std::optional<double> sample_seconds;
  nlohmann::json check;  ///< check.json; null when no check was run
  std::string status;
};

/// One evaluation point of a run (the `metrics` table).
struct MetricPoint {
  int64_t epoch = 0;
  nlohmann::json point;
};

struct StudyRecord {
  std::filesystem::path dir;      ///< the study folder
  std::filesystem::path db_file;  ///< dir / study.sqlite
  std::string name;
  std::string vaelab_version;
  std::string created_utc;
  std::vector<std::string> axes;  ///< axis names in the study file's order
  nlohmann::json base_point = nlohmann::json::object();
  std::vector<RunRecord> runs;                              ///< in ordinal order
  std::vector<GeneratorRecord> generators;                  ///< in key order
  std::map<std::string, std::vector<MetricPoint>> metrics;  ///< run id → points by epoch
};

/// Reads DIR/study.sqlite (read-only). Throws vaelab::Error naming the file when it is missing,
/// of another schema version, or malformed.
StudyRecord load_study(const std::filesystem::path& study_dir);

/// The regime and the seed are axes the aggregates do not keep apart and the base point omits.
bool is_regime_axis(const std::string& name);
bool is_seed_axis(const std::string& name);
/// "model.config.latent" → "latent" when no other axis of `axes` ends the same way.
std::string short_axis_name(const std::string& name, const std::vector<std::string>& axes);
/// An axis value as text: 8, 0.5, [512, 512], vae-mlp.
std::string value_text(const nlohmann::json& value);
/// A file a row names, resolved against the database's folder unless absolute.
std::filesystem::path resolve(const StudyRecord& study, const std::string& stored);
/// `v` with `digits` decimals ("-12.30"); signed_fixed adds a "+" to positive values.
std::string fixed(double v, int digits);
std::string signed_fixed(double v, int digits);

// ---- The numbers computed from it ---------------------------------------------------------

/// Mean and sample standard deviation (n − 1) of one key over the seeds of an aggregate.
struct Stat {
  int64_t n = 0;  ///< runs that have the key
  double mean = 0;
  std::optional<double> std;  ///< absent for n < 2
};

/// Runs equal in every axis except the seed.
struct Aggregate {
  std::string regime;
  std::string purpose;
  nlohmann::json axes = nlohmann::json::object();  ///< every axis but the regime and the seed
  std::string point;                   ///< the axes off the base point ("latent=32"), or "base"
  bool at_base = false;                ///< every base-point axis at its base value
  std::vector<const RunRecord*> runs;  ///< one per seed, lowest seed first
  std::map<std::string, Stat> stats;   ///< over `runs`, per key of RunRecord::values

  const Stat* stat(const std::string& key) const;
  std::optional<double> mean(const std::string& key) const;
  int64_t n() const { return static_cast<int64_t>(runs.size()); }
};

/// A difference between two aggregates' means and whether it exceeds the seed spread.
struct Delta {
  enum class Spread { outside, within, unknown };
  std::optional<double> value;   ///< absent when either side lacks the key
  std::optional<double> spread;  ///< sqrt(std_a² + std_b²); absent when a side has < 2 seeds
  Spread verdict = Spread::unknown;
  /// "" outside the spread, "within the seed spread", "one seed: spread unknown", "missing".
  std::string note() const;
};
Delta make_delta(const Aggregate& a, const Aggregate& b, const std::string& key);

/// What an aggregate changes against the baseline.
enum class Lever {
  data,        ///< another regime; model axes at base (synthetic data, augmentation, mixing)
  parameters,  ///< normal training; only model.* axes off base
  both,        ///< another regime and model axes off base
  other,       ///< normal training with a non-model axis off base (epochs, training-set size)
};
std::string lever_name(Lever lever);

/// One row of the return table: an aggregate against the baseline (normal at the base point).
struct ReturnRow {
  const Aggregate* aggregate = nullptr;
  Lever lever = Lever::other;
  Delta test_elbo;  ///< nats; > 0 is better
  Delta generalization_gap;
  Delta amortization_gap;
  Delta compressed_bits_per_dim;  ///< the test set's compressed file (vaelab compress); < 0 is better
  Delta extra_seconds;                            ///< cost_seconds, mean difference
  Delta extra_cpu_minutes;                        ///< cost_cpu_minutes, mean difference
  std::optional<double> extra_params;             ///< params_total, mean difference
  std::optional<double> nats_per_cpu_minute;      ///< absent when extra_cpu_minutes <= 0
  std::optional<double> nats_per_million_params;  ///< absent when extra_params <= 0
};

/// The conclusion drawn from the return table.
struct Conclusion {
  const ReturnRow* best_data = nullptr;
  const ReturnRow* best_parameters = nullptr;
  std::string winner;  ///< "data", "parameters", or "" when the study cannot tell
  std::string text;
};

/// A finding of the paper, checked against the aggregates.
struct Finding {
  std::string claim;
  std::string source;    ///< where the paper shows it
  /// "reproduced", "not reproduced", "not tested", or "inconclusive" (a synthetic-data finding
  /// that holds on a generator flagged for memorization)
  std::string verdict;
  std::string evidence;  ///< the numbers that decided it, or why it was not tested
};

/// One axis of the size section: its values and, per value and regime, the aggregate there with
/// every other base-point axis at its base value.
struct AxisSweep {
  std::string axis;
  std::vector<nlohmann::json> values;  ///< in the order the study lists them
  bool numeric = true;                 ///< every value a number (else x = index, labels = values)
  /// (value index, regime) → aggregate
  std::map<std::pair<size_t, std::string>, const Aggregate*> cells;
};

/// One step of a named path, per regime, aggregated over seeds.
struct PathStep {
  std::string path;
  int64_t step = 0;
  std::string regime;
  Aggregate aggregate;
};

/// Train and test ELBO over effective epochs of one regime at the base point, mean over seeds.
struct Curve {
  std::string regime;
  int64_t runs = 0;  ///< runs with metric points
  std::vector<int64_t> epochs;
  std::vector<std::optional<double>> elbo_train_nats;
  std::vector<std::optional<double>> elbo_test_nats;
  /// The end of the test-ELBO curve, over the points in the last 20 % of its epochs (at least the
  /// last two points): the least-squares slope times the window's length in epochs; and the
  /// range (max − min) of the points in the second half of the epochs. Absent with fewer than two
  /// test points.
  std::optional<double> tail_change, late_range;
  int64_t tail_from_epoch = 0;
  /// "rising" / "falling" when |tail_change| > max(10 % of late_range, 0.25 % of |last test
  /// ELBO|), else "flat"; "" when absent.
  std::string trend;
};

/// Downstream metrics of one regime at the base point.
struct DownstreamRow {
  std::string regime;
  const Aggregate* aggregate = nullptr;  ///< the main aggregate at the base point, if any
  std::optional<Stat> probe_accuracy, knn_accuracy, anomaly_auroc, bits_per_dim_test;
  /// The real file `vaelab compress` wrote for the test set, bits/dim (discrete likelihoods).
  std::optional<Stat> compressed_bits_per_dim_test;
  std::string anomaly_source;     ///< "main runs", "anomaly runs (class held out)", or why absent
  std::string bits_per_dim_note;  ///< why bits/dim are absent
};

/// Holds pointers into itself (return rows, sweeps) and into the StudyRecord: movable, not
/// copyable.
struct Analysis {
  Analysis() = default;
  Analysis(Analysis&&) = default;
  Analysis& operator=(Analysis&&) = default;
  Analysis(const Analysis&) = delete;
  Analysis& operator=(const Analysis&) = delete;

  std::vector<std::string> regimes;           ///< normal first, then the study's order
  std::vector<Aggregate> aggregates;          ///< purpose main, status done
  std::vector<Aggregate> anomaly_aggregates;  ///< purpose anomaly, status done
  std::vector<PathStep> path_steps;           ///< by path, regime, step
  std::vector<std::string> paths;             ///< path names in the study's order
  const Aggregate* baseline = nullptr;        ///< normal at the base point
  std::string baseline_missing;               ///< why there is no baseline
  std::vector<ReturnRow> return_table;
  Conclusion conclusion;
  std::vector<Finding> findings;
  std::vector<AxisSweep> sweeps;          ///< every base-point axis
  std::vector<Curve> curves;              ///< per regime at the base point
  std::vector<DownstreamRow> downstream;  ///< per regime
  int64_t duplicate_runs = 0;  ///< runs that repeat an aggregate's seed (e.g. a point on two paths)
  /// Generators that main runs trained on and whose check suspects memorization, each as
  /// "`key` (x of samples within the copy threshold vs y of held-out images)".
  std::vector<std::string> memorized_generators;

  /// The aggregate of `regime` at the base point, purpose main.
  const Aggregate* at_base(const std::string& regime) const;
};

/// Computes everything from the study. The result points into `study`, which must outlive it.
Analysis analyze(const StudyRecord& study);

/// The numbers behind every table (`vaelab report --json`).
nlohmann::json to_json(const StudyRecord& study, const Analysis& analysis);
nlohmann::json to_json(const Aggregate& aggregate);
nlohmann::json to_json(const Delta& delta);

}  // namespace vaelab::report
