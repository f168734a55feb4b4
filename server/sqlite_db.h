// A small wrapper over one SQLite connection: statements prepared once and finalized with the
// connection, transactions, and SQLite's result codes turned into Status. Knows nothing of
// frames; server/frame_index.h is its user. Not thread-safe: the owner serializes calls.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/base/status.h"

namespace sd {

// `what: <SQLite's message>` with a code by cause: DataLoss for a corrupt file, ResourceExhausted
// for a full disk, IOError for I/O, busy and open failures, Internal otherwise.
Status SqlError(sqlite3* db, int rc, const std::string& what);

// Resets a statement (and drops its bindings) when a use of it ends, so that it holds no read
// snapshot open and the next use starts clean.
class StatementUse {
 public:
  explicit StatementUse(sqlite3_stmt* stmt) : stmt_(stmt) {}
  ~StatementUse() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  StatementUse(const StatementUse&) = delete;
  StatementUse& operator=(const StatementUse&) = delete;

 private:
  sqlite3_stmt* stmt_;
};

void BindText(sqlite3_stmt* s, int i, const std::string& v);
// uint64 values above INT64_MAX keep their bit pattern; callers that order on a value check
// it is <= INT64_MAX (kMaxSqlInteger) first.
void BindU64(sqlite3_stmt* s, int i, uint64_t v);
uint64_t ColumnU64(sqlite3_stmt* s, int i);
std::string ColumnText(sqlite3_stmt* s, int i);  // empty for NULL
double ColumnDouble(sqlite3_stmt* s, int i);     // NaN for NULL (SQLite stores NaN as NULL)

constexpr uint64_t kMaxSqlInteger = static_cast<uint64_t>(INT64_MAX);

class SqliteDb {
 public:
  // Opens `path` (read-only, or read-write and created when missing) with extended result
  // codes and a 5 s busy timeout: another process (a sqlite3 shell, an export) may hold a
  // lock briefly, as may a writer's checkpoint for a reader.
  static StatusOr<std::unique_ptr<SqliteDb>> Open(const std::string& path, bool read_only);
  ~SqliteDb();  // finalizes every prepared statement, then closes the connection
  SqliteDb(const SqliteDb&) = delete;
  SqliteDb& operator=(const SqliteDb&) = delete;

  const std::string& path() const { return path_; }
  sqlite3* handle() const { return db_; }
  Status Error(int rc, const std::string& what) const { return SqlError(db_, rc, what); }

  // Prepares `sql` once for repeated use (each use wrapped in a StatementUse); the statement
  // lives as long as this connection. Errors name `path() + ": preparing '<sql>'"`.
  StatusOr<sqlite3_stmt*> Prepare(const std::string& sql);
  // Steps a statement that returns no rows (or whose rows are ignored) to completion, and
  // resets it.
  Status StepDone(sqlite3_stmt* stmt, const std::string& what) const;
  // Runs a multi-statement script (schema, pragmas) that returns nothing of interest; on
  // failure rolls back a transaction the script left open.
  Status Exec(const std::string& sql, const std::string& what) const;
  // The single value of a one-row query such as a PRAGMA; empty when there is no row.
  StatusOr<std::string> QueryText(const std::string& sql, const std::string& what) const;

  // BEGIN IMMEDIATE ("<what> (begin)" on error), COMMIT ("<what> (commit)"), and a ROLLBACK
  // that runs only when a transaction is open and whose own failure is ignored (the caller
  // reports the error that made it roll back).
  Status Begin(const std::string& what) const;
  Status Commit(const std::string& what) const;
  void RollbackIfOpen() const;
  bool in_transaction() const { return sqlite3_get_autocommit(db_) == 0; }

 private:
  SqliteDb(std::string path, sqlite3* db) : path_(std::move(path)), db_(db) {}
  Status PrepareTransactionStatements();

  const std::string path_;
  sqlite3* const db_;
  std::vector<sqlite3_stmt*> prepared_;  // finalized by the destructor
  sqlite3_stmt* begin_ = nullptr;
  sqlite3_stmt* commit_ = nullptr;
  sqlite3_stmt* rollback_ = nullptr;
};

}  // namespace sd
