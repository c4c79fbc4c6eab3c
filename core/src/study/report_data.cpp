// Reading the study database for the report (docs/study-database.md is the contract).

#include <cstdio>
#include <map>

#include <vaelab/error.hpp>

#include "report_model.hpp"
#include "sqlite.hpp"
#include "study_db.hpp"

namespace fs = std::filesystem;
using nlohmann::json;

namespace vaelab::report {
namespace {

json parse_json(const std::string& text, const fs::path& file, const std::string& where) {
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    throw Error(file.string() + ": " + where + " is not valid JSON: " + e.what());
  }
}

std::optional<std::string> optional_text(const sql::Statement& s, int column) {
  if (s.is_null(column)) return std::nullopt;
  return s.text(column);
}
std::optional<int64_t> optional_integer(const sql::Statement& s, int column) {
  if (s.is_null(column)) return std::nullopt;
  return s.integer(column);
}
std::optional<double> optional_real(const sql::Statement& s, int column) {
  if (s.is_null(column)) return std::nullopt;
  return s.real(column);
}

/// RunRecord::values: the numeric summary keys and the run's costs.
void collect_values(RunRecord& run,
                    const std::map<std::string, const GeneratorRecord*>& generators) {
  if (run.summary.is_object()) {
    for (const auto& [key, value] : run.summary.items()) {
      if (value.is_number()) run.values[key] = value.get<double>();
    }
  }
  std::optional<double> generator_seconds = 0.0;
  if (run.generator_key) {
    const auto it = generators.find(*run.generator_key);
    if (it == generators.end() || !it->second->fit_seconds || !it->second->sample_seconds) {
      generator_seconds.reset();
    } else {
      generator_seconds = *it->second->fit_seconds + *it->second->sample_seconds;
    }
  }
  if (generator_seconds) run.values["generator_seconds"] = *generator_seconds;
  if (run.wall_seconds) {
    run.values["wall_seconds"] = *run.wall_seconds;
    if (generator_seconds) {
      const double cost = *run.wall_seconds + *generator_seconds;
      run.values["cost_seconds"] = cost;
      const auto threads = run.values.find("threads");
      if (threads != run.values.end() && threads->second > 0) {
        run.values["cost_cpu_minutes"] = cost * threads->second / 60.0;
      }
    }
  }
}

}  // namespace

StudyRecord load_study(const fs::path& study_dir) {
  StudyRecord study;
  study.dir = study_dir;
  study.db_file = study_dir / "study.sqlite";
  const fs::path& file = study.db_file;
  sql::Database db(file, sql::Database::Mode::read_only);
  study_db::check_schema(db);

  const auto key = [&](const std::string& name, bool required) {
    const std::string value = study_db::get_key(db, name);
    if (required && value.empty()) throw Error(file.string() + ": the study table has no " + name);
    return value;
  };
  study.name = key("name", false);
  if (study.name.empty())
    study.name = fs::absolute(study_dir).lexically_normal().filename().string();
  study.vaelab_version = key("vaelab_version", false);
  study.created_utc = key("created_utc", false);
  study.base_point = parse_json(key("base_point", true), file, "study.base_point");
  if (!study.base_point.is_object())
    throw Error(file.string() + ": study.base_point is not a JSON object");
  const json axes = parse_json(key("axes", true), file, "study.axes");
  if (!axes.is_array()) throw Error(file.string() + ": study.axes is not a JSON array");
  for (const auto& a : axes) {
    if (!a.is_string()) throw Error(file.string() + ": study.axes holds a non-string: " + a.dump());
    study.axes.push_back(a.get<std::string>());
  }

  sql::Statement gens = db.prepare(
      "SELECT key, plugin, dir, pool, pool_images, fit_seconds, sample_seconds, \"check\", status "
      "FROM generators ORDER BY key");
  while (gens.step()) {
    GeneratorRecord g;
    g.key = gens.text(0);
    g.plugin = gens.text(1);
    g.dir = gens.text(2);
    g.pool = gens.text(3);
    g.pool_images = optional_integer(gens, 4);
    g.fit_seconds = optional_real(gens, 5);
    g.sample_seconds = optional_real(gens, 6);
    if (!gens.is_null(7))
      g.check = parse_json(gens.text(7), file, "generators " + g.key + " check");
    g.status = gens.text(8);
    study.generators.push_back(std::move(g));
  }
  std::map<std::string, const GeneratorRecord*> by_key;
  for (const auto& g : study.generators) by_key[g.key] = &g;

  sql::Statement runs = db.prepare(
      "SELECT id, ordinal, label, regime, seed, axes, path_name, path_step, purpose, "
      "generator_key, "
      "status, run_dir, wall_seconds, summary, error FROM runs ORDER BY ordinal, id");
  while (runs.step()) {
    RunRecord r;
    r.id = runs.text(0);
    r.ordinal = runs.integer(1);
    r.label = runs.text(2);
    r.regime = runs.text(3);
    r.seed = runs.integer(4);
    r.axes = parse_json(runs.text(5), file, "runs " + r.id + " axes");
    if (!r.axes.is_object())
      throw Error(file.string() + ": runs " + r.id + " axes is not a JSON object");
    r.path_name = optional_text(runs, 6);
    r.path_step = optional_integer(runs, 7);
    r.purpose = runs.text(8);
    r.generator_key = optional_text(runs, 9);
    r.status = runs.text(10);
    r.run_dir = optional_text(runs, 11);
    r.wall_seconds = optional_real(runs, 12);
    if (!runs.is_null(13)) {
      r.summary = parse_json(runs.text(13), file, "runs " + r.id + " summary");
      if (!r.summary.is_object())
        throw Error(file.string() + ": runs " + r.id + " summary is not a JSON object");
    }
    r.error = optional_text(runs, 14);
    collect_values(r, by_key);
    study.runs.push_back(std::move(r));
  }

  sql::Statement metrics =
      db.prepare("SELECT run_id, epoch, point FROM metrics ORDER BY run_id, epoch");
  while (metrics.step()) {
    const std::string run_id = metrics.text(0);
    const int64_t epoch = metrics.integer(1);
    study.metrics[run_id].push_back(
        {epoch, parse_json(metrics.text(2), file,
                           "metrics " + run_id + " epoch " + std::to_string(epoch))});
  }
  return study;
}

bool is_regime_axis(const std::string& name) { return name == "train.regime" || name == "regime"; }
bool is_seed_axis(const std::string& name) { return name == "train.seed" || name == "seed"; }

std::string short_axis_name(const std::string& name, const std::vector<std::string>& axes) {
  const auto last = [](const std::string& s) {
    const auto dot = s.rfind('.');
    return dot == std::string::npos ? s : s.substr(dot + 1);
  };
  const std::string tail = last(name);
  for (const auto& other : axes) {
    if (other != name && last(other) == tail) return name;
  }
  return tail;
}

std::string value_text(const json& value) {
  if (value.is_string()) return value.get<std::string>();
  if (value.is_number_float()) {
    char text[64];
    std::snprintf(text, sizeof text, "%g", value.get<double>());
    return text;
  }
  if (value.is_array()) {
    std::string out = "[";
    for (size_t i = 0; i < value.size(); ++i) out += (i ? ", " : "") + value_text(value[i]);
    return out + "]";
  }
  return value.dump();
}

fs::path resolve(const StudyRecord& study, const std::string& stored) {
  const fs::path p(stored);
  return p.is_absolute() ? p : study.dir / p;
}

std::string fixed(double v, int digits) {
  char text[64];
  std::snprintf(text, sizeof text, "%.*f", digits, v);
  // "-0.00" reads as a sign where there is none.
  if (std::string(text).find_first_of("123456789") == std::string::npos && text[0] == '-')
    return text + 1;
  return text;
}

std::string signed_fixed(double v, int digits) {
  const std::string text = fixed(v, digits);
  return text[0] == '-' || text.find_first_of("123456789") == std::string::npos ? text : "+" + text;
}

}  // namespace vaelab::report
