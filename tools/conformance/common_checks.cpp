// The checks every kind has: the descriptor, creation from the defaults, a malformed config coming
// back as a status, and a documented defaults.toml.

#include <algorithm>
#include <sstream>
#include <string>
#include <vector>

#include <vaelab/config.hpp>
#include <vaelab/log.hpp>
#include <vaelab/plugin_kind.hpp>

#include "conformance.hpp"

namespace vaelab::conformance {
namespace {

/// Creates an instance through the C envelope, as the host does, and destroys it.
std::string create_and_destroy(const PluginRecord& record, const std::string& config_toml) {
  vl_status status{};
  status.struct_size = sizeof(vl_status);
  void* instance = nullptr;
  const vl_status_code code =
      record.descriptor->create(host_api(), config_toml.c_str(), &instance, &status);
  status.message[VL_STATUS_MESSAGE_CAPACITY - 1] = '\0';
  require(code == VL_STATUS_CODE_OK,
          std::string("create() failed: ") + (status.message[0] != '\0' ? status.message : "no message"));
  require(instance != nullptr, "create() returned OK and no instance");
  record.descriptor->destroy(instance);
  return "created and destroyed";
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

std::string trimmed(const std::string& s) {
  const size_t a = s.find_first_not_of(" \t\r");
  if (a == std::string::npos) return "";
  const size_t b = s.find_last_not_of(" \t\r");
  return s.substr(a, b - a + 1);
}

/// True when the line has a '#' outside of a quoted string.
bool has_comment(const std::string& line) {
  char quote = 0;
  for (size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quote != 0) {
      if (c == '\\' && quote == '"') {
        ++i;
      } else if (c == quote) {
        quote = 0;
      }
    } else if (c == '"' || c == '\'') {
      quote = c;
    } else if (c == '#') {
      return true;
    }
  }
  return false;
}

/// A key is documented by a comment on its own lines, or by the comment heading the block of
/// key lines it belongs to (e.g. "# Image shape." above channels, height and width).
bool documented(const std::vector<std::string>& lines, size_t first, size_t last) {
  for (size_t l = first; l <= last && l <= lines.size(); ++l) {
    if (has_comment(lines[l - 1])) return true;
  }
  for (size_t l = first; l-- > 1;) {
    const std::string t = trimmed(lines[l - 1]);
    if (t.empty() || t[0] == '[') return false;
    if (t[0] == '#') return true;
  }
  return false;
}

void undocumented_keys(const toml::table& table, const std::vector<std::string>& lines,
                       const std::string& prefix, std::vector<std::string>& missing) {
  for (const auto& [key, node] : table) {
    const std::string path = prefix + std::string(key.str());
    if (const toml::table* sub = node.as_table()) {
      undocumented_keys(*sub, lines, path + ".", missing);
      continue;
    }
    const auto first = static_cast<size_t>(key.source().begin.line);
    const auto last = static_cast<size_t>(node.source().end.line);
    if (first == 0 || !documented(lines, first, std::max(first, last))) missing.push_back(path);
  }
}

}  // namespace

void check_common(const Context& context, CheckList& checks) {
  const PluginRecord& record = context.record;

  checks.run("plugin.descriptor", [&] {
    const std::string file = context.options.plugin_file.filename().string();
    const std::string expected = "libvaelab-" + std::string(kind_name(record.kind)) + "-" + record.name + ".so";
    require(file == expected, "the file is named " + file + "; a " + std::string(kind_name(record.kind)) +
                                  " plugin named '" + record.name + "' is looked for as " + expected);
    require(!record.version.empty(), "the descriptor has no version");
    require(!record.description.empty(), "the descriptor has no description");
    require(record.description.find('\n') == std::string::npos, "the description is not one line");
    return std::string(kind_name(record.kind)) + " '" + record.name + "' " + record.version +
           ", ABI " + record.abi + ": " + record.description;
  });

  checks.run("defaults.documented", [&] {
    const toml::table defaults = parse_toml(record.defaults_toml, record.name + "/defaults.toml");
    std::vector<std::string> missing;
    undocumented_keys(defaults, lines_of(record.defaults_toml), "", missing);
    std::string list;
    for (const auto& m : missing) list += (list.empty() ? "" : ", ") + m;
    require(missing.empty(), "defaults.toml keys without a comment: " + list);
    return std::to_string(defaults.size()) + " top-level keys, each with a comment";
  });

  checks.run("create.defaults", [&] { return create_and_destroy(record, record.defaults_toml); });

  checks.run("create.bad_config", [&] {
    vl_status status{};
    status.struct_size = sizeof(vl_status);
    void* instance = static_cast<void*>(&status);  // must be reset, not left dangling
    const vl_status_code code =
        record.descriptor->create(host_api(), "= this is not TOML", &instance, &status);
    status.message[VL_STATUS_MESSAGE_CAPACITY - 1] = '\0';
    if (code == VL_STATUS_CODE_OK && instance != nullptr && instance != static_cast<void*>(&status)) {
      record.descriptor->destroy(instance);
    }
    require(code != VL_STATUS_CODE_OK, "create() accepted a config that is not TOML");
    require(code != VL_STATUS_CODE_INVALID, "create() returned the invalid status code 0");
    require(status.code == code, "the status written differs from the code returned");
    require(status.message[0] != '\0', "create() failed without a message");
    require(instance == nullptr, "create() failed and left *instance set");
    return std::string("refused: ") + status.message;
  }, {"create.defaults"});

  if (context.config_toml != record.defaults_toml) {
    checks.run("create.config", [&] { return create_and_destroy(record, context.config_toml); },
               {"create.defaults"});
  }
}

std::vector<std::string> check_names(vl_plugin_kind kind) {
  std::vector<std::string> names = {"load", "plugin.descriptor", "defaults.documented",
                                    "create.defaults", "create.bad_config", "create.config"};
  std::vector<std::string> specific;
  switch (kind) {
    case VL_PLUGIN_KIND_MODEL:
      specific = {"setup.backend", "model.build", "model.latent_shape", "model.encode_shape",
                  "model.decode_shape", "model.finite", "model.batch_independent",
                  "model.eval_deterministic", "model.gradients", "model.latent_adjacent",
                  "model.state_round_trip", "model.seeded_init"};
      break;
    case VL_PLUGIN_KIND_BACKEND:
      specific = {"backend.describe", "backend.threads", "backend.device", "backend.dense",
                  "backend.conv2d", "backend.conv_transpose2d", "backend.batch_norm2d"};
      break;
    case VL_PLUGIN_KIND_DATA_SOURCE:
      specific = {"data.open", "data.shapes", "data.labels", "data.values", "data.provenance",
                  "data.deterministic", "data.exact_log_likelihood"};
      break;
    case VL_PLUGIN_KIND_GENERATOR:
      specific = {"setup.backend", "generator.describe", "generator.fit", "generator.sample_shape",
                  "generator.seed_reproducible", "generator.save_load", "generator.load_missing"};
      break;
    default:
      break;
  }
  names.insert(names.end(), specific.begin(), specific.end());
  return names;
}

}  // namespace vaelab::conformance
