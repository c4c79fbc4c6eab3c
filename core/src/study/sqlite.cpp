#include "sqlite.hpp"

#include <sqlite3.h>

#include <vaelab/error.hpp>

namespace vaelab::sql {

Database::Database(const std::filesystem::path& file, Mode mode) : file_(file) {
  int flags = SQLITE_OPEN_READONLY;
  if (mode == Mode::read_write) flags = SQLITE_OPEN_READWRITE;
  if (mode == Mode::create) flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
  if (mode != Mode::create) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(file, ec)) throw Error(file.string() + ": no study database here");
  }
  if (sqlite3_open_v2(file.string().c_str(), &db_, flags, nullptr) != SQLITE_OK) {
    const std::string message = db_ ? sqlite3_errmsg(db_) : "out of memory";
    sqlite3_close(db_);
    db_ = nullptr;
    throw Error(file.string() + ": cannot open the database: " + message);
  }
  sqlite3_busy_timeout(db_, 10000);
}

Database::~Database() { sqlite3_close(db_); }

void Database::fail(const std::string& what) const {
  throw Error(file_.string() + ": " + what + ": " + sqlite3_errmsg(db_));
}

void Database::exec(const std::string& sql) {
  char* message = nullptr;
  if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &message) != SQLITE_OK) {
    const std::string text = message ? message : "unknown error";
    sqlite3_free(message);
    throw Error(file_.string() + ": " + text + " (in: " + sql.substr(0, 80) + ")");
  }
}

Statement Database::prepare(const std::string& sql) {
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &stmt, nullptr) != SQLITE_OK) {
    fail("cannot prepare \"" + sql.substr(0, 80) + "\"");
  }
  return Statement(*this, stmt, sql);
}

Transaction::Transaction(Database& db) : db_(db) { db_.exec("BEGIN IMMEDIATE"); }
Transaction::~Transaction() {
  if (!done_) {
    try {
      db_.exec("ROLLBACK");
    } catch (...) {  // nothing more can be done in a destructor
    }
  }
}
void Transaction::commit() {
  db_.exec("COMMIT");
  done_ = true;
}

Statement::Statement(Database& db, sqlite3_stmt* stmt, std::string sql)
    : db_(db), stmt_(stmt), sql_(std::move(sql)) {}
Statement::~Statement() { sqlite3_finalize(stmt_); }
Statement::Statement(Statement&& other) noexcept
    : db_(other.db_), stmt_(other.stmt_), sql_(std::move(other.sql_)) {
  other.stmt_ = nullptr;
}

Statement& Statement::bind(int index, const std::string& value) {
  if (sqlite3_bind_text(stmt_, index, value.data(), static_cast<int>(value.size()), SQLITE_TRANSIENT) != SQLITE_OK) {
    db_.fail("cannot bind parameter " + std::to_string(index));
  }
  return *this;
}
Statement& Statement::bind(int index, int64_t value) {
  if (sqlite3_bind_int64(stmt_, index, value) != SQLITE_OK) db_.fail("cannot bind parameter " + std::to_string(index));
  return *this;
}
Statement& Statement::bind(int index, double value) {
  if (sqlite3_bind_double(stmt_, index, value) != SQLITE_OK) db_.fail("cannot bind parameter " + std::to_string(index));
  return *this;
}
Statement& Statement::bind_null(int index) {
  if (sqlite3_bind_null(stmt_, index) != SQLITE_OK) db_.fail("cannot bind parameter " + std::to_string(index));
  return *this;
}

bool Statement::step() {
  const int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  db_.fail("\"" + sql_.substr(0, 80) + "\" failed");
}
void Statement::run() {
  while (step()) {
  }
  reset();
}
void Statement::reset() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

bool Statement::is_null(int column) const { return sqlite3_column_type(stmt_, column) == SQLITE_NULL; }
std::string Statement::text(int column) const {
  const auto* p = sqlite3_column_text(stmt_, column);
  return p ? std::string(reinterpret_cast<const char*>(p), static_cast<size_t>(sqlite3_column_bytes(stmt_, column))) : std::string();
}
int64_t Statement::integer(int column) const { return sqlite3_column_int64(stmt_, column); }
double Statement::real(int column) const { return sqlite3_column_double(stmt_, column); }

}  // namespace vaelab::sql
