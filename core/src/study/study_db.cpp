#include "study_db.hpp"

#include <cstdint>
#include <cstdio>
#include <ctime>

#include <vaelab/error.hpp>

namespace vaelab::study_db {

std::string fnv1a_hex(const std::string& text) {
  uint64_t h = 1469598103934665603ULL;
  for (const unsigned char c : text) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  char out[17];
  std::snprintf(out, sizeof out, "%016llx", static_cast<unsigned long long>(h));
  return out;
}

void create_schema(sql::Database& db) {
  db.exec("PRAGMA journal_mode = WAL");
  sql::Transaction t(db);
  db.exec(R"(
CREATE TABLE study (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE runs (
  id TEXT PRIMARY KEY,
  ordinal INTEGER NOT NULL,
  label TEXT NOT NULL,
  regime TEXT NOT NULL,
  seed INTEGER NOT NULL,
  axes TEXT NOT NULL,
  path_name TEXT,
  path_step INTEGER,
  purpose TEXT NOT NULL DEFAULT 'main',
  generator_key TEXT,
  config TEXT NOT NULL,
  status TEXT NOT NULL DEFAULT 'pending',
  owner TEXT,
  run_dir TEXT,
  started_utc TEXT,
  finished_utc TEXT,
  wall_seconds REAL,
  summary TEXT,
  error TEXT);
CREATE TABLE metrics (
  run_id TEXT NOT NULL REFERENCES runs(id),
  epoch INTEGER NOT NULL,
  point TEXT NOT NULL,
  PRIMARY KEY (run_id, epoch));
CREATE TABLE generators (
  key TEXT PRIMARY KEY,
  plugin TEXT NOT NULL,
  dir TEXT NOT NULL,
  pool TEXT,
  pool_images INTEGER,
  fit_seconds REAL,
  sample_seconds REAL,
  "check" TEXT,
  status TEXT NOT NULL DEFAULT 'pending');
)");
  sql::Statement put = db.prepare("INSERT INTO study (key, value) VALUES (?1, ?2)");
  put.bind(1, "schema_version").bind(2, std::to_string(kSchemaVersion)).run();
  t.commit();
}

void check_schema(sql::Database& db) {
  std::string version;
  try {
    version = get_key(db, "schema_version");
  } catch (const Error&) {
    throw Error(db.file().string() + ": not a vaelab study database (no study table)");
  }
  if (version != std::to_string(kSchemaVersion)) {
    throw Error(db.file().string() + ": study database schema version " +
                (version.empty() ? std::string("(none)") : version) + ", this vaelab reads version " +
                std::to_string(kSchemaVersion));
  }
}

std::string get_key(sql::Database& db, const std::string& key) {
  sql::Statement get = db.prepare("SELECT value FROM study WHERE key = ?1");
  get.bind(1, key);
  return get.step() ? get.text(0) : std::string();
}

void set_key(sql::Database& db, const std::string& key, const std::string& value) {
  db.prepare("INSERT INTO study (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value")
      .bind(1, key)
      .bind(2, value)
      .run();
}

}  // namespace vaelab::study_db
