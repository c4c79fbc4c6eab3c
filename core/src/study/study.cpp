// Study files → the ordered list of runs. A study is a base run config and axes:
//   [grid]     every key's values crossed (the first key varies slowest)
//   [zip]      keys whose value lists are walked together (all of one length), crossed with the grid
//   [[path]]   named sequences of points, each point a table of keys; the points of all paths
//              are alternatives, crossed with the grid and the zip
// Axis keys are run-config keys ("model.config.latent") or their short names (canonical_axis).

#include <vaelab/study/study.hpp>

#include <algorithm>
#include <cstdio>
#include <map>
#include <set>

#include <vaelab/config.hpp>
#include <vaelab/error.hpp>
#include <vaelab/metrics/metric_names.hpp>

#include "study_db.hpp"

namespace fs = std::filesystem;
using nlohmann::json;

namespace vaelab {
namespace {

const std::map<std::string, std::string>& axis_aliases() {
  static const std::map<std::string, std::string> aliases = {
      {"regime", "train.regime"},
      {"seed", "train.seed"},
      {"epochs", "train.epochs"},
      {"k", "train.synthetic.k"},
      {"real_fraction", "train.mixed.real_fraction"},
      {"train_size", "data.train_size"},
      {"latent", "model.config.latent"},
      {"hidden", "model.config.hidden"},
      {"m_z", "model.config.m_z"},
      {"n_c", "model.config.n_c"},
  };
  return aliases;
}

std::string short_name(const std::string& key) {
  for (const auto& [alias, full] : axis_aliases()) {
    if (full == key) return alias;
  }
  const auto dot = key.rfind('.');
  return dot == std::string::npos ? key : key.substr(dot + 1);
}

json to_json(const toml::node& node) {
  if (const auto* v = node.as_integer()) return v->get();
  if (const auto* v = node.as_floating_point()) return v->get();
  if (const auto* v = node.as_boolean()) return v->get();
  if (const auto* v = node.as_string()) return v->get();
  if (const auto* a = node.as_array()) {
    json out = json::array();
    for (const auto& item : *a) out.push_back(to_json(item));
    return out;
  }
  if (const auto* t = node.as_table()) {
    json out = json::object();
    for (const auto& [k, v] : *t) out[std::string(k.str())] = to_json(v);
    return out;
  }
  throw Error(source_of(node) + ": dates and times are not study values");
}

std::string value_text(const json& value) {
  if (value.is_string()) return value.get<std::string>();
  std::string text = value.dump();
  text.erase(std::remove(text.begin(), text.end(), ' '), text.end());
  return text;
}

/// Sets `key` ("a.b.c") in `table`, making the tables on the way.
void set_dotted(toml::table& table, const std::string& key, const toml::node& value,
                const std::string& where) {
  toml::table* t = &table;
  size_t start = 0;
  for (size_t dot = key.find('.'); dot != std::string::npos; dot = key.find('.', start)) {
    const std::string part = key.substr(start, dot - start);
    toml::node* child = t->get(part);
    if (child == nullptr) {
      t->insert_or_assign(part, toml::table{});
      child = t->get(part);
    }
    if (!child->is_table()) {
      throw ConfigError(where + ": axis key \"" + key + "\": \"" + part + "\" is not a table in the run config");
    }
    t = child->as_table();
    start = dot + 1;
  }
  t->insert_or_assign(key.substr(start), value);
}

/// A point of one axis group: the keys it sets and their values.
struct Point {
  std::vector<std::pair<std::string, const toml::node*>> values;
  std::optional<std::string> path_name;
  int64_t path_step = -1;
};

/// The entries of a table in the order the file gives them (toml++ keeps them sorted).
std::vector<std::pair<std::string, const toml::node*>> in_file_order(const toml::table& table) {
  std::vector<std::pair<std::string, const toml::node*>> entries;
  for (const auto& [k, v] : table) entries.emplace_back(std::string(k.str()), &v);
  std::stable_sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) {
    const auto& sa = a.second->source().begin;
    const auto& sb = b.second->source().begin;
    return sa.line != sb.line ? sa.line < sb.line : sa.column < sb.column;
  });
  return entries;
}

const toml::array& value_list(const toml::node& node, const std::string& where) {
  const toml::array* list = node.as_array();
  if (list == nullptr || list->empty()) {
    throw ConfigError(source_of(node) + ": " + where + " must be a non-empty list of values");
  }
  return *list;
}

void check_only_keys(const toml::table& table, const std::set<std::string>& allowed, const std::string& where) {
  for (const auto& [k, v] : table) {
    const std::string key(k.str());
    if (allowed.count(key) == 0) {
      const std::vector<std::string> candidates(allowed.begin(), allowed.end());
      const std::string near = closest_match(key, candidates);
      throw ConfigError(source_of(v) + ": unknown key " + where + "." + key +
                        (near.empty() ? "" : " (did you mean " + near + "?)"));
    }
  }
}

StudySettings read_settings(const toml::table* study, const fs::path& origin) {
  StudySettings s;
  s.name = origin.stem().string();
  if (study == nullptr) return s;
  check_only_keys(*study, {"name", "base", "jobs", "generators", "check_samples", "anomaly_label"}, "study");
  const ConfigTable t(*study, "study");
  if (t.contains("name")) s.name = t.get_string("name");
  if (t.contains("jobs")) s.jobs = t.get_int_in("jobs", 1, 256);
  if (t.contains("generators")) s.generators = t.get_string("generators");
  if (t.contains("check_samples")) s.check_samples = t.get_int_in("check_samples", 0, 1 << 20);
  if (t.contains("anomaly_label")) s.anomaly_label = t.get_int_in("anomaly_label", -1, 1 << 20);
  if (s.name.empty() || s.name.find('/') != std::string::npos) {
    throw ConfigError(origin.string() + ": study.name must be a non-empty name without '/'");
  }
  return s;
}

/// Whether a run of `regime` reads the config key `key` at all: the synthetic stream's and the
/// generator's settings matter only to the synthetic and mixed regimes, the mix ratio only to
/// mixed, the augmentation settings only to the augmentation baselines.
bool regime_reads(const std::string& regime, const std::string& key) {
  const auto under = [&key](const char* prefix) { return key.rfind(prefix, 0) == 0; };
  if (under("train.synthetic.") || under("generator.")) return regime == "synthetic" || regime == "mixed";
  if (under("train.mixed.")) return regime == "mixed";
  if (under("train.augment.")) return regime.rfind("augment-", 0) == 0;
  return true;
}

}  // namespace

std::string canonical_axis(const std::string& name) {
  const auto it = axis_aliases().find(name);
  return it == axis_aliases().end() ? name : it->second;
}

StudyPlan expand_study(const fs::path& file) {
  std::error_code ec;
  if (!fs::is_regular_file(file, ec)) throw Error(file.string() + ": no such study file");
  std::FILE* f = std::fopen(file.string().c_str(), "rb");
  if (f == nullptr) throw Error(file.string() + ": cannot read the study file");
  std::string text;
  char buffer[4096];
  for (size_t n; (n = std::fread(buffer, 1, sizeof buffer, f)) > 0;) text.append(buffer, n);
  std::fclose(f);
  return expand_study_text(text, file);
}

StudyPlan expand_study_text(const std::string& text, const fs::path& origin) {
  StudyPlan plan;
  plan.file = origin;
  plan.text = text;
  const toml::table doc = parse_toml(text, origin.string());
  check_only_keys(doc, {"study", "base", "grid", "zip", "path"}, "(top level)");
  plan.settings = read_settings(doc["study"].as_table(), origin);

  // The base run config: the file named by study.base, then the [base] table over it.
  toml::table base;
  if (const auto* study = doc["study"].as_table(); study && study->contains("base")) {
    const ConfigTable t(*study, "study");
    fs::path base_file = t.get_string("base");
    if (base_file.is_relative()) base_file = origin.parent_path() / base_file;
    base = read_toml_file(base_file);
  }
  if (const auto* inline_base = doc["base"].as_table()) base = merge_tables(base, *inline_base);

  // The axis groups, each a list of points.
  std::vector<std::vector<Point>> groups;
  std::vector<std::string> axes;
  const auto add_axis = [&](const std::string& key, const toml::node& where) {
    if (std::find(axes.begin(), axes.end(), key) != axes.end()) {
      throw ConfigError(source_of(where) + ": axis " + key + " is given twice");
    }
    axes.push_back(key);
  };
  if (const auto* grid = doc["grid"].as_table()) {
    for (const auto& [name, node] : in_file_order(*grid)) {
      const std::string key = canonical_axis(name);
      add_axis(key, *node);
      std::vector<Point> points;
      for (const auto& value : value_list(*node, "grid." + name)) points.push_back({{{key, &value}}, {}, -1});
      groups.push_back(std::move(points));
    }
  }
  if (const auto* zip = doc["zip"].as_table()) {
    std::vector<Point> points;
    std::string first;
    for (const auto& [name, node] : in_file_order(*zip)) {
      const std::string key = canonical_axis(name);
      add_axis(key, *node);
      const toml::array& list = value_list(*node, "zip." + name);
      if (points.empty() && first.empty()) {
        points.resize(list.size());
        first = name;
      } else if (list.size() != points.size()) {
        throw ConfigError(source_of(*node) + ": zip." + name + " has " + std::to_string(list.size()) +
                          " values but zip." + first + " has " + std::to_string(points.size()) +
                          " (zipped lists must be of one length)");
      }
      for (size_t i = 0; i < list.size(); ++i) points[i].values.emplace_back(key, list.get(i));
    }
    if (!points.empty()) groups.push_back(std::move(points));
  }
  if (const auto* paths_node = doc.get("path")) {
    const toml::array* paths = paths_node->as_array();
    if (paths == nullptr || !paths->is_array_of_tables()) {
      throw ConfigError(source_of(*paths_node) + ": path must be an array of tables: [[path]] name = ..., steps = [...]");
    }
    std::vector<Point> points;
    std::set<std::string> names;
    for (const auto& path_node : *paths) {
      const toml::table& path = *path_node.as_table();
      check_only_keys(path, {"name", "steps"}, "path");
      const ConfigTable t(path, "path");
      const std::string name = t.get_string("name");
      if (name.empty() || !names.insert(name).second) {
        throw ConfigError(source_of(path_node) + ": every [[path]] needs a distinct, non-empty name");
      }
      const toml::node* steps_node = path.get("steps");
      if (steps_node == nullptr) throw ConfigError(source_of(path_node) + ": path \"" + name + "\" has no steps");
      const toml::array& steps = value_list(*steps_node, "path.steps");
      std::vector<std::string> step_keys;
      for (size_t i = 0; i < steps.size(); ++i) {
        const toml::table* step = steps.get(i)->as_table();
        if (step == nullptr) {
          throw ConfigError(source_of(*steps.get(i)) + ": each step of path \"" + name +
                            "\" is a table of run-config keys, e.g. { \"model.config.n_c\" = 64 }");
        }
        Point point;
        point.path_name = name;
        point.path_step = static_cast<int64_t>(i);
        std::vector<std::string> keys;
        for (const auto& [k, v] : in_file_order(*step)) {
          keys.push_back(canonical_axis(k));
          point.values.emplace_back(keys.back(), v);
        }
        std::vector<std::string> sorted = keys;
        std::sort(sorted.begin(), sorted.end());
        if (i == 0) {
          step_keys = sorted;
          for (const auto& key : keys) {
            if (std::find(axes.begin(), axes.end(), key) == axes.end()) axes.push_back(key);
          }
        } else if (sorted != step_keys) {
          throw ConfigError(source_of(*steps.get(i)) + ": step " + std::to_string(i) + " of path \"" +
                            name + "\" sets other keys than its step 0 (every step sets the same keys)");
        }
        points.push_back(std::move(point));
      }
    }
    groups.push_back(std::move(points));
  }
  for (const auto& axis : axes) {
    if (axis.find('.') == std::string::npos) {
      throw ConfigError(origin.string() + ": axis \"" + axis + "\" is neither a run-config key (section.key) nor a short name (" +
                        [] {
                          std::string names;
                          for (const auto& [alias, full] : axis_aliases()) names += (names.empty() ? "" : ", ") + alias;
                          return names;
                        }() + ")");
    }
  }
  plan.axes = axes;

  // The base point: every axis other than the regime and the seed at its first value.
  plan.base_point = json::object();
  for (const auto& group : groups) {
    for (const auto& [key, node] : group.front().values) {
      if (key != "train.regime" && key != "train.seed" && !plan.base_point.contains(key)) {
        plan.base_point[key] = to_json(*node);
      }
    }
  }

  // The cross product, the first group varying slowest; its size is checked before anything is
  // made, so a few short lines that multiply to millions of runs are refused at once.
  {
    double total = 1;
    std::string factors;
    for (const auto& group : groups) {
      total *= static_cast<double>(group.size());
      factors += (factors.empty() ? "" : " x ") + std::to_string(group.size());
    }
    if (total > static_cast<double>(kMaxStudyRuns)) {
      throw ConfigError(origin.string() + ": the study expands to " + factors + " = " +
                        std::to_string(static_cast<long long>(std::min(total, 9e18))) +
                        " runs, more than the " + std::to_string(kMaxStudyRuns) +
                        " a study may hold; split it into smaller studies or fewer values");
    }
  }
  std::vector<size_t> index(groups.size(), 0);
  const std::string where = origin.string();
  const auto make_run = [&](const std::vector<const Point*>& points, const std::string& purpose) {
    StudyRun run;
    run.config = base;
    run.axes = json::object();
    std::string label;
    for (const Point* p : points) {
      if (p->path_name) {
        run.path_name = p->path_name;
        run.path_step = p->path_step;
        label += (label.empty() ? "" : " ") + std::string("path=") + *p->path_name + ":" + std::to_string(p->path_step);
      }
      for (const auto& [key, node] : p->values) {
        set_dotted(run.config, key, *node, where);
        run.axes[key] = to_json(*node);
        label += (label.empty() ? "" : " ") + short_name(key) + "=" + value_text(run.axes[key]);
      }
    }
    const ConfigTable train(run.config["train"].as_table() ? *run.config["train"].as_table() : toml::table{}, "train");
    run.regime = train.contains("regime") ? train.get_string("regime") : "normal";
    run.seed = train.contains("seed") ? train.get_int("seed") : 0;
    run.purpose = purpose;
    run.label = label.empty() ? "base" : label;
    return run;
  };
  if (groups.empty()) {
    plan.runs.push_back(make_run({}, "main"));
  } else {
    while (true) {
      std::vector<const Point*> points;
      for (size_t g = 0; g < groups.size(); ++g) points.push_back(&groups[g][index[g]]);
      plan.runs.push_back(make_run(points, "main"));
      // The next index, like an odometer: the last group turns fastest.
      int64_t g = static_cast<int64_t>(groups.size()) - 1;
      while (g >= 0 && ++index[static_cast<size_t>(g)] == groups[static_cast<size_t>(g)].size()) {
        index[static_cast<size_t>(g)] = 0;
        --g;
      }
      if (g < 0) break;
    }
  }

  // A run that differs from an earlier one only in keys its regime does not read is the same
  // experiment (normal training crossed with k, say): it is run once, under the earlier labels.
  {
    std::vector<StudyRun> unique;
    std::set<std::string> seen;
    for (StudyRun& run : plan.runs) {
      json effective = json::object();
      for (const auto& [key, value] : run.axes.items()) {
        if (regime_reads(run.regime, key)) effective[key] = value;
      }
      const std::string identity = effective.dump() + (run.path_name ? "\n" + *run.path_name : std::string());
      if (seen.insert(identity).second) unique.push_back(std::move(run));
    }
    plan.runs = std::move(unique);
  }

  // Anomaly detection: for every main run at the base point, one more that holds a class out.
  if (plan.settings.anomaly_label >= 0) {
    std::vector<StudyRun> extra;
    for (const StudyRun& run : plan.runs) {
      bool at_base = true;
      for (const auto& [key, value] : plan.base_point.items()) at_base = at_base && run.axes.value(key, json()) == value;
      if (!at_base || run.path_step > 0) continue;
      StudyRun held = run;
      set_dotted(held.config, "data.holdout_label", toml::value<int64_t>(plan.settings.anomaly_label), where);
      // The report reads only the ELBO curve and the anomaly AUROC of these runs; the other
      // metrics are the main runs' to measure (G_a alone is a quarter of a quickstart run).
      for (const std::string& metric : metric_names()) {
        if (metric != "elbo") set_dotted(held.config, "eval." + metric + ".every_epochs", toml::value<int64_t>(0), where);
      }
      held.purpose = "anomaly";
      held.label += " holdout=" + std::to_string(plan.settings.anomaly_label);
      extra.push_back(std::move(held));
    }
    for (auto& run : extra) plan.runs.push_back(std::move(run));
  }

  // Ids in expansion order, and the hash of the whole list.
  std::string digest_input;
  for (size_t i = 0; i < plan.runs.size(); ++i) {
    StudyRun& run = plan.runs[i];
    run.ordinal = static_cast<int64_t>(i);
    char id[32];
    std::snprintf(id, sizeof id, "r%04zu", i);
    run.id = id;
    digest_input += run.id + "\n" + run.purpose + "\n" + format_toml(run.config) + "\n";
  }
  plan.hash = study_db::fnv1a_hex(digest_input);
  return plan;
}

Shard Shard::parse(const std::string& text) {
  Shard s;
  if (text.empty()) return s;
  const auto slash = text.find('/');
  try {
    if (slash == std::string::npos) throw std::invalid_argument("no slash");
    size_t used = 0;
    s.index = std::stoll(text.substr(0, slash), &used);
    if (used != slash) throw std::invalid_argument("index");
    const std::string count = text.substr(slash + 1);
    s.count = std::stoll(count, &used);
    if (used != count.size()) throw std::invalid_argument("count");
  } catch (const std::exception&) {
    throw Error("--shard \"" + text + "\": expected i/n, e.g. 0/4");
  }
  if (s.count < 1 || s.index < 0 || s.index >= s.count) {
    throw Error("--shard " + text + ": need 0 <= i < n");
  }
  return s;
}

}  // namespace vaelab
