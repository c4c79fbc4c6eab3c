// `vaelab report --json`: the numbers behind every table of the report.

#include "report_model.hpp"

using nlohmann::json;

namespace vaelab::report {
namespace {

json optional_number(const std::optional<double>& v) { return v ? json(*v) : json(); }

json stat_json(const std::optional<Stat>& s) {
  if (!s) return json();
  return {{"n", s->n}, {"mean", s->mean}, {"std", optional_number(s->std)}};
}

json aggregate_ref(const Aggregate& a) {
  return {{"regime", a.regime}, {"axes", a.axes}, {"point", a.point}};
}

json selected(const Aggregate& a, std::initializer_list<const char*> keys) {
  json out = json::object();
  for (const char* key : keys) {
    const Stat* s = a.stat(key);
    out[key] = s ? stat_json(*s) : json();
  }
  return out;
}

}  // namespace

json to_json(const Delta& d) {
  return {{"value", optional_number(d.value)},
          {"spread", optional_number(d.spread)},
          {"note", d.note()}};
}

json to_json(const Aggregate& a) {
  json mean = json::object(), std = json::object(), count = json::object(), seeds = json::array(),
       ids = json::array();
  for (const auto& [key, s] : a.stats) {
    mean[key] = s.mean;
    std[key] = optional_number(s.std);
    count[key] = s.n;
  }
  for (const RunRecord* r : a.runs) {
    seeds.push_back(r->seed);
    ids.push_back(r->id);
  }
  return {{"regime", a.regime},   {"purpose", a.purpose}, {"axes", a.axes}, {"point", a.point},
          {"at_base", a.at_base}, {"n", a.n()},           {"seeds", seeds}, {"run_ids", ids},
          {"mean", mean},         {"std", std},           {"count", count}};
}

json to_json(const StudyRecord& study, const Analysis& an) {
  json out = json::object();

  int64_t done = 0, failed = 0, pending = 0, running = 0;
  double wall = 0, generator_seconds = 0;
  json runs = json::array();
  for (const RunRecord& r : study.runs) {
    done += r.status == "done";
    failed += r.status == "failed";
    pending += r.status == "pending";
    running += r.status == "running";
    if (r.wall_seconds) wall += *r.wall_seconds;
    json costs = json::object();
    for (const char* key :
         {"wall_seconds", "generator_seconds", "cost_seconds", "cost_cpu_minutes"}) {
      const auto it = r.values.find(key);
      costs[key] = it == r.values.end() ? json() : json(it->second);
    }
    runs.push_back({{"id", r.id},
                    {"ordinal", r.ordinal},
                    {"label", r.label},
                    {"regime", r.regime},
                    {"seed", r.seed},
                    {"purpose", r.purpose},
                    {"status", r.status},
                    {"axes", r.axes},
                    {"path_name", r.path_name ? json(*r.path_name) : json()},
                    {"path_step", r.path_step ? json(*r.path_step) : json()},
                    {"generator_key", r.generator_key ? json(*r.generator_key) : json()},
                    {"run_dir", r.run_dir ? json(*r.run_dir) : json()},
                    {"costs", costs},
                    {"summary", r.summary.is_object() ? r.summary : json()},
                    {"error", r.error ? json(*r.error) : json()}});
  }
  for (const GeneratorRecord& g : study.generators) {
    if (g.fit_seconds) generator_seconds += *g.fit_seconds;
    if (g.sample_seconds) generator_seconds += *g.sample_seconds;
  }
  out["study"] = {{"name", study.name},
                  {"database", study.db_file.string()},
                  {"vaelab_version", study.vaelab_version},
                  {"created_utc", study.created_utc},
                  {"axes", study.axes},
                  {"base_point", study.base_point},
                  {"runs_total", study.runs.size()},
                  {"runs_done", done},
                  {"runs_failed", failed},
                  {"runs_pending", pending},
                  {"runs_running", running},
                  {"wall_seconds_total", wall},
                  {"generator_seconds_total", generator_seconds},
                  {"duplicate_runs", an.duplicate_runs}};
  out["runs"] = runs;

  json aggregates = json::array();
  for (const Aggregate& a : an.aggregates) aggregates.push_back(to_json(a));
  out["aggregates"] = aggregates;
  json anomaly = json::array();
  for (const Aggregate& a : an.anomaly_aggregates) anomaly.push_back(to_json(a));
  out["anomaly_aggregates"] = anomaly;

  out["baseline"] = an.baseline ? aggregate_ref(*an.baseline) : json();
  if (!an.baseline) out["baseline_missing"] = an.baseline_missing;

  json gap_table = json::array();
  for (const std::string& regime : an.regimes) {
    if (const Aggregate* a = an.at_base(regime)) {
      json row = selected(
          *a, {"elbo_test_nats", "elbo_train_nats", "generalization_gap_nats",
               "amortization_gap_nats", "robustness_gap", "elbo_star_test_nats", "params_total"});
      row["regime"] = regime;
      row["n"] = a->n();
      gap_table.push_back(row);
    }
  }
  out["gap_table"] = gap_table;

  json curves = json::array();
  for (const Curve& c : an.curves) {
    json train = json::array(), test = json::array();
    for (const auto& v : c.elbo_train_nats) train.push_back(optional_number(v));
    for (const auto& v : c.elbo_test_nats) test.push_back(optional_number(v));
    curves.push_back({{"regime", c.regime},
                      {"runs", c.runs},
                      {"epochs", c.epochs},
                      {"elbo_train_nats", train},
                      {"elbo_test_nats", test},
                      {"test_elbo_tail_from_epoch", c.tail_change ? json(c.tail_from_epoch) : json()},
                      {"test_elbo_tail_change_nats", optional_number(c.tail_change)},
                      {"test_elbo_second_half_range_nats", optional_number(c.late_range)},
                      {"test_elbo_trend", c.trend.empty() ? json() : json(c.trend)}});
  }
  out["curves"] = curves;

  json sweeps = json::array();
  for (const AxisSweep& s : an.sweeps) {
    json points = json::array();
    for (const auto& [where, a] : s.cells) {
      json p = selected(*a, {"elbo_test_nats", "generalization_gap_nats", "amortization_gap_nats",
                             "params_total"});
      p["value"] = s.values[where.first];
      p["regime"] = where.second;
      p["n"] = a->n();
      points.push_back(p);
    }
    sweeps.push_back(
        {{"axis", s.axis}, {"values", s.values}, {"numeric", s.numeric}, {"points", points}});
  }
  out["size_axes"] = sweeps;

  json paths = json::array();
  for (const PathStep& p : an.path_steps) {
    json row = selected(p.aggregate, {"elbo_test_nats", "params_total"});
    row["path"] = p.path;
    row["step"] = p.step;
    row["regime"] = p.regime;
    row["axes"] = p.aggregate.axes;
    row["n"] = p.aggregate.n();
    paths.push_back(row);
  }
  out["paths"] = paths;

  json downstream = json::array();
  for (const DownstreamRow& d : an.downstream) {
    downstream.push_back({{"regime", d.regime},
                          {"probe_accuracy", stat_json(d.probe_accuracy)},
                          {"knn_accuracy", stat_json(d.knn_accuracy)},
                          {"anomaly_auroc", stat_json(d.anomaly_auroc)},
                          {"anomaly_source", d.anomaly_source},
                          {"bits_per_dim_test", stat_json(d.bits_per_dim_test)},
                          {"bits_per_dim_note", d.bits_per_dim_note},
                          {"compressed_bits_per_dim_test", stat_json(d.compressed_bits_per_dim_test)}});
  }
  out["downstream"] = downstream;

  json generators = json::array();
  for (const GeneratorRecord& g : study.generators) {
    int64_t used = 0;
    for (const RunRecord& r : study.runs) used += r.generator_key == g.key;
    generators.push_back({{"key", g.key},
                          {"plugin", g.plugin},
                          {"dir", g.dir},
                          {"pool", g.pool},
                          {"pool_images", g.pool_images ? json(*g.pool_images) : json()},
                          {"fit_seconds", optional_number(g.fit_seconds)},
                          {"sample_seconds", optional_number(g.sample_seconds)},
                          {"check", g.check},
                          {"status", g.status},
                          {"runs", used}});
  }
  out["generators"] = generators;

  json table = json::array();
  for (const ReturnRow& r : an.return_table) {
    table.push_back(
        {{"regime", r.aggregate->regime},
         {"axes", r.aggregate->axes},
         {"point", r.aggregate->point},
         {"n", r.aggregate->n()},
         {"lever", lever_name(r.lever)},
         {"delta_elbo_test_nats", to_json(r.test_elbo)},
         {"delta_generalization_gap_nats", to_json(r.generalization_gap)},
         {"delta_amortization_gap_nats", to_json(r.amortization_gap)},
         {"delta_compressed_bits_per_dim_test", to_json(r.compressed_bits_per_dim)},
         {"extra_wall_seconds", optional_number(r.extra_seconds.value)},
         {"extra_wall_seconds_note", r.extra_seconds.note()},
         {"extra_cpu_minutes", optional_number(r.extra_cpu_minutes.value)},
         {"extra_cpu_minutes_note", r.extra_cpu_minutes.note()},
         {"extra_params", optional_number(r.extra_params)},
         {"nats_per_extra_cpu_minute", optional_number(r.nats_per_cpu_minute)},
         {"nats_per_extra_million_params", optional_number(r.nats_per_million_params)}});
  }
  out["return_table"] = table;
  out["conclusion"] = an.conclusion.text;
  const auto ref = [](const ReturnRow* r) { return r ? aggregate_ref(*r->aggregate) : json(); };
  out["conclusion_detail"] = {
      {"winner", an.conclusion.winner.empty() ? json() : json(an.conclusion.winner)},
      {"best_data_lever", ref(an.conclusion.best_data)},
      {"best_parameter_lever", ref(an.conclusion.best_parameters)}};

  json findings = json::array();
  for (const Finding& f : an.findings) {
    findings.push_back({{"claim", f.claim},
                        {"source", f.source},
                        {"verdict", f.verdict},
                        {"evidence", f.evidence}});
  }
  out["findings"] = findings;
  return out;
}

}  // namespace vaelab::report
