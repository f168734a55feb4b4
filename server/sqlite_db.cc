#include "server/sqlite_db.h"

#include <limits>
#include <utility>

namespace sd {

Status SqlError(sqlite3* db, int rc, const std::string& what) {
  std::string msg = what + ": " + (db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
  switch (rc & 0xff) {
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return Status::DataLoss(msg);
    case SQLITE_FULL:
      return Status::ResourceExhausted(msg);
    case SQLITE_IOERR:
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_CANTOPEN:
      return Status::IOError(msg);
    default:
      return Status::Internal(msg);
  }
}

void BindText(sqlite3_stmt* s, int i, const std::string& v) {
  sqlite3_bind_text(s, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
}
void BindU64(sqlite3_stmt* s, int i, uint64_t v) { sqlite3_bind_int64(s, i, static_cast<sqlite3_int64>(v)); }
uint64_t ColumnU64(sqlite3_stmt* s, int i) { return static_cast<uint64_t>(sqlite3_column_int64(s, i)); }
std::string ColumnText(sqlite3_stmt* s, int i) {
  const unsigned char* text = sqlite3_column_text(s, i);
  return text ? std::string(reinterpret_cast<const char*>(text), sqlite3_column_bytes(s, i)) : std::string();
}
double ColumnDouble(sqlite3_stmt* s, int i) {
  if (sqlite3_column_type(s, i) == SQLITE_NULL) return std::numeric_limits<double>::quiet_NaN();
  return sqlite3_column_double(s, i);
}

StatusOr<std::unique_ptr<SqliteDb>> SqliteDb::Open(const std::string& path, bool read_only) {
  sqlite3* db = nullptr;
  const int flags = read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
  const int rc = sqlite3_open_v2(path.c_str(), &db, flags, nullptr);
  if (rc != SQLITE_OK) {
    Status status = SqlError(db, rc, path + ": cannot open");
    sqlite3_close(db);  // a handle is returned even on most failures; closing nullptr is a no-op
    return status;
  }
  std::unique_ptr<SqliteDb> out(new SqliteDb(path, db));
  sqlite3_extended_result_codes(db, 1);
  sqlite3_busy_timeout(db, 5000);
  SD_RETURN_IF_ERROR(out->PrepareTransactionStatements());
  return out;
}

SqliteDb::~SqliteDb() {
  for (sqlite3_stmt* s : prepared_) sqlite3_finalize(s);  // before the connection closes
  sqlite3_close(db_);
}

Status SqliteDb::PrepareTransactionStatements() {
  SD_ASSIGN_OR_RETURN(begin_, Prepare("BEGIN IMMEDIATE"));
  SD_ASSIGN_OR_RETURN(commit_, Prepare("COMMIT"));
  SD_ASSIGN_OR_RETURN(rollback_, Prepare("ROLLBACK"));
  return Status::Ok();
}

StatusOr<sqlite3_stmt*> SqliteDb::Prepare(const std::string& sql) {
  sqlite3_stmt* stmt = nullptr;
  const int rc =
      sqlite3_prepare_v3(db_, sql.c_str(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
  if (rc != SQLITE_OK) {
    sqlite3_finalize(stmt);
    return SqlError(db_, rc, path_ + ": preparing '" + sql + "'");
  }
  prepared_.push_back(stmt);
  return stmt;
}

Status SqliteDb::StepDone(sqlite3_stmt* stmt, const std::string& what) const {
  StatementUse use(stmt);
  const int rc = sqlite3_step(stmt);
  if (rc != SQLITE_DONE && rc != SQLITE_ROW) return SqlError(db_, rc, what);
  return Status::Ok();
}

Status SqliteDb::Exec(const std::string& sql, const std::string& what) const {
  char* err = nullptr;
  const int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err);
  sqlite3_free(err);  // sqlite3_errmsg(db) carries the same text
  if (rc != SQLITE_OK) {
    Status status = SqlError(db_, rc, what);
    if (in_transaction()) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    return status;
  }
  return Status::Ok();
}

StatusOr<std::string> SqliteDb::QueryText(const std::string& sql, const std::string& what) const {
  sqlite3_stmt* raw = nullptr;
  int rc = sqlite3_prepare_v2(db_, sql.c_str(), -1, &raw, nullptr);
  if (rc != SQLITE_OK) return SqlError(db_, rc, what);
  const std::unique_ptr<sqlite3_stmt, int (*)(sqlite3_stmt*)> stmt(raw, sqlite3_finalize);
  rc = sqlite3_step(raw);
  if (rc == SQLITE_DONE) return std::string();
  if (rc != SQLITE_ROW) return SqlError(db_, rc, what);
  return ColumnText(raw, 0);
}

Status SqliteDb::Begin(const std::string& what) const { return StepDone(begin_, what + " (begin)"); }

Status SqliteDb::Commit(const std::string& what) const { return StepDone(commit_, what + " (commit)"); }

void SqliteDb::RollbackIfOpen() const {
  if (in_transaction()) StepDone(rollback_, "rollback").ok();
}

}  // namespace sd
