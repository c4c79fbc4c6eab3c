// Plugin machinery: TOML parsing, schema validation against defaults.toml, merging, --set.
#include <vaelab/config.hpp>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <sstream>

namespace vaelab {
namespace {

// User text quoted in a message (a key, a --set argument, a value), with control characters
// escaped so that the message stays one line.
std::string printable(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte >= 0x20 && byte != 0x7f) {
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\r') {
      out += "\\r";
    } else {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\x%02x", byte);
      out += escaped;
    }
  }
  return out;
}

std::string join_path(const std::string& path, std::string_view key) {
  return path.empty() ? std::string(key) : path + "." + std::string(key);
}

std::string type_name(toml::node_type type) {
  switch (type) {
    case toml::node_type::table: return "a table";
    case toml::node_type::array: return "an array";
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a float";
    case toml::node_type::boolean: return "a boolean";
    case toml::node_type::date: return "a date";
    case toml::node_type::time: return "a time";
    case toml::node_type::date_time: return "a date-time";
    default: return "nothing";
  }
}

std::string format_region(const toml::source_region& region) {
  if (region.begin.line == 0) return {};
  const std::string file = region.path ? *region.path : std::string("<config>");
  return file + ":" + std::to_string(region.begin.line) + ":" +
         std::to_string(region.begin.column);
}

// "file:line:col: " or "".
std::string where(const toml::node& node) {
  const std::string source = source_of(node);
  return source.empty() ? std::string() : source + ": ";
}

// The same for a key (its own position, not its value's).
std::string where(const toml::key& key) {
  const std::string source = format_region(key.source());
  return source.empty() ? std::string() : source + ": ";
}

bool type_compatible(const toml::node& schema, const toml::node& value) {
  if (schema.type() == value.type()) return true;
  return schema.is_floating_point() && value.is_integer();
}

std::vector<std::string> keys_of(const toml::table& table) {
  std::vector<std::string> keys;
  for (const auto& [key, node] : table) keys.emplace_back(key.str());
  return keys;
}

std::string suggestion(std::string_view key, const toml::table& schema) {
  const std::string best = closest_match(key, keys_of(schema));
  return best.empty() ? std::string() : "; did you mean '" + best + "'?";
}

void check_array_elements(const toml::array& schema, const toml::array& value,
                          const std::string& key_path) {
  if (schema.empty()) return;  // no element type declared
  const toml::node& expected = *schema.get(0);
  for (size_t i = 0; i < value.size(); ++i) {
    const toml::node& element = *value.get(i);
    if (!type_compatible(expected, element)) {
      throw ConfigError(where(element) + key_path + "[" + std::to_string(i) + "]: expected " +
                        type_name(expected.type()) + ", got " + type_name(element.type()));
    }
  }
}

}  // namespace

// ---- ConfigTable ------------------------------------------------------------------------------

ConfigTable::ConfigTable(toml::table table, std::string path)
    : table_(std::move(table)), path_(std::move(path)) {}

ConfigTable ConfigTable::parse(std::string_view toml_text, std::string path) {
  return ConfigTable(parse_toml(toml_text, path.empty() ? "config" : path), path);
}

std::string ConfigTable::key_path(std::string_view key) const { return join_path(path_, key); }

const toml::node& ConfigTable::require(std::string_view key) const {
  const toml::node* node = table_.get(key);
  if (node == nullptr) throw ConfigError(key_path(key) + ": missing");
  return *node;
}

bool ConfigTable::contains(std::string_view key) const { return table_.contains(key); }

int64_t ConfigTable::get_int(std::string_view key) const {
  const toml::node& node = require(key);
  if (const auto v = node.value_exact<int64_t>()) return *v;
  throw ConfigError(where(node) + key_path(key) + ": expected an integer, got " +
                    type_name(node.type()));
}

double ConfigTable::get_double(std::string_view key) const {
  const toml::node& node = require(key);
  if (node.is_floating_point()) return *node.value<double>();
  if (node.is_integer()) return static_cast<double>(*node.value<int64_t>());
  throw ConfigError(where(node) + key_path(key) + ": expected a number, got " +
                    type_name(node.type()));
}

bool ConfigTable::get_bool(std::string_view key) const {
  const toml::node& node = require(key);
  if (const auto v = node.value_exact<bool>()) return *v;
  throw ConfigError(where(node) + key_path(key) + ": expected a boolean, got " +
                    type_name(node.type()));
}

std::string ConfigTable::get_string(std::string_view key) const {
  const toml::node& node = require(key);
  if (const auto v = node.value_exact<std::string>()) return *v;
  throw ConfigError(where(node) + key_path(key) + ": expected a string, got " +
                    type_name(node.type()));
}

std::vector<int64_t> ConfigTable::get_int_array(std::string_view key) const {
  const toml::node& node = require(key);
  const toml::array* array = node.as_array();
  if (array == nullptr) {
    throw ConfigError(where(node) + key_path(key) + ": expected an array of integers, got " +
                      type_name(node.type()));
  }
  std::vector<int64_t> out;
  for (size_t i = 0; i < array->size(); ++i) {
    const auto v = array->get(i)->value_exact<int64_t>();
    if (!v) {
      throw ConfigError(where(*array->get(i)) + key_path(key) + "[" + std::to_string(i) +
                        "]: expected an integer");
    }
    out.push_back(*v);
  }
  return out;
}

std::vector<std::string> ConfigTable::get_string_array(std::string_view key) const {
  const toml::node& node = require(key);
  const toml::array* array = node.as_array();
  if (array == nullptr) {
    throw ConfigError(where(node) + key_path(key) + ": expected an array of strings, got " +
                      type_name(node.type()));
  }
  std::vector<std::string> out;
  for (size_t i = 0; i < array->size(); ++i) {
    const auto v = array->get(i)->value_exact<std::string>();
    if (!v) {
      throw ConfigError(where(*array->get(i)) + key_path(key) + "[" + std::to_string(i) +
                        "]: expected a string");
    }
    out.push_back(*v);
  }
  return out;
}

int64_t ConfigTable::get_int_in(std::string_view key, int64_t lo, int64_t hi) const {
  const int64_t value = get_int(key);
  if (value < lo || value > hi) {
    throw ConfigError(where(require(key)) + key_path(key) + ": " + std::to_string(value) +
                      " is out of range [" + std::to_string(lo) + ", " + std::to_string(hi) +
                      "]");
  }
  return value;
}

std::string ConfigTable::get_choice(std::string_view key,
                                    const std::vector<std::string>& allowed) const {
  std::string value = get_string(key);
  if (std::find(allowed.begin(), allowed.end(), value) != allowed.end()) return value;
  std::string list;
  for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
  const std::string best = closest_match(value, allowed);
  throw ConfigError(where(require(key)) + key_path(key) + ": '" + printable(value) +
                    "' is not one of " + list +
                    (best.empty() ? "" : "; did you mean '" + best + "'?"));
}

ConfigTable ConfigTable::sub(std::string_view key) const {
  const toml::node* node = table_.get(key);
  if (node == nullptr) return ConfigTable(toml::table{}, key_path(key));
  if (const toml::table* t = node->as_table()) return ConfigTable(*t, key_path(key));
  throw ConfigError(where(*node) + key_path(key) + ": expected a table, got " +
                    type_name(node->type()));
}

std::string ConfigTable::to_toml() const { return format_toml(table_); }

// ---- free functions ---------------------------------------------------------------------------

namespace {

// toml++ 3.3 writes a key holding a single quote, a tab or a newline without quotes, which no TOML
// parser reads back (other characters are quoted and escaped as they should be). No vaelab key is
// like that, so such a key is refused by name here rather than written into a config file that
// fails later, far from its cause.
void check_writable_keys(const toml::node& node, const std::string& path) {
  if (const toml::table* table = node.as_table()) {
    for (const auto& [key, value] : *table) {
      const std::string_view name = key.str();
      const std::string key_path = join_path(path, name);
      if (name.find_first_of("'\t\n") != std::string_view::npos) {
        throw ConfigError(where(key) + "key '" + printable(key_path) +
                          "': a key holding a single quote, a tab or a newline cannot be written "
                          "to a config file");
      }
      check_writable_keys(value, key_path);
    }
  } else if (const toml::array* array = node.as_array()) {
    for (size_t i = 0; i < array->size(); ++i) {
      check_writable_keys(*array->get(i), path + "[" + std::to_string(i) + "]");
    }
  }
}

bool holds_newline(const toml::node& node) {
  if (const toml::table* table = node.as_table()) {
    for (const auto& [key, value] : *table) {
      (void)key;
      if (holds_newline(value)) return true;
    }
  } else if (const toml::array* array = node.as_array()) {
    for (const auto& value : *array) {
      if (holds_newline(value)) return true;
    }
  } else if (const auto* text = node.as_string()) {
    return text->get().find_first_of("\r\n") != std::string::npos;
  }
  return false;
}

}  // namespace

std::string format_toml(const toml::table& table) {
  check_writable_keys(table, "");
  // A string holding a newline is written by toml++ 3.3 as a multi-line literal string when it can,
  // even when it holds ''' (where such a string ends). Tables with such strings are written with
  // every string a one-line basic string, escaped; others exactly as before.
  constexpr auto flags =
      (toml::toml_formatter::default_flags | toml::format_flags::relaxed_float_precision) &
      ~toml::format_flags::indent_sub_tables;
  constexpr auto escaped_flags = flags & ~toml::format_flags::allow_multi_line_strings &
                                 ~toml::format_flags::allow_literal_strings;
  std::ostringstream out;
  out << toml::toml_formatter(table, holds_newline(table) ? escaped_flags : flags);
  return out.str();
}

std::string source_of(const toml::node& node) { return format_region(node.source()); }

Override parse_override(std::string_view argument) {
  const size_t eq = argument.find('=');
  if (eq == std::string_view::npos || eq == 0) {
    throw ConfigError("--set '" + printable(argument) + "': expected key.path=value");
  }
  Override o{std::string(argument.substr(0, eq)), std::string(argument.substr(eq + 1))};
  const auto trim = [](std::string& s) {
    s.erase(0, s.find_first_not_of(" \t"));
    s.erase(s.find_last_not_of(" \t") + 1);
  };
  trim(o.key);
  trim(o.value);
  if (o.key.empty() || o.key.front() == '.' || o.key.back() == '.' ||
      o.key.find("..") != std::string::npos) {
    throw ConfigError("--set '" + printable(argument) + "': '" + printable(o.key) +
                      "' is not a key path like train.epochs");
  }
  return o;
}

toml::table parse_toml(std::string_view text, std::string_view source) {
  try {
    return toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    const auto& begin = e.source().begin;
    throw ConfigError(std::string(source) + ":" + std::to_string(begin.line) + ":" +
                      std::to_string(begin.column) + ": " + printable(e.description()));
  }
}

toml::table read_toml_file(const std::filesystem::path& file) {
  std::error_code ec;
  if (!std::filesystem::exists(file, ec)) {
    throw ConfigError(file.string() + ": no such config file");
  }
  if (std::filesystem::is_directory(file, ec)) {
    throw ConfigError(file.string() + ": is a folder, expected a TOML config file");
  }
  try {
    return toml::parse_file(file.string());
  } catch (const toml::parse_error& e) {
    const auto& begin = e.source().begin;
    throw ConfigError(file.string() + ":" + std::to_string(begin.line) + ":" +
                      std::to_string(begin.column) + ": " + printable(e.description()));
  }
}

void validate_against_schema(const toml::table& user, const toml::table& schema,
                             const std::string& path,
                             const std::vector<std::string>& open_tables) {
  for (const auto& [key, node] : user) {
    const std::string key_path = join_path(path, key.str());
    const toml::node* expected = schema.get(key.str());
    if (expected == nullptr) {
      throw ConfigError(where(key) + "unknown key '" + printable(key_path) + "'" +
                        suggestion(key.str(), schema));
    }
    if (!type_compatible(*expected, node)) {
      throw ConfigError(where(node) + key_path + ": expected " + type_name(expected->type()) +
                        ", got " + type_name(node.type()));
    }
    if (const toml::table* sub = node.as_table()) {
      if (std::find(open_tables.begin(), open_tables.end(), key_path) == open_tables.end()) {
        validate_against_schema(*sub, *expected->as_table(), key_path, open_tables);
      }
    } else if (const toml::array* array = node.as_array()) {
      check_array_elements(*expected->as_array(), *array, key_path);
    }
  }
}

toml::table merge_tables(const toml::table& defaults, const toml::table& user) {
  toml::table merged = defaults;
  for (const auto& [key, node] : user) {
    toml::node* base = merged.get(key.str());
    if (base != nullptr && base->is_table() && node.is_table()) {
      toml::table sub = merge_tables(*base->as_table(), *node.as_table());
      merged.insert_or_assign(key, std::move(sub));
    } else if (base != nullptr && base->is_floating_point() && node.is_integer()) {
      // Keep the schema's type so the resolved config reads back the same.
      merged.insert_or_assign(key, static_cast<double>(*node.value<int64_t>()));
    } else {
      merged.insert_or_assign(key, node);
    }
  }
  return merged;
}

namespace {

std::vector<std::string> split_path(const std::string& key) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    const size_t dot = key.find('.', start);
    parts.push_back(key.substr(start, dot - start));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return parts;
}

// Parses `text` as a TOML value (for arrays and quoted strings).
toml::table parse_value_table(const Override& o) {
  try {
    const std::string text = "v = " + o.value;
    return toml::parse(std::string_view(text), std::string_view("--set"));
  } catch (const toml::parse_error& e) {
    throw ConfigError("--set " + printable(o.key) + "=" + printable(o.value) +
                      ": not a TOML value (" + printable(e.description()) + ")");
  }
}

}  // namespace

void apply_override(toml::table& target, const toml::table& schema, const Override& o) {
  const std::vector<std::string> parts = split_path(o.key);
  const toml::table* schema_table = &schema;
  toml::table* target_table = &target;
  std::string walked;
  for (size_t i = 0; i < parts.size(); ++i) {
    const std::string& part = parts[i];
    const toml::node* expected = schema_table->get(part);
    if (expected == nullptr) {
      throw ConfigError("--set " + printable(o.key) + "=" + printable(o.value) + ": unknown key '" +
                        printable(join_path(walked, part)) + "'" + suggestion(part, *schema_table));
    }
    walked = join_path(walked, part);
    if (i + 1 < parts.size()) {
      if (!expected->is_table()) {
        throw ConfigError("--set " + printable(o.key) + "=" + printable(o.value) + ": '" + walked +
                          "' is not a table");
      }
      schema_table = expected->as_table();
      toml::node* next = target_table->get(part);
      if (next == nullptr || !next->is_table()) {
        target_table->insert_or_assign(part, toml::table{});
        next = target_table->get(part);
      }
      target_table = next->as_table();
      continue;
    }

    const std::string prefix = "--set " + printable(o.key) + "=" + printable(o.value) + ": ";
    const std::string& text = o.value;
    switch (expected->type()) {
      case toml::node_type::integer: {
        int64_t v = 0;
        const auto [end, err] = std::from_chars(text.data(), text.data() + text.size(), v);
        if (err != std::errc() || end != text.data() + text.size() || text.empty()) {
          throw ConfigError(prefix + "expected an integer (the type of " + o.key + ")");
        }
        target_table->insert_or_assign(part, v);
        break;
      }
      case toml::node_type::floating_point: {
        char* end = nullptr;
        const double v = std::strtod(text.c_str(), &end);
        if (text.empty() || end != text.c_str() + text.size() || !std::isfinite(v)) {
          throw ConfigError(prefix + "expected a number (the type of " + o.key + ")");
        }
        target_table->insert_or_assign(part, v);
        break;
      }
      case toml::node_type::boolean: {
        if (text != "true" && text != "false") {
          throw ConfigError(prefix + "expected true or false (the type of " + o.key + ")");
        }
        target_table->insert_or_assign(part, text == "true");
        break;
      }
      case toml::node_type::string: {
        if (!text.empty() && (text.front() == '"' || text.front() == '\'')) {
          const toml::table parsed = parse_value_table(o);
          const auto v = parsed["v"].value_exact<std::string>();
          if (!v) throw ConfigError(prefix + "expected a string");
          target_table->insert_or_assign(part, *v);
        } else {
          target_table->insert_or_assign(part, text);
        }
        break;
      }
      case toml::node_type::array: {
        const toml::table parsed = parse_value_table(o);
        const toml::array* array = parsed["v"].as_array();
        if (array == nullptr) {
          throw ConfigError(prefix + "expected an array like [1, 2] (the type of " + o.key + ")");
        }
        check_array_elements(*expected->as_array(), *array, o.key);
        target_table->insert_or_assign(part, *array);
        break;
      }
      default:
        throw ConfigError(prefix + "'" + o.key + "' is " + type_name(expected->type()) +
                          "; set one of its keys instead");
    }
  }
}

std::string closest_match(std::string_view word, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_distance = std::max<size_t>(2, word.size() / 3) + 1;
  for (const auto& candidate : candidates) {
    // A prefix of a known word ("gauss" for "gaussian") is a near miss whatever its length.
    if (word.size() >= 3 && candidate.size() > word.size() && candidate.compare(0, word.size(), word) == 0) {
      return candidate;
    }
    // Levenshtein distance, two rows.
    std::vector<size_t> prev(candidate.size() + 1);
    std::vector<size_t> cur(candidate.size() + 1);
    for (size_t j = 0; j <= candidate.size(); ++j) prev[j] = j;
    for (size_t i = 1; i <= word.size(); ++i) {
      cur[0] = i;
      for (size_t j = 1; j <= candidate.size(); ++j) {
        const size_t substitution = prev[j - 1] + (word[i - 1] == candidate[j - 1] ? 0 : 1);
        cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, substitution});
      }
      std::swap(prev, cur);
    }
    if (prev[candidate.size()] < best_distance) {
      best_distance = prev[candidate.size()];
      best = candidate;
    }
  }
  return best;
}

}  // namespace vaelab
