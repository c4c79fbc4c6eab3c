#pragma once
// The run config: a user's TOML resolved against the framework's and the plugins' defaults.
// The first stage of a run (docs/architecture.md).

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <toml++/toml.h>

#include <vaelab/config.hpp>
#include <vaelab/registry.hpp>

namespace vaelab {

/// The framework's own defaults (core/defaults.toml): the schema of a run config.
std::string_view core_defaults_toml();

/// A run config after resolution: the framework defaults merged under the user's file, the
/// plugins found, each plugin's `config` table checked against and merged with its
/// defaults.toml, and `--set` overrides applied (each typed by its key's default).
class RunConfig {
 public:
  static RunConfig load(const std::filesystem::path& file,
                        const std::vector<std::string>& overrides);
  /// The same from a parsed table (its nodes carry their file positions for messages).
  static RunConfig resolve(const toml::table& user, const std::vector<std::string>& overrides);

  const toml::table& table() const { return table_; }
  /// A framework section, e.g. "train".
  ConfigTable section(std::string_view key) const;
  /// The plugin named in a section ("data", "model", "backend").
  std::string plugin(std::string_view section) const;
  /// The section's resolved `config` table as TOML text, for the plugin's create().
  std::string plugin_config(std::string_view section) const;
  const Registry& registry() const { return *registry_; }
  /// True when backend.plugin was "auto" and resolved here (the table names the one chosen).
  bool backend_chosen_by_auto() const { return backend_chosen_by_auto_; }
  /// The full resolved config as TOML (what a run writes to config.toml).
  std::string to_toml() const;

 private:
  toml::table table_;
  std::shared_ptr<Registry> registry_;
  bool backend_chosen_by_auto_ = false;
};

}  // namespace vaelab
