#pragma once
// A thin RAII layer over SQLite's C API for the study database: errors become vaelab::Error
// naming the database file and the statement.

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

struct sqlite3;
struct sqlite3_stmt;

namespace vaelab::sql {

class Statement;

class Database {
 public:
  enum class Mode { read_only, read_write, create };
  Database(const std::filesystem::path& file, Mode mode);
  ~Database();
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  void exec(const std::string& sql);
  Statement prepare(const std::string& sql);
  const std::filesystem::path& file() const { return file_; }
  [[noreturn]] void fail(const std::string& what) const;

 private:
  std::filesystem::path file_;
  sqlite3* db_ = nullptr;
};

/// BEGIN IMMEDIATE … COMMIT; rolled back if destroyed before commit().
class Transaction {
 public:
  explicit Transaction(Database& db);
  ~Transaction();
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  void commit();

 private:
  Database& db_;
  bool done_ = false;
};

class Statement {
 public:
  Statement(Database& db, sqlite3_stmt* stmt, std::string sql);
  ~Statement();
  Statement(Statement&& other) noexcept;
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  Statement& operator=(Statement&&) = delete;

  /// Binds 1-based parameters; an empty optional binds NULL.
  Statement& bind(int index, const std::string& value);
  Statement& bind(int index, const char* value) { return bind(index, std::string(value)); }
  Statement& bind(int index, int64_t value);
  Statement& bind(int index, int value) { return bind(index, static_cast<int64_t>(value)); }
  Statement& bind(int index, double value);
  Statement& bind_null(int index);
  template <typename T>
  Statement& bind(int index, const std::optional<T>& value) {
    return value ? bind(index, *value) : bind_null(index);
  }
  /// Steps once: true while a row is available.
  bool step();
  /// Runs a statement that returns no rows.
  void run();
  void reset();

  bool is_null(int column) const;
  std::string text(int column) const;
  int64_t integer(int column) const;
  double real(int column) const;

 private:
  Database& db_;
  sqlite3_stmt* stmt_ = nullptr;
  std::string sql_;
};

}  // namespace vaelab::sql
