// The run config loader (core/src/plugin/config.cpp) as RunConfig::resolve drives it: parse the user's
// TOML, validate it against the framework schema (core/defaults.toml) with the plugins' tables
// open, merge the defaults in, validate and merge each plugin table against a plugin schema, apply
// --set overrides, then write the resolved config out and read it back, as a run folder's
// config.toml is read back by `vaelab eval`.
//
// Input: the TOML text, then optionally a NUL byte and --set arguments separated by NUL bytes.

#include <iterator>
#include <string>
#include <string_view>
#include <vector>

#include <vaelab/config.hpp>

#include "fuzz_common.hpp"
#include "fuzz_schemas.h"

namespace {

struct Section {
  const char* name;
  const char* schema_text;
};
constexpr Section kSections[] = {{"data", kDataSchema},
                                 {"model", kModelSchema},
                                 {"backend", kBackendSchema},
                                 {"generator", kGeneratorSchema}};

bool is_plugin_key(const std::string& key) {
  for (const auto& s : kSections) {
    if (key.rfind(std::string(s.name) + ".config.", 0) == 0) return true;
  }
  return false;
}

void resolve(std::string_view text, const std::vector<std::string>& arguments) {
  static const toml::table schema = vaelab::parse_toml(kCoreSchema, "core/defaults.toml");
  std::vector<std::string> open_tables;
  for (const auto& s : kSections) open_tables.push_back(std::string(s.name) + ".config");

  const toml::table user = vaelab::parse_toml(text, "fuzz.toml");
  vaelab::validate_against_schema(user, schema, "", open_tables);
  std::vector<vaelab::Override> framework;
  std::vector<vaelab::Override> plugin;
  for (const auto& a : arguments) {
    vaelab::Override o = vaelab::parse_override(a);
    (is_plugin_key(o.key) ? plugin : framework).push_back(o);
  }
  toml::table config = vaelab::merge_tables(schema, user);
  for (const auto& o : framework) vaelab::apply_override(config, schema, o);

  static const std::vector<toml::table> plugin_schemas = [] {
    std::vector<toml::table> out;
    for (const auto& s : kSections)
      out.push_back(vaelab::parse_toml(s.schema_text, "defaults.toml"));
    return out;
  }();
  toml::table full_schema = schema;
  for (size_t i = 0; i < std::size(kSections); ++i) {
    const Section& s = kSections[i];
    toml::table& section = *config[s.name].as_table();
    const toml::table& plugin_schema = plugin_schemas[i];
    const toml::table* given = section["config"].as_table();
    const toml::table empty;
    vaelab::validate_against_schema(given != nullptr ? *given : empty, plugin_schema,
                                    std::string(s.name) + ".config");
    section.insert_or_assign(
        "config", vaelab::merge_tables(plugin_schema, given != nullptr ? *given : empty));
    full_schema[s.name].as_table()->insert_or_assign("config", plugin_schema);
  }
  for (const auto& o : plugin) vaelab::apply_override(config, full_schema, o);

  // A resolved config must read back and validate: run folders depend on it.
  const std::string resolved = vaelab::format_toml(config);
  toml::table again;
  try {
    again = vaelab::parse_toml(resolved, "resolved.toml");
    vaelab::validate_against_schema(again, full_schema, "");
  } catch (const vaelab::Error& e) {
    std::fprintf(stderr, "finding: the resolved config does not read back: %s\n--- resolved:\n%s\n",
                 e.what(), resolved.c_str());
    std::abort();
  }
  // The typed getters the trainer uses, on every key of every section.
  for (const auto& [key, node] : again) {
    if (const toml::table* t = node.as_table()) {
      const vaelab::ConfigTable section(*t, std::string(key.str()));
      for (const auto& [k, v] : *t) {
        const std::string name(k.str());
        if (v.is_integer()) (void)section.get_int(name);
        if (v.is_floating_point() || v.is_integer()) (void)section.get_double(name);
        if (v.is_string()) (void)section.get_string(name);
        if (v.is_boolean()) (void)section.get_bool(name);
        if (v.is_table()) (void)section.sub(name).to_toml();
      }
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const size_t nul = input.find('\0');
  const std::string_view text = input.substr(0, nul);
  std::vector<std::string> arguments;
  if (nul != std::string_view::npos) {
    size_t start = nul + 1;
    while (start <= input.size() && arguments.size() < 16) {
      const size_t end = input.find('\0', start);
      arguments.emplace_back(
          input.substr(start, end == std::string_view::npos ? end : end - start));
      if (end == std::string_view::npos) break;
      start = end + 1;
    }
  }
  try {
    resolve(text, arguments);
  } catch (const vaelab::Error& e) {
    vaelab::fuzz::check_refusal(e);
  }
  return 0;
}
