#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include <toml++/toml.h>

#include <vaelab/error.hpp>

namespace vaelab {

/// A resolved config table (defaults merged, validated) with typed getters. Errors name the full
/// key path, e.g. "model.config.hidden: expected an integer, got a string".
class ConfigTable {
 public:
  ConfigTable() = default;
  /// `path` is the table's place in the run config ("model.config"), used in messages.
  ConfigTable(toml::table table, std::string path);
  /// Parses TOML text; `source` names it in parse errors.
  static ConfigTable parse(std::string_view toml_text, std::string path);

  int64_t get_int(std::string_view key) const;
  double get_double(std::string_view key) const;  ///< accepts integers too
  bool get_bool(std::string_view key) const;
  std::string get_string(std::string_view key) const;
  std::vector<int64_t> get_int_array(std::string_view key) const;
  std::vector<std::string> get_string_array(std::string_view key) const;
  /// get_int() that also checks lo <= value <= hi.
  int64_t get_int_in(std::string_view key, int64_t lo, int64_t hi) const;
  /// get_string() that also checks the value is one of `allowed`.
  std::string get_choice(std::string_view key, const std::vector<std::string>& allowed) const;
  /// A sub-table; an empty table when absent.
  ConfigTable sub(std::string_view key) const;
  bool contains(std::string_view key) const;

  const toml::table& table() const { return table_; }
  const std::string& path() const { return path_; }
  std::string key_path(std::string_view key) const;
  /// TOML text of the table.
  std::string to_toml() const;

 private:
  const toml::node& require(std::string_view key) const;
  toml::table table_;
  std::string path_;
};

/// One `--set key.path=value` override.
struct Override {
  std::string key;
  std::string value;
};

/// Splits "key.path=value"; throws ConfigError naming the argument when malformed.
Override parse_override(std::string_view argument);

/// Reads a TOML file; parse errors become "file:line:col: message".
toml::table read_toml_file(const std::filesystem::path& file);

/// Parses TOML text; errors become "source:line:col: message".
toml::table parse_toml(std::string_view text, std::string_view source);

/// Checks `user` against `schema` (a defaults table): every key must exist in the schema, with a
/// compatible type (an integer where a float is expected is accepted). Errors name
/// `file:line:col`, the key path under `path`, and suggest the closest known key. Tables whose key
/// path is listed in `open_tables` are not checked here (they belong to a plugin).
void validate_against_schema(const toml::table& user, const toml::table& schema,
                             const std::string& path,
                             const std::vector<std::string>& open_tables = {});

/// Deep merge: a copy of `defaults` with every value of `user` on top.
toml::table merge_tables(const toml::table& defaults, const toml::table& user);

/// Applies one override to `target`; the value is typed by the key's entry in `schema` (which must
/// already hold the key). Throws ConfigError naming the override when the key is unknown (with a
/// suggestion) or the value does not parse as the default's type.
void apply_override(toml::table& target, const toml::table& schema, const Override& override_);

/// The closest of `candidates` to `word` (edit distance), or "" when none is close.
std::string closest_match(std::string_view word, const std::vector<std::string>& candidates);

/// TOML text of a table: floats at their shortest round-trip precision, sub-tables not indented.
std::string format_toml(const toml::table& table);

/// Where a node came from, "file:line:col", or "" when unknown.
std::string source_of(const toml::node& node);

}  // namespace vaelab
