#pragma once
// The study database's schema (docs/study-database.md) and the writes the runner makes.

#include <filesystem>
#include <string>

#include "sqlite.hpp"

namespace vaelab::study_db {

constexpr int kSchemaVersion = 1;

/// FNV-1a 64 of `text`, as 16 hex digits.
std::string fnv1a_hex(const std::string& text);

/// Creates the tables (a new file) and turns on write-ahead logging.
void create_schema(sql::Database& db);
/// Refuses a database of another schema version, naming the file and both versions.
void check_schema(sql::Database& db);

std::string get_key(sql::Database& db, const std::string& key);  ///< "" when absent
void set_key(sql::Database& db, const std::string& key, const std::string& value);

}  // namespace vaelab::study_db
