// vaelab-conformance PLUGIN_FILE [--json]: loads one plugin file through the Registry, as the host
// loads plugins, runs the contract tests of its kind and prints a pass/fail table. Exit status 0
// when every check passed (or was skipped on request), 1 when any failed, 2 on a usage error.

#include <stdlib.h>

#include <cstdio>
#include <iomanip>
#include <iostream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <vaelab/build_info.h>
#include <vaelab/config.hpp>
#include <vaelab/error.hpp>
#include <vaelab/log.hpp>
#include <vaelab/plugin_kind.hpp>
#include <vaelab/registry.hpp>

#include "conformance.hpp"

namespace fs = std::filesystem;
using namespace vaelab;
using namespace vaelab::conformance;

namespace {

int usage_error(const std::string& message) {
  std::fprintf(stderr, "vaelab-conformance: error: %s\n", message.c_str());
  return 2;
}

/// "CxHxW" → (C, H, W); throws CLI::ValidationError.
void parse_shape(const std::string& text, int64_t& c, int64_t& h, int64_t& w) {
  long long a = 0, b = 0, d = 0;
  char x1 = 0, x2 = 0;
  if (std::sscanf(text.c_str(), "%lld%c%lld%c%lld", &a, &x1, &b, &x2, &d) != 5 || x1 != 'x' || x2 != 'x' ||
      a < 1 || b < 1 || d < 1 || a > 64 || b > 4096 || d > 4096) {
    throw CLI::ValidationError("shape", "'" + text + "' is not CxHxW (e.g. 1x32x32)");
  }
  c = a;
  h = b;
  w = d;
}

/// The config every instance is made from: the plugin's defaults, then --config, then --set.
std::string resolve_config(const PluginRecord& record, const Options& o) {
  if (o.config_file.empty() && o.overrides.empty()) return record.defaults_toml;
  const toml::table schema = parse_toml(record.defaults_toml, record.name + "/defaults.toml");
  toml::table table = schema;
  if (!o.config_file.empty()) {
    const toml::table user = read_toml_file(o.config_file);
    validate_against_schema(user, schema, "");
    table = merge_tables(schema, user);
  }
  for (const auto& s : o.overrides) apply_override(table, schema, parse_override(s));
  return format_toml(table);
}

/// A private folder for the run: the link the Registry scans and what checks write.
fs::path make_scratch() {
  std::string pattern = (fs::temp_directory_path() / "vaelab-conformance-XXXXXX").string();
  if (::mkdtemp(pattern.data()) == nullptr) {
    throw Error("cannot create a folder under " + fs::temp_directory_path().string());
  }
  return pattern;
}

void print_table(const fs::path& file, const std::vector<const PluginRecord*>& records,
                 const CheckList& checks) {
  std::cout << "vaelab-conformance " << VAELAB_VERSION << ": " << file.string() << "\n";
  std::string current;
  for (const auto& r : checks.results()) {
    if (r.plugin != current) {
      current = r.plugin;
      std::cout << "\n" << current;
      for (const PluginRecord* rec : records) {
        if (std::string(kind_name(rec->kind)) + " " + rec->name == current && !rec->version.empty()) {
          std::cout << " " << rec->version << " (ABI " << rec->abi << ")";
        }
      }
      std::cout << "\n  " << std::left << std::setw(30) << "CHECK" << std::setw(7) << "RESULT" << std::setw(9)
                << "SECONDS" << "DETAIL\n";
    }
    std::ostringstream seconds;
    seconds << std::fixed << std::setprecision(2) << r.seconds;
    std::cout << "  " << std::left << std::setw(30) << r.name << std::setw(7) << outcome_name(r.outcome)
              << std::setw(9) << seconds.str() << r.detail << "\n";
  }
  std::cout << "\n" << checks.count(Outcome::pass) << " passed, " << checks.count(Outcome::fail) << " failed, "
            << checks.count(Outcome::skip) << " skipped\n";
}

void print_json(const fs::path& file, const CheckList& checks) {
  nlohmann::json plugins = nlohmann::json::array();
  std::string current;
  for (const auto& r : checks.results()) {
    if (plugins.empty() || r.plugin != current) {
      current = r.plugin;
      plugins.push_back({{"plugin", r.plugin}, {"checks", nlohmann::json::array()}});
    }
    const char* result = r.outcome == Outcome::pass ? "pass" : r.outcome == Outcome::fail ? "fail" : "skip";
    plugins.back()["checks"].push_back(
        {{"name", r.name}, {"result", result}, {"seconds", r.seconds}, {"detail", r.detail}});
  }
  const nlohmann::json out = {{"file", file.string()},
                              {"plugins", plugins},
                              {"passed", checks.count(Outcome::pass)},
                              {"failed", checks.count(Outcome::fail)},
                              {"skipped", checks.count(Outcome::skip)},
                              {"ok", checks.count(Outcome::fail) == 0}};
  std::cout << out.dump(2) << "\n";
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  std::string file;
  std::string model_shape = "1x32x32";
  std::string generator_shape = "1x16x16";
  std::string log_level = "warn";
  bool list = false;
  CLI::App app{"vaelab-conformance: run the contract tests of a plugin's kind on one plugin file "
               "(docs/writing-a-plugin.md)"};
  app.add_option("PLUGIN_FILE", file, "libvaelab-<kind>-<name>.so");
  app.add_flag("--json", o.json, "Print the results as JSON");
  app.add_option("--config", o.config_file, "A TOML table merged over the plugin's defaults");
  app.add_option("--set", o.overrides, "key=value in the plugin's table (typed by its defaults)");
  app.add_option("--skip", o.skip, "A check not to run (reported as skipped)");
  app.add_option("--backend", o.backend, "The backend plugin models and generators are built on")
      ->capture_default_str();
  app.add_option("--plugin-path", o.plugin_paths, "A folder searched first for that backend");
  app.add_option("--image", model_shape, "Image shape models are built for, CxHxW")->capture_default_str();
  app.add_option("--generator-image", generator_shape, "Shape of the tiny set generators are fitted to, CxHxW")
      ->capture_default_str();
  app.add_option("--generator-images", o.generator_images, "Images in that set")
      ->check(CLI::Range(int64_t{1}, int64_t{100000}))
      ->capture_default_str();
  app.add_option("--fit-steps", o.fit_steps, "Optimizer steps of the generator fit")
      ->check(CLI::Range(int64_t{1}, int64_t{1000000}))
      ->capture_default_str();
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error, off")->capture_default_str();
  app.add_flag("--list", list, "List the checks of every kind and exit");
  try {
    app.parse(argc, argv);
    parse_shape(model_shape, o.model_channels, o.model_height, o.model_width);
    parse_shape(generator_shape, o.generator_channels, o.generator_height, o.generator_width);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  if (list) {
    for (const vl_plugin_kind kind : {VL_PLUGIN_KIND_BACKEND, VL_PLUGIN_KIND_MODEL, VL_PLUGIN_KIND_GENERATOR,
                                      VL_PLUGIN_KIND_DATA_SOURCE}) {
      std::cout << kind_name(kind) << ":";
      for (const auto& n : check_names(kind)) std::cout << " " << n;
      std::cout << "\n";
    }
    return 0;
  }
  if (file.empty()) return usage_error("PLUGIN_FILE is required (or --list)");

  try {
    set_log_level(log_level);
    o.plugin_file = fs::absolute(file);
    // Folders typed on the command line are taken from the current directory, explicitly.
    for (auto& dir : o.plugin_paths) dir = fs::absolute(dir).string();
    std::error_code ec;
    if (!fs::is_regular_file(o.plugin_file, ec)) return usage_error(file + ": no such file");
    const std::string base = o.plugin_file.filename().string();
    if (base.rfind("libvaelab-", 0) != 0 || base.size() < 14 || base.compare(base.size() - 3, 3, ".so") != 0) {
      return usage_error(file + ": a plugin file is named libvaelab-<kind>-<name>.so");
    }

    // The Registry scans folders: give it one holding only a link to this file.
    const fs::path scratch = make_scratch();
    struct Cleanup {
      fs::path dir;
      ~Cleanup() {
        std::error_code ignored;
        fs::remove_all(dir, ignored);
      }
    } cleanup{scratch};
    fs::create_directory(scratch / "plugin");
    fs::create_symlink(o.plugin_file, scratch / "plugin" / base);

    int failed = 0;
    {
      const Registry registry({scratch / "plugin"});
      CheckList checks(std::set<std::string>(o.skip.begin(), o.skip.end()));
      std::vector<const PluginRecord*> records;
      for (const PluginRecord& record : registry.records()) {
        records.push_back(&record);
        checks.set_plugin(record.name.empty() ? base : std::string(kind_name(record.kind)) + " " + record.name);
        checks.run("load", [&] {
          require(record.ok(), std::string(refusal_name(record.refusal)) + ": " + record.message);
          return "ABI " + record.abi + ", fingerprint equals the host's (" + record.fingerprint + ")";
        });
        if (!record.ok()) continue;
        std::string config;
        try {
          config = resolve_config(record, o);
        } catch (const Error& e) {
          return usage_error(std::string(e.what()) + " (plugin " + record.name + ")");
        }
        const Context context{registry, record, config, o, scratch};
        check_common(context, checks);
        switch (record.kind) {
          case VL_PLUGIN_KIND_MODEL: check_model(context, checks); break;
          case VL_PLUGIN_KIND_BACKEND: check_backend(context, checks); break;
          case VL_PLUGIN_KIND_DATA_SOURCE: check_data_source(context, checks); break;
          case VL_PLUGIN_KIND_GENERATOR: check_generator(context, checks); break;
          default: break;
        }
      }
      if (records.empty()) {
        checks.set_plugin(base);
        checks.run("load", []() -> std::string { throw CheckFailed("the registry found nothing in the file"); });
      }
      for (const auto& unknown : checks.unknown_skips()) {
        std::fprintf(stderr, "vaelab-conformance: warning: --skip %s names no check of this plugin\n",
                     unknown.c_str());
      }
      if (o.json) {
        print_json(o.plugin_file, checks);
      } else {
        print_table(o.plugin_file, records, checks);
      }
      failed = checks.count(Outcome::fail);
    }
    return failed == 0 ? 0 : 1;
  } catch (const std::exception& e) {
    return usage_error(e.what());
  }
}
