// Stage 1 of a run, the run config (docs/architecture.md): the user's TOML checked against
// core/defaults.toml and merged with it, each plugin found and its [*.config] table checked
// against and merged with the plugin's own defaults.toml, `backend.plugin = "auto"` resolved, and
// --set overrides applied. What comes out is what a run writes to its config.toml.
#include <vaelab/train/run_config.hpp>

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include <vaelab/backend.hpp>
#include <vaelab/build_info.h>
#include <vaelab/error.hpp>
#include <vaelab/log.hpp>
#include <vaelab/train/backend_choice.hpp>
#include <vaelab_core_defaults.h>

namespace fs = std::filesystem;

namespace vaelab {
namespace {

struct PluginSection {
  const char* section;
  vl_plugin_kind kind;
};
constexpr PluginSection kPluginSections[] = {
    {"data", VL_PLUGIN_KIND_DATA_SOURCE},
    {"model", VL_PLUGIN_KIND_MODEL},
    {"backend", VL_PLUGIN_KIND_BACKEND},
    {"generator", VL_PLUGIN_KIND_GENERATOR},  // optional: plugin = "" means none
};

bool is_plugin_key(const std::string& key) {
  for (const auto& s : kPluginSections) {
    if (key.rfind(std::string(s.section) + ".config.", 0) == 0) return true;
  }
  return false;
}

/// `backend.plugin = "auto"`: a device backend (torch-cuda) when one can be created here;
/// otherwise the fastest CPU backend on this machine, measured (train/backend_choice.hpp), among
/// those that can be created with their defaults and accept the keys of the user's
/// [backend.config]. The choice is written into the resolved config (the run's config.toml names
/// the backend that ran).
std::string choose_backend(const Registry& registry, const std::vector<std::string>& given_keys) {
  std::vector<const PluginRecord*> candidates;
  for (const auto& r : registry.records()) {
    if (r.ok() && r.kind == VL_PLUGIN_KIND_BACKEND && r.preference > 0) candidates.push_back(&r);
  }
  std::stable_sort(candidates.begin(), candidates.end(),
                   [](const PluginRecord* a, const PluginRecord* b) { return a->preference > b->preference; });
  std::string passed_over;
  const auto pass_over = [&passed_over](const std::string& name, const std::string& why) {
    passed_over += (passed_over.empty() ? "" : "; ") + name + ": " + why;
  };
  std::vector<std::string> cpu;
  for (const PluginRecord* r : candidates) {
    bool on_cpu = true;
    try {
      on_cpu = registry.create<Backend>(r->name, r->defaults_toml)->device().is_cpu();
    } catch (const Error& e) {
      pass_over(r->name, e.what());
      continue;
    }
    if (!given_keys.empty()) {
      const toml::table schema = parse_toml(r->defaults_toml, r->name + "/defaults.toml");
      std::string unknown;
      for (const std::string& key : given_keys) {
        if (!schema.contains(key)) unknown += (unknown.empty() ? "" : ", ") + key;
      }
      if (!unknown.empty()) {
        pass_over(r->name, "has no backend.config key " + unknown);
        continue;
      }
    }
    if (!on_cpu && cpu.empty()) {  // a device backend preferred over every CPU one
      logger().info("backend plugin = \"auto\": {}{}", r->name,
                    passed_over.empty() ? "" : " (passed over: " + passed_over + ")");
      return r->name;
    }
    if (on_cpu) cpu.push_back(r->name);
  }
  if (cpu.empty()) {
    throw ConfigError("backend.plugin = \"auto\": no backend can run here" +
                      (passed_over.empty() ? std::string(" (none was found)") : ": " + passed_over));
  }
  std::string choice = cpu.front();
  std::string why;
  if (cpu.size() > 1) {
    try {
      const BackendSpeeds speeds = cpu_backend_speeds(registry, cpu);
      choice = speeds.fastest;
      std::string figures;
      for (const std::string& name : cpu) {
        figures += (figures.empty() ? "" : ", ") + name + " " +
                   std::to_string(static_cast<int64_t>(speeds.images_per_second.at(name) + 0.5));
      }
      why = ", the fastest here (" + figures + " images/s training the paper's MLP; " + speeds.machine + "; " +
            (speeds.from_file ? "measured before, read from " + speeds.file.string()
                              : "measured now" + (speeds.file.empty() ? std::string() : ", kept in " + speeds.file.string())) +
            ")";
    } catch (const Error& e) {
      why = ", the most preferred CPU backend (not measured: " + std::string(e.what()) + ")";
    }
  }
  // Once per process at info (a study resolves every run's config); again only at debug.
  static std::set<std::string> said;
  const std::string line = "backend plugin = \"auto\": " + choice + why +
                           (passed_over.empty() ? "" : " (passed over: " + passed_over + ")");
  if (said.insert(line).second) {
    logger().info("{}", line);
  } else {
    logger().debug("{}", line);
  }
  return choice;
}

constexpr std::string_view kResolvedHeader = "# Resolved by vaelab ";

/// A config a run wrote (to_toml()) holds every key its vaelab knew, so a key missing from it came
/// later, and the run ran with that key's earlier behaviour. Where that behaviour is not the new
/// default, the key is filled in with it here, so that `vaelab eval` and `--resume` measure such a
/// run as it was measured.
void keep_earlier_behaviour(toml::table& resolved, const fs::path& file) {
  if (toml::table* amortization = resolved["eval"]["amortization"].as_table();
      amortization != nullptr && !amortization->contains("lr_schedule")) {
    // Before the schedule existed, q* was searched at a constant learning rate.
    amortization->insert("lr_schedule", "constant");
    logger().info("{}: written before eval.amortization.lr_schedule existed; read as lr_schedule = \"constant\", "
                  "the search its G_a was measured with (--set eval.amortization.lr_schedule changes it)",
                  file.string());
  }
}

}  // namespace

std::string_view core_defaults_toml() { return VAELAB_CORE_DEFAULTS_TOML; }

RunConfig RunConfig::load(const fs::path& file, const std::vector<std::string>& overrides) {
  toml::table user = read_toml_file(file);
  std::string first_line;
  std::ifstream in(file);
  std::getline(in, first_line);
  if (first_line.rfind(kResolvedHeader, 0) == 0) keep_earlier_behaviour(user, file);
  return resolve(user, overrides);
}

RunConfig RunConfig::resolve(const toml::table& user, const std::vector<std::string>& overrides) {
  const toml::table schema = parse_toml(core_defaults_toml(), "core/defaults.toml");
  std::vector<std::string> open_tables;
  for (const auto& s : kPluginSections) open_tables.push_back(std::string(s.section) + ".config");
  validate_against_schema(user, schema, "", open_tables);

  std::vector<Override> framework_overrides;
  std::vector<Override> plugin_overrides;
  for (const auto& o : overrides) {
    Override parsed = parse_override(o);
    (is_plugin_key(parsed.key) ? plugin_overrides : framework_overrides).push_back(parsed);
  }

  RunConfig config;
  config.table_ = merge_tables(schema, user);
  for (const auto& o : framework_overrides) apply_override(config.table_, schema, o);

  const ConfigTable plugins(*config.table_["plugins"].as_table(), "plugins");
  config.registry_ =
      std::make_shared<Registry>(Registry::search_path(plugins.get_string_array("paths")));

  // Each plugin's table: checked against and merged with the plugin's own defaults.toml.
  toml::table full_schema = schema;
  for (const auto& s : kPluginSections) {
    toml::table& section = *config.table_[s.section].as_table();
    std::string name = *section["plugin"].value<std::string>();
    if (name == "auto" && s.kind == VL_PLUGIN_KIND_BACKEND) {
      // The [backend.config] keys given in the file or by --set: auto keeps to backends that have them.
      std::vector<std::string> given_keys;
      if (const toml::table* given = section["config"].as_table(); given != nullptr) {
        for (const auto& [key, value] : *given) given_keys.emplace_back(key.str());
      }
      for (const auto& o : plugin_overrides) {
        const std::string prefix = "backend.config.";
        if (o.key.rfind(prefix, 0) == 0) given_keys.push_back(o.key.substr(prefix.size(), o.key.find('.', prefix.size()) - prefix.size()));
      }
      name = choose_backend(*config.registry_, given_keys);
      config.backend_chosen_by_auto_ = true;
      section.insert_or_assign("plugin", name);
    }
    if (name.empty() && s.kind == VL_PLUGIN_KIND_GENERATOR) {
      const toml::table* given = section["config"].as_table();
      if (given != nullptr && !given->empty()) {
        throw ConfigError(source_of(*given) + ": generator.config is set but generator.plugin is empty");
      }
      continue;
    }
    const PluginRecord& record = config.registry_->find(s.kind, name);
    const toml::table plugin_schema =
        parse_toml(record.defaults_toml, name + "/defaults.toml");
    const toml::table* user_table = section["config"].as_table();
    const toml::table empty;
    const toml::table& given = user_table != nullptr ? *user_table : empty;
    try {
      validate_against_schema(given, plugin_schema, std::string(s.section) + ".config");
    } catch (const ConfigError& e) {
      throw ConfigError(std::string(e.what()) + " (plugin " + name + "; its keys: vaelab plugins show " + name + ")");
    }
    section.insert_or_assign("config", merge_tables(plugin_schema, given));
    full_schema[s.section].as_table()->insert_or_assign("config", plugin_schema);
  }
  for (const auto& o : plugin_overrides) apply_override(config.table_, full_schema, o);
  return config;
}

ConfigTable RunConfig::section(std::string_view key) const {
  const toml::table* t = table_[key].as_table();
  if (t == nullptr) throw ConfigError(std::string(key) + ": missing section");
  return ConfigTable(*t, std::string(key));
}

std::string RunConfig::plugin(std::string_view section_name) const {
  return section(section_name).get_string("plugin");
}

std::string RunConfig::plugin_config(std::string_view section_name) const {
  return section(section_name).sub("config").to_toml();
}

std::string RunConfig::to_toml() const {
  std::ostringstream out;
  out << kResolvedHeader << VAELAB_VERSION << ": defaults merged, overrides applied.\n"
      << format_toml(table_) << "\n";
  return out.str();
}

}  // namespace vaelab
