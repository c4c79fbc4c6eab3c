#pragma once
// The plugin conformance kit (`vaelab-conformance`): the contract tests every plugin of a kind
// must pass, run on a plugin file loaded through the Registry as the host loads it.
// docs/writing-a-plugin.md lists the checks.

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <vaelab/registry.hpp>

#include "check_list.hpp"

namespace vaelab::conformance {

/// What the command line asked for.
struct Options {
  std::filesystem::path plugin_file;
  bool json = false;
  std::filesystem::path config_file;       ///< a TOML table merged over the plugin's defaults
  std::vector<std::string> overrides;      ///< key=value, typed by the plugin's defaults
  std::vector<std::string> skip;           ///< check names not to run
  std::string backend = "torch-cpu";       ///< the backend models and generators are built on
  std::vector<std::string> plugin_paths;   ///< searched first for that backend (absolute)
  int64_t model_channels = 1;              ///< the image shape models are built for
  int64_t model_height = 32;
  int64_t model_width = 32;
  int64_t generator_channels = 1;          ///< the tiny training set generators are fitted to
  int64_t generator_height = 16;
  int64_t generator_width = 16;
  int64_t generator_images = 256;
  int64_t fit_steps = 3;
};

/// One descriptor under test.
struct Context {
  const Registry& registry;  ///< holds only the plugin file under test
  const PluginRecord& record;
  std::string config_toml;   ///< defaults, then --config, then --set: every instance's config
  const Options& options;
  std::filesystem::path scratch;  ///< a private folder, removed at exit
};

/// Checks every kind has: the descriptor, the defaults create an instance, a malformed config
/// comes back as a status, every key of defaults.toml is documented, and the given config creates
/// one.
void check_common(const Context& context, CheckList& checks);

void check_model(const Context& context, CheckList& checks);
void check_backend(const Context& context, CheckList& checks);
void check_data_source(const Context& context, CheckList& checks);
void check_generator(const Context& context, CheckList& checks);

/// The names of the checks of a kind, in the order they run (for --list and the docs).
std::vector<std::string> check_names(vl_plugin_kind kind);

}  // namespace vaelab::conformance
