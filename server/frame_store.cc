#include "server/frame_store.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <utility>

#include <spdlog/spdlog.h>

namespace sd {
namespace {

namespace fs = std::filesystem;

// Bumped when the tables change incompatibly; a newer store is refused, not misread.
constexpr int kSchemaVersion = 2;  // 2: frames.embedding

constexpr char kSchema[] = R"sql(
CREATE TABLE IF NOT EXISTS frames(
  device_id TEXT NOT NULL,
  sequence INTEGER NOT NULL,
  frame_index INTEGER NOT NULL,
  capture_time_s REAL,            -- SQLite stores NaN as NULL; read back as NaN
  source_width INTEGER NOT NULL,
  source_height INTEGER NOT NULL,
  image_score REAL,
  validation INTEGER NOT NULL,
  labels TEXT NOT NULL,           -- EncodeLabels
  image_bytes INTEGER NOT NULL,   -- size of the image file, checked on load
  embedding BLOB,                 -- AppearanceEmbedding as float32s; NULL before version 2
  PRIMARY KEY(device_id, sequence)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS frames_by_kind ON frames(device_id, validation, sequence);
CREATE TABLE IF NOT EXISTS versions(
  device_id TEXT NOT NULL,
  version INTEGER NOT NULL,
  base_version INTEGER NOT NULL,
  encoding TEXT NOT NULL,
  weights_checksum TEXT NOT NULL,
  val_map50 REAL,
  created_ms INTEGER NOT NULL,
  checkpoint_bytes INTEGER NOT NULL,
  PRIMARY KEY(device_id, version)) WITHOUT ROWID;
-- One row per device with any frame or version: listing devices must not scan all frames.
CREATE TABLE IF NOT EXISTS devices(device_id TEXT PRIMARY KEY NOT NULL) WITHOUT ROWID;
)sql";

constexpr char kFrameColumns[] =
    "sequence, frame_index, capture_time_s, source_width, source_height, image_score, validation, labels, embedding";
constexpr char kVersionColumns[] = "version, base_version, encoding, weights_checksum, val_map50, created_ms";

constexpr uint64_t kMaxSqlInteger = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());

std::string Errno(int err) { return std::strerror(err); }

// Runs `fn` when the scope ends, however it ends.
template <typename F>
class Cleanup {
 public:
  explicit Cleanup(F fn) : fn_(std::move(fn)) {}
  ~Cleanup() { fn_(); }
  Cleanup(const Cleanup&) = delete;
  Cleanup& operator=(const Cleanup&) = delete;

 private:
  F fn_;
};

// ---- Files ---------------------------------------------------------------------------------

// Zero padded so that a directory listing is in sequence order.
std::string FrameFileName(uint64_t sequence) {
  char name[32];
  std::snprintf(name, sizeof(name), "%012llu.jpg", static_cast<unsigned long long>(sequence));
  return name;
}

std::string CheckpointFileName(uint64_t version) { return "v" + std::to_string(version) + ".sdw"; }

bool ParseUint64(const std::string& s, uint64_t* v) {
  if (s.empty()) return false;
  auto r = std::from_chars(s.data(), s.data() + s.size(), *v);
  return r.ec == std::errc() && r.ptr == s.data() + s.size();
}

// Creates `dir` (whose parent must exist) and makes its entry durable; Ok when it exists.
Status EnsureDir(Env* env, const std::string& dir) {
  const bool existed = env->FileExists(dir);
  SD_RETURN_IF_ERROR(env->CreateDir(dir));
  if (existed) return Status::Ok();
  return env->SyncDir(fs::path(dir).parent_path().string());
}

// Reads a file the index has a row for; a missing or resized file is data loss.
StatusOr<std::string> ReadFileChecked(Env* env, const std::string& path, int64_t expected_size) {
  StatusOr<std::string> bytes = env->ReadFile(path);
  if (!bytes.ok()) {
    if (bytes.status().code() == Status::Code::kNotFound) {
      return Status::DataLoss(path + ": missing, though the index has a row for it");
    }
    return bytes.status();
  }
  if (static_cast<int64_t>(bytes->size()) != expected_size) {
    return Status::DataLoss(path + ": " + std::to_string(bytes->size()) + " bytes, the index says " +
                            std::to_string(expected_size));
  }
  return bytes;
}

// ---- Labels --------------------------------------------------------------------------------
// "<class> <score> <x1> <y1> <x2> <y2>" per detection, detections joined by ';', floats in
// shortest round-trip form: compact, exact, and readable with the sqlite3 shell.

std::string FloatText(float v) {
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof(buf), v);
  return std::string(buf, r.ptr);
}

std::string EncodeLabels(const Detections& labels) {
  std::string out;
  for (const Detection& d : labels) {
    if (!out.empty()) out += ';';
    out += std::to_string(d.class_id) + ' ' + FloatText(d.score) + ' ' + FloatText(d.box.x1) + ' ' +
           FloatText(d.box.y1) + ' ' + FloatText(d.box.x2) + ' ' + FloatText(d.box.y2);
  }
  return out;
}

template <typename T>
bool ParseField(const char*& p, const char* end, char terminator, T* v) {
  auto r = std::from_chars(p, end, *v);
  if (r.ec != std::errc()) return false;
  p = r.ptr;
  if (terminator == '\0') return p == end || *p == ';';
  if (p == end || *p != terminator) return false;
  ++p;
  return true;
}

bool DecodeLabels(const std::string& text, Detections* labels) {
  const char* p = text.data();
  const char* end = p + text.size();
  while (p < end) {
    Detection d;
    if (!ParseField(p, end, ' ', &d.class_id) || !ParseField(p, end, ' ', &d.score) ||
        !ParseField(p, end, ' ', &d.box.x1) || !ParseField(p, end, ' ', &d.box.y1) ||
        !ParseField(p, end, ' ', &d.box.x2) || !ParseField(p, end, '\0', &d.box.y2)) {
      return false;
    }
    labels->push_back(d);
    if (p < end) {
      ++p;                         // the ';'
      if (p == end) return false;  // trailing separator
    }
  }
  return true;
}

// ---- SQLite --------------------------------------------------------------------------------

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

void BindText(sqlite3_stmt* s, int i, const std::string& v) {
  sqlite3_bind_text(s, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
}
// uint64 values above INT64_MAX keep their bit pattern; only sequence and version are ordered
// on, and those are checked to be <= INT64_MAX before they get here.
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

Status CheckDeviceId(const std::string& id) {
  if (!IsValidDeviceId(id)) {
    return Status::InvalidArgument("device id '" + id.substr(0, 80) +
                                   "' is not 1-64 characters of [A-Za-z0-9_.-] (it names a directory)");
  }
  return Status::Ok();
}

// The statements every write transaction uses (see InTransaction).
struct TxnStatements {
  sqlite3_stmt* begin = nullptr;
  sqlite3_stmt* commit = nullptr;
  sqlite3_stmt* rollback = nullptr;
  sqlite3_stmt* insert_device = nullptr;
};

}  // namespace

bool IsValidDeviceId(const std::string& id) {
  if (id.empty() || id.size() > 64 || id == "." || id == "..") return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
           c == '-';
  });
}

// All statements are prepared once at Open and reused; each use resets it (StatementUse).
struct FrameStore::Statements {
  TxnStatements txn;
  sqlite3_stmt* insert_frame = nullptr;
  sqlite3_stmt* frame_bytes = nullptr;
  sqlite3_stmt* last_sequence = nullptr;
  sqlite3_stmt* count = nullptr;
  sqlite3_stmt* usage = nullptr;
  sqlite3_stmt* since = nullptr;
  sqlite3_stmt* newest_of_kind = nullptr;
  sqlite3_stmt* insert_version = nullptr;
  sqlite3_stmt* version_bytes = nullptr;
  sqlite3_stmt* latest_version = nullptr;
  sqlite3_stmt* versions = nullptr;
  sqlite3_stmt* devices = nullptr;
  sqlite3_stmt* frame_sizes = nullptr;
  sqlite3_stmt* delete_frame = nullptr;

  ~Statements() {
    for (sqlite3_stmt* s :
         {txn.begin, txn.commit, txn.rollback, txn.insert_device, insert_frame, frame_bytes, last_sequence, count,
          usage, newest_of_kind, since, insert_version, version_bytes, latest_version, versions, devices, frame_sizes, delete_frame}) {
      sqlite3_finalize(s);
    }
  }

  Status Prepare(sqlite3* db, const std::string& index_path) {
    const std::string frame_select = std::string("SELECT ") + kFrameColumns + " FROM frames ";
    const std::pair<sqlite3_stmt**, std::string> all[] = {
        {&txn.begin, "BEGIN IMMEDIATE"},
        {&txn.commit, "COMMIT"},
        {&txn.rollback, "ROLLBACK"},
        {&insert_frame,
         "INSERT OR IGNORE INTO frames(device_id, sequence, frame_index, capture_time_s, source_width, "
         "source_height, image_score, validation, labels, image_bytes, embedding) VALUES(?,?,?,?,?,?,?,?,?,?,?)"},
        {&txn.insert_device, "INSERT OR IGNORE INTO devices(device_id) VALUES(?)"},
        {&frame_bytes, "SELECT image_bytes FROM frames WHERE device_id = ? AND sequence = ?"},
        {&last_sequence, "SELECT MAX(sequence) FROM frames WHERE device_id = ?"},
        {&count, "SELECT COUNT(*) FROM frames WHERE device_id = ? AND validation = ?"},
        {&usage, "SELECT COUNT(*), COALESCE(SUM(image_bytes), 0) FROM frames WHERE device_id = ?"},
        {&since, frame_select + "WHERE device_id = ? AND sequence > ? ORDER BY sequence LIMIT ?"},
        {&newest_of_kind,
         frame_select + "WHERE device_id = ? AND validation = ? AND sequence <= ? ORDER BY sequence DESC LIMIT ?"},
        {&insert_version,
         "INSERT OR IGNORE INTO versions(device_id, version, base_version, encoding, weights_checksum, val_map50, "
         "created_ms, checkpoint_bytes) VALUES(?,?,?,?,?,?,?,?)"},
        {&version_bytes, "SELECT checkpoint_bytes FROM versions WHERE device_id = ? AND version = ?"},
        {&latest_version,
         std::string("SELECT ") + kVersionColumns + " FROM versions WHERE device_id = ? ORDER BY version DESC LIMIT 1"},
        {&versions,
         std::string("SELECT ") + kVersionColumns + " FROM versions WHERE device_id = ? ORDER BY version DESC LIMIT ?"},
        {&devices, "SELECT device_id FROM devices ORDER BY device_id"},
        {&frame_sizes,
         "SELECT sequence, validation, capture_time_s, image_bytes FROM frames WHERE device_id = ? ORDER BY sequence"},
        {&delete_frame, "DELETE FROM frames WHERE device_id = ? AND sequence = ?"},
    };
    for (const auto& [stmt, sql] : all) {
      const int rc =
          sqlite3_prepare_v3(db, sql.c_str(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT, stmt, nullptr);
      if (rc != SQLITE_OK) return SqlError(db, rc, index_path + ": preparing '" + sql + "'");
    }
    return Status::Ok();
  }
};

namespace {

// Steps a statement that returns no rows (or whose rows are ignored) to completion.
Status StepDone(sqlite3* db, sqlite3_stmt* stmt, const std::string& what) {
  StatementUse use(stmt);
  const int rc = sqlite3_step(stmt);
  if (rc != SQLITE_DONE && rc != SQLITE_ROW) return SqlError(db, rc, what);
  return Status::Ok();
}

// Runs a multi-statement script (schema, pragmas) that returns nothing of interest.
Status Exec(sqlite3* db, const std::string& sql, const std::string& what) {
  char* err = nullptr;
  const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
  sqlite3_free(err);  // sqlite3_errmsg(db) carries the same text
  if (rc != SQLITE_OK) {
    Status status = SqlError(db, rc, what);
    if (!sqlite3_get_autocommit(db)) sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
    return status;
  }
  return Status::Ok();
}

// The single value of a one-row query such as a PRAGMA; empty when there is no row.
StatusOr<std::string> QueryText(sqlite3* db, const std::string& sql, const std::string& what) {
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr);
  if (rc != SQLITE_OK) return SqlError(db, rc, what);
  Cleanup finalize([stmt] { sqlite3_finalize(stmt); });
  rc = sqlite3_step(stmt);
  if (rc == SQLITE_DONE) return std::string();
  if (rc != SQLITE_ROW) return SqlError(db, rc, what);
  return ColumnText(stmt, 0);
}

FrameRecord ReadFrameRow(sqlite3_stmt* s, const std::string& device_id) {
  FrameRecord r;
  r.device_id = device_id;
  r.sequence = ColumnU64(s, 0);
  r.frame_index = sqlite3_column_int64(s, 1);
  r.capture_time_s = ColumnDouble(s, 2);
  r.source_width = sqlite3_column_int(s, 3);
  r.source_height = sqlite3_column_int(s, 4);
  r.image_score = static_cast<float>(ColumnDouble(s, 5));
  r.validation = sqlite3_column_int(s, 6) != 0;
  // A blob whose size is not whole floats is not trusted: the frame simply has no embedding.
  const int embedding_bytes = sqlite3_column_bytes(s, 8);
  if (embedding_bytes > 0 && embedding_bytes % sizeof(float) == 0) {
    r.embedding.resize(embedding_bytes / sizeof(float));
    std::memcpy(r.embedding.data(), sqlite3_column_blob(s, 8), embedding_bytes);
  }
  return r;  // labels (column 7) and image_path are the caller's: they can fail / need the dir
}

// Commits one row (`insert` steps its statement, returning the SQLite code) plus the device's
// row in one transaction. `file` is the already durable file the row refers to: removed when
// the row surely did not commit; kept when the outcome is unknown (a failed COMMIT), since
// removing it could leave a committed row without its file. Next Open sweeps it if orphaned.
// Requires the store's mutex held.
template <typename Insert>
Status InTransaction(sqlite3* db, Env* env, const TxnStatements& s, const std::string& file, const std::string& what,
                     Insert insert, const std::string& device_id) {
  Status status = StepDone(db, s.begin, what + " (begin)");
  if (status.ok()) {
    const int rc = insert();
    if (rc != SQLITE_DONE) status = SqlError(db, rc, what);
  }
  if (status.ok()) {
    StatementUse use(s.insert_device);
    BindText(s.insert_device, 1, device_id);
    const int rc = sqlite3_step(s.insert_device);
    if (rc != SQLITE_DONE) status = SqlError(db, rc, what + " (device row)");
  }
  if (!status.ok()) {
    if (!sqlite3_get_autocommit(db)) StepDone(db, s.rollback, "rollback").ok();
    env->RemoveFile(file).ok();
    return status;
  }
  status = StepDone(db, s.commit, what + " (commit)");
  if (!status.ok() && !sqlite3_get_autocommit(db)) StepDone(db, s.rollback, "rollback").ok();
  return status;
}

// The stored file size of row (device, number) via `stmt` (frame_bytes or version_bytes);
// -1 when there is no such row. Requires the store's mutex held: the statement is reset
// before this returns, never after the caller has unlocked.
StatusOr<int64_t> StoredSize(sqlite3* db, sqlite3_stmt* stmt, const std::string& device_id, uint64_t number,
                             const std::string& what) {
  StatementUse use(stmt);
  BindText(stmt, 1, device_id);
  BindU64(stmt, 2, number);
  const int rc = sqlite3_step(stmt);
  if (rc == SQLITE_DONE) return int64_t{-1};
  if (rc != SQLITE_ROW) return SqlError(db, rc, what);
  return static_cast<int64_t>(sqlite3_column_int64(stmt, 0));
}

}  // namespace

FrameStore::FrameStore(std::string dir, Env* env, int lock_fd, bool read_only)
    : dir_(std::move(dir)), env_(env), lock_fd_(lock_fd), read_only_(read_only) {}

FrameStore::~FrameStore() {
  statements_.reset();  // statements must be finalized before the connection closes
  if (db_ != nullptr) sqlite3_close(db_);
  if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the flock
}

StatusOr<std::unique_ptr<FrameStore>> FrameStore::Open(const std::string& dir, Env* env) {
  if (env == nullptr) env = Env::Default();
  SD_RETURN_IF_ERROR(env->CreateDir(dir).WithContext("cannot create store directory"));
  // leveldb-style LOCK file: a second server on the same directory would sweep the first one's
  // in-progress files as orphans. flock is released by the kernel when the process dies.
  const std::string lock_path = dir + "/LOCK";
  const int lock_fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock_fd < 0) return Status::IOError(lock_path + ": cannot open: " + Errno(errno));
  if (::flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    ::close(lock_fd);
    if (err == EWOULDBLOCK) {
      return Status::FailedPrecondition(dir + ": store is already open (" + lock_path + " is locked)");
    }
    return Status::IOError(lock_path + ": cannot lock: " + Errno(err));
  }
  std::unique_ptr<FrameStore> store(new FrameStore(dir, env, lock_fd, /*read_only=*/false));
  SD_RETURN_IF_ERROR(EnsureDir(env, dir + "/frames"));
  SD_RETURN_IF_ERROR(EnsureDir(env, dir + "/models"));
  SD_RETURN_IF_ERROR(store->OpenIndex());
  SD_RETURN_IF_ERROR(store->RemoveOrphans());
  return store;
}

StatusOr<std::unique_ptr<FrameStore>> FrameStore::OpenReadOnly(const std::string& dir, Env* env) {
  if (env == nullptr) env = Env::Default();
  if (!env->FileExists(dir + "/index.sqlite")) {
    return Status::NotFound(dir + ": no frame store here (no index.sqlite)");
  }
  std::unique_ptr<FrameStore> store(new FrameStore(dir, env, /*lock_fd=*/-1, /*read_only=*/true));
  SD_RETURN_IF_ERROR(store->OpenIndex());
  return store;
}

Status FrameStore::CheckWritable(const std::string& what) const {
  if (read_only_) return Status::FailedPrecondition(dir_ + ": " + what + ": the store is open read-only");
  return Status::Ok();
}

Status FrameStore::OpenIndex() {
  const std::string path = dir_ + "/index.sqlite";
  const int flags = read_only_ ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
  const int rc = sqlite3_open_v2(path.c_str(), &db_, flags, nullptr);
  if (rc != SQLITE_OK) return SqlError(db_, rc, path + ": cannot open");
  sqlite3_extended_result_codes(db_, 1);
  // A writer has the file to itself (LOCK), but a reader (a sqlite3 shell, an export) may hold
  // a lock briefly, as may the writer's checkpoint for a reader.
  sqlite3_busy_timeout(db_, 5000);
  if (read_only_) {
    // Only the server sets the journal mode. Under WAL a reader takes no lock that a writer
    // waits for; under a rollback journal it would stall the server's commits.
    SD_ASSIGN_OR_RETURN(std::string mode, QueryText(db_, "PRAGMA journal_mode", path + ": reading the journal mode"));
    if (mode != "wal") return Status::FailedPrecondition(path + ": journal mode '" + mode + "', not WAL");
  } else {
    SD_ASSIGN_OR_RETURN(std::string mode, QueryText(db_, "PRAGMA journal_mode=WAL", path + ": setting WAL mode"));
    if (mode != "wal") return Status::FailedPrecondition(path + ": cannot use WAL journal (got '" + mode + "')");
    // FULL: each commit fsyncs the WAL, so a row Put returned for survives power loss.
    SD_RETURN_IF_ERROR(Exec(db_, "PRAGMA synchronous=FULL", path + ": setting synchronous=FULL"));
  }
  SD_ASSIGN_OR_RETURN(std::string version_text,
                      QueryText(db_, "PRAGMA user_version", path + ": reading schema version"));
  const int version = std::atoi(version_text.c_str());
  if (version > kSchemaVersion) {
    return Status::FailedPrecondition(path + ": schema version " + std::to_string(version) +
                                      " is newer than this server's " + std::to_string(kSchemaVersion));
  }
  if (read_only_) {
    // A server sets the version with the tables, in one transaction.
    if (version == 0) return Status::FailedPrecondition(path + ": not a frame store index (no tables)");
    if (version != kSchemaVersion)
      return Status::FailedPrecondition(path + ": schema version " + std::to_string(version) +
                                        "; start the server on it once to upgrade it to " +
                                        std::to_string(kSchemaVersion));
    statements_ = std::make_unique<Statements>();
    return statements_->Prepare(db_, path);
  }
  if (version == 1) {  // frames stored before then keep a NULL embedding
    SD_RETURN_IF_ERROR(Exec(db_, "BEGIN IMMEDIATE;ALTER TABLE frames ADD COLUMN embedding BLOB;PRAGMA user_version=2;COMMIT;",
                            path + ": upgrading the schema from version 1 to 2"));
    spdlog::info("{}: schema upgraded from version 1 to 2 (frame embeddings)", path);
  }
  SD_RETURN_IF_ERROR(Exec(
      db_,
      std::string("BEGIN IMMEDIATE;") + kSchema + "PRAGMA user_version=" + std::to_string(kSchemaVersion) + ";COMMIT;",
      path + ": creating tables"));
  statements_ = std::make_unique<Statements>();
  return statements_->Prepare(db_, path);
}

// Runs before the store is shared, so it needs no lock. A file is removed only when its name
// is one this store writes (or a temp file of one) and no row refers to it; anything else in
// the directories is left alone.
Status FrameStore::RemoveOrphans() {
  const std::string index_path = dir_ + "/index.sqlite";
  int removed = 0;
  // kind 0: frames/<device>/<seq>.jpg; kind 1: models/<device>/v<ver>.sdw.
  for (int kind = 0; kind < 2; ++kind) {
    const std::string root = dir_ + (kind == 0 ? "/frames" : "/models");
    SD_ASSIGN_OR_RETURN(const std::vector<std::string> devices, env_->ListDir(root));
    for (const std::string& device : devices) {
      if (!IsValidDeviceId(device)) continue;
      const std::string device_dir = root + "/" + device;
      StatusOr<std::vector<std::string>> names = env_->ListDir(device_dir);
      if (!names.ok()) {
        if (!env_->FileExists(device_dir + "/.")) continue;  // not a directory: not ours
        return names.status();
      }
      for (const std::string& name : *names) {
        const std::string path = device_dir + "/" + name;
        bool orphan = IsTempFileName(name);
        if (!orphan) {
          uint64_t number = 0;
          std::string expected;
          if (kind == 0 && name.size() > 4 && ParseUint64(name.substr(0, name.size() - 4), &number)) {
            expected = FrameFileName(number);
          } else if (kind == 1 && name.size() > 5 && name[0] == 'v' &&
                     ParseUint64(name.substr(1, name.size() - 5), &number)) {
            expected = CheckpointFileName(number);
          }
          if (expected.empty() || expected != name || number > kMaxSqlInteger) continue;  // not ours
          SD_ASSIGN_OR_RETURN(const int64_t size,
                              StoredSize(db_, kind == 0 ? statements_->frame_bytes : statements_->version_bytes, device,
                                         number, index_path + ": checking " + path));
          orphan = size < 0;
        }
        if (orphan) {
          const Status rm = env_->RemoveFile(path);
          if (!rm.ok() && rm.code() != Status::Code::kNotFound) return rm.WithContext("removing an orphan file");
          ++removed;
        }
      }
    }
  }
  if (removed > 0) spdlog::warn("{}: removed {} file(s) without an index row (left by a crash)", dir_, removed);
  return Status::Ok();
}

void FrameStore::Claim(const std::string& key, std::unique_lock<std::mutex>* lock) {
  released_.wait(*lock, [&] { return in_flight_.count(key) == 0; });
  in_flight_.insert(key);
}

void FrameStore::Release(const std::string& key) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    in_flight_.erase(key);
  }
  released_.notify_all();
}

StatusOr<bool> FrameStore::Put(const FrameRecord& frame) {
  SD_RETURN_IF_ERROR(CheckDeviceId(frame.device_id));
  const std::string what = "frame " + frame.device_id + "/" + std::to_string(frame.sequence);
  SD_RETURN_IF_ERROR(CheckWritable("storing " + what));
  if (frame.sequence == 0 || frame.sequence > kMaxSqlInteger) {
    return Status::InvalidArgument(what + ": sequence must be in [1, 2^63)");
  }
  if (frame.jpeg.empty()) return Status::InvalidArgument(what + ": no image bytes");
  const std::string index_path = dir_ + "/index.sqlite";
  const std::string key = "f " + frame.device_id + " " + std::to_string(frame.sequence);
  {
    std::unique_lock<std::mutex> lock(mu_);
    Claim(key, &lock);
    StatusOr<int64_t> existing =
        StoredSize(db_, statements_->frame_bytes, frame.device_id, frame.sequence, index_path + ": looking up " + what);
    if (!existing.ok() || *existing >= 0) {
      lock.unlock();
      Release(key);
      if (!existing.ok()) return existing.status();
      return false;
    }
  }
  // From here on this thread owns the key; the file is written without holding mu_.
  Cleanup release([&] { Release(key); });
  const std::string device_dir = dir_ + "/frames/" + frame.device_id;
  const std::string name = FrameFileName(frame.sequence);
  SD_RETURN_IF_ERROR(EnsureDir(env_, device_dir).WithContext(what));
  SD_RETURN_IF_ERROR(WriteFileDurably(env_, device_dir + "/" + name, frame.jpeg).WithContext(what));

  // The claim and the LOCK file mean no row for this key can have appeared since the check, so
  // the OR IGNORE never fires; it is there so that a broken invariant cannot turn into an
  // error path that unlinks a file another row refers to.
  std::lock_guard<std::mutex> lock(mu_);
  const Statements& s = *statements_;
  SD_RETURN_IF_ERROR(InTransaction(
      db_, env_, s.txn, device_dir + "/" + name, index_path + ": storing " + what,
      [&]() -> int {
        StatementUse use(s.insert_frame);
        BindText(s.insert_frame, 1, frame.device_id);
        BindU64(s.insert_frame, 2, frame.sequence);
        sqlite3_bind_int64(s.insert_frame, 3, frame.frame_index);
        sqlite3_bind_double(s.insert_frame, 4, frame.capture_time_s);
        sqlite3_bind_int(s.insert_frame, 5, frame.source_width);
        sqlite3_bind_int(s.insert_frame, 6, frame.source_height);
        sqlite3_bind_double(s.insert_frame, 7, frame.image_score);
        sqlite3_bind_int(s.insert_frame, 8, frame.validation ? 1 : 0);
        BindText(s.insert_frame, 9, EncodeLabels(frame.labels));
        sqlite3_bind_int64(s.insert_frame, 10, static_cast<sqlite3_int64>(frame.jpeg.size()));
        if (frame.embedding.empty()) {
          sqlite3_bind_null(s.insert_frame, 11);
        } else {
          sqlite3_bind_blob(s.insert_frame, 11, frame.embedding.data(),
                            static_cast<int>(frame.embedding.size() * sizeof(float)), SQLITE_TRANSIENT);
        }
        return sqlite3_step(s.insert_frame);
      },
      frame.device_id));
  return true;
}

uint64_t FrameStore::LastSequence(const std::string& device_id) const {
  std::lock_guard<std::mutex> lock(mu_);
  sqlite3_stmt* stmt = statements_->last_sequence;
  StatementUse use(stmt);
  BindText(stmt, 1, device_id);
  const int rc = sqlite3_step(stmt);
  if (rc != SQLITE_ROW) {
    spdlog::error("{}", SqlError(db_, rc, dir_ + "/index.sqlite: last sequence of " + device_id).ToString());
    return 0;
  }
  return ColumnU64(stmt, 0);  // MAX of no rows is NULL, which reads as 0
}

int64_t FrameStore::Count(const std::string& device_id, bool validation) const {
  std::lock_guard<std::mutex> lock(mu_);
  sqlite3_stmt* stmt = statements_->count;
  StatementUse use(stmt);
  BindText(stmt, 1, device_id);
  sqlite3_bind_int(stmt, 2, validation ? 1 : 0);
  const int rc = sqlite3_step(stmt);
  if (rc != SQLITE_ROW) {
    spdlog::error("{}", SqlError(db_, rc, dir_ + "/index.sqlite: counting frames of " + device_id).ToString());
    return 0;
  }
  return sqlite3_column_int64(stmt, 0);
}

StoredUsage FrameStore::Usage(const std::string& device_id) const {
  std::lock_guard<std::mutex> lock(mu_);
  sqlite3_stmt* stmt = statements_->usage;
  StatementUse use(stmt);
  BindText(stmt, 1, device_id);
  const int rc = sqlite3_step(stmt);
  if (rc != SQLITE_ROW) {
    spdlog::error("{}", SqlError(db_, rc, dir_ + "/index.sqlite: summing the frames of " + device_id).ToString());
    return {};
  }
  return {sqlite3_column_int64(stmt, 0), sqlite3_column_int64(stmt, 1)};
}

namespace {

// Reads all rows of a frame query; requires the store's mutex held by the caller.
StatusOr<std::vector<FrameRecord>> ReadFrames(sqlite3* db, sqlite3_stmt* stmt, const std::string& dir,
                                              const std::string& device_id, const std::string& what) {
  std::vector<FrameRecord> out;
  for (;;) {
    const int rc = sqlite3_step(stmt);
    if (rc == SQLITE_DONE) break;
    if (rc != SQLITE_ROW) return SqlError(db, rc, dir + "/index.sqlite: " + what);
    FrameRecord r = ReadFrameRow(stmt, device_id);
    if (!DecodeLabels(ColumnText(stmt, 7), &r.labels)) {
      return Status::DataLoss(dir + "/index.sqlite: frame " + device_id + "/" + std::to_string(r.sequence) +
                              ": malformed labels '" + ColumnText(stmt, 7).substr(0, 80) + "'");
    }
    r.image_path = dir + "/frames/" + device_id + "/" + FrameFileName(r.sequence);
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace

StatusOr<std::vector<FrameRecord>> FrameStore::NewestOfKind(const std::string& device_id, bool validation,
                                                            uint64_t max_sequence, int limit) const {
  SD_RETURN_IF_ERROR(CheckDeviceId(device_id));
  if (limit <= 0) return std::vector<FrameRecord>();
  std::vector<FrameRecord> out;
  {
    std::lock_guard<std::mutex> lock(mu_);
    sqlite3_stmt* stmt = statements_->newest_of_kind;
    StatementUse use(stmt);
    BindText(stmt, 1, device_id);
    sqlite3_bind_int(stmt, 2, validation ? 1 : 0);
    BindU64(stmt, 3, std::min(max_sequence, kMaxSqlInteger));
    sqlite3_bind_int(stmt, 4, limit);
    SD_ASSIGN_OR_RETURN(out, ReadFrames(db_, stmt, dir_, device_id,
                                        "newest frames of " + device_id + " up to " + std::to_string(max_sequence)));
  }
  std::reverse(out.begin(), out.end());  // the query takes the newest; callers want oldest first
  return out;
}

StatusOr<std::vector<FrameRecord>> FrameStore::Recent(const std::string& device_id, bool validation, int limit) const {
  return NewestOfKind(device_id, validation, kMaxSqlInteger, limit);
}

StatusOr<std::vector<FrameRecord>> FrameStore::Older(const std::string& device_id, bool validation,
                                                     uint64_t before_sequence, int limit) const {
  if (before_sequence == 0) return std::vector<FrameRecord>();
  return NewestOfKind(device_id, validation, before_sequence - 1, limit);
}

StatusOr<std::vector<FrameRecord>> FrameStore::Since(const std::string& device_id, uint64_t after_sequence,
                                                     int limit) const {
  SD_RETURN_IF_ERROR(CheckDeviceId(device_id));
  if (limit <= 0 || after_sequence >= kMaxSqlInteger) return std::vector<FrameRecord>();
  std::lock_guard<std::mutex> lock(mu_);
  sqlite3_stmt* stmt = statements_->since;
  StatementUse use(stmt);
  BindText(stmt, 1, device_id);
  BindU64(stmt, 2, after_sequence);
  sqlite3_bind_int(stmt, 3, limit);
  return ReadFrames(db_, stmt, dir_, device_id, "frames of " + device_id + " since " + std::to_string(after_sequence));
}

StatusOr<std::string> FrameStore::LoadImage(const FrameRecord& frame) const {
  SD_RETURN_IF_ERROR(CheckDeviceId(frame.device_id));
  const std::string what = "frame " + frame.device_id + "/" + std::to_string(frame.sequence);
  int64_t size = -1;
  {
    std::lock_guard<std::mutex> lock(mu_);
    SD_ASSIGN_OR_RETURN(size, StoredSize(db_, statements_->frame_bytes, frame.device_id, frame.sequence,
                                         dir_ + "/index.sqlite: looking up " + what));
  }
  if (size < 0) return Status::NotFound(dir_ + ": " + what + " is not stored");
  // Files are immutable once their row exists, so reading outside the lock is safe.
  StatusOr<std::string> bytes =
      ReadFileChecked(env_, dir_ + "/frames/" + frame.device_id + "/" + FrameFileName(frame.sequence), size);
  if (!bytes.ok() && bytes.status().code() == Status::Code::kDataLoss) {
    // Prune may have deleted the row and then the file since the lookup: no longer stored,
    // which is not a loss.
    std::lock_guard<std::mutex> lock(mu_);
    SD_ASSIGN_OR_RETURN(size, StoredSize(db_, statements_->frame_bytes, frame.device_id, frame.sequence,
                                         dir_ + "/index.sqlite: looking up " + what));
    if (size < 0) return Status::NotFound(dir_ + ": " + what + " was pruned");
  }
  return bytes;
}

Status FrameStore::PutVersion(const VersionRecord& version, const std::string& checkpoint_bytes) {
  SD_RETURN_IF_ERROR(CheckDeviceId(version.device_id));
  const std::string what = "model " + version.device_id + " v" + std::to_string(version.version);
  SD_RETURN_IF_ERROR(CheckWritable("storing " + what));
  if (version.version == 0 || version.version > kMaxSqlInteger) {
    return Status::InvalidArgument(what + ": version must be in [1, 2^63)");
  }
  const std::string index_path = dir_ + "/index.sqlite";
  const std::string key = "v " + version.device_id + " " + std::to_string(version.version);
  {
    std::unique_lock<std::mutex> lock(mu_);
    Claim(key, &lock);
    StatusOr<int64_t> existing = StoredSize(db_, statements_->version_bytes, version.device_id, version.version,
                                            index_path + ": looking up " + what);
    if (!existing.ok() || *existing >= 0) {
      lock.unlock();
      Release(key);
      if (!existing.ok()) return existing.status();
      return Status::AlreadyExists(dir_ + ": " + what + " is already stored");
    }
  }
  Cleanup release([&] { Release(key); });
  const std::string device_dir = dir_ + "/models/" + version.device_id;
  const std::string name = CheckpointFileName(version.version);
  SD_RETURN_IF_ERROR(EnsureDir(env_, device_dir).WithContext(what));
  SD_RETURN_IF_ERROR(WriteFileDurably(env_, device_dir + "/" + name, checkpoint_bytes).WithContext(what));

  std::lock_guard<std::mutex> lock(mu_);
  const Statements& s = *statements_;
  return InTransaction(
      db_, env_, s.txn, device_dir + "/" + name, index_path + ": storing " + what,
      [&]() -> int {
        StatementUse use(s.insert_version);
        BindText(s.insert_version, 1, version.device_id);
        BindU64(s.insert_version, 2, version.version);
        BindU64(s.insert_version, 3, version.base_version);
        BindText(s.insert_version, 4, version.encoding);
        BindText(s.insert_version, 5, version.weights_checksum);
        sqlite3_bind_double(s.insert_version, 6, version.val_map50);
        sqlite3_bind_int64(s.insert_version, 7, version.created_ms);
        sqlite3_bind_int64(s.insert_version, 8, static_cast<sqlite3_int64>(checkpoint_bytes.size()));
        return sqlite3_step(s.insert_version);
      },
      version.device_id);
}

namespace {

// A row of kVersionColumns at `stmt`'s current step.
VersionRecord ReadVersionRow(sqlite3_stmt* stmt, const std::string& dir, const std::string& device_id) {
  VersionRecord v;
  v.device_id = device_id;
  v.version = ColumnU64(stmt, 0);
  v.base_version = ColumnU64(stmt, 1);
  v.encoding = ColumnText(stmt, 2);
  v.weights_checksum = ColumnText(stmt, 3);
  v.val_map50 = ColumnDouble(stmt, 4);
  v.created_ms = sqlite3_column_int64(stmt, 5);
  v.checkpoint_path = dir + "/models/" + device_id + "/" + CheckpointFileName(v.version);
  return v;
}

}  // namespace

StatusOr<VersionRecord> FrameStore::LatestVersion(const std::string& device_id) const {
  SD_RETURN_IF_ERROR(CheckDeviceId(device_id));
  std::lock_guard<std::mutex> lock(mu_);
  sqlite3_stmt* stmt = statements_->latest_version;
  StatementUse use(stmt);
  BindText(stmt, 1, device_id);
  const int rc = sqlite3_step(stmt);
  if (rc == SQLITE_DONE) return Status::NotFound(dir_ + ": device " + device_id + " has no stored model version");
  if (rc != SQLITE_ROW) return SqlError(db_, rc, dir_ + "/index.sqlite: latest version of " + device_id);
  return ReadVersionRow(stmt, dir_, device_id);
}

StatusOr<std::vector<VersionRecord>> FrameStore::Versions(const std::string& device_id, int limit) const {
  SD_RETURN_IF_ERROR(CheckDeviceId(device_id));
  std::vector<VersionRecord> versions;
  if (limit <= 0) return versions;
  std::lock_guard<std::mutex> lock(mu_);
  sqlite3_stmt* stmt = statements_->versions;
  StatementUse use(stmt);
  BindText(stmt, 1, device_id);
  sqlite3_bind_int(stmt, 2, limit);
  int rc;
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) versions.push_back(ReadVersionRow(stmt, dir_, device_id));
  if (rc != SQLITE_DONE) return SqlError(db_, rc, dir_ + "/index.sqlite: versions of " + device_id);
  std::reverse(versions.begin(), versions.end());
  return versions;
}

StatusOr<std::string> FrameStore::LoadCheckpoint(const VersionRecord& version) const {
  SD_RETURN_IF_ERROR(CheckDeviceId(version.device_id));
  const std::string what = "model " + version.device_id + " v" + std::to_string(version.version);
  int64_t size = -1;
  {
    std::lock_guard<std::mutex> lock(mu_);
    SD_ASSIGN_OR_RETURN(size, StoredSize(db_, statements_->version_bytes, version.device_id, version.version,
                                         dir_ + "/index.sqlite: looking up " + what));
  }
  if (size < 0) return Status::NotFound(dir_ + ": " + what + " is not stored");
  return ReadFileChecked(env_, dir_ + "/models/" + version.device_id + "/" + CheckpointFileName(version.version), size);
}

namespace {

// One stored frame as retention sees it.
struct StoredFrame {
  uint64_t sequence = 0;
  bool validation = false;
  double capture_time_s = 0;  // NaN when unknown: never counts as old
  int64_t bytes = 0;
  bool kept = false;    // in the replay window or the gate's set
  bool doomed = false;  // to be deleted
};

// The `k` frames of `pool` (in sequence order) at evenly spaced positions over all of it.
std::vector<StoredFrame*> Evenly(const std::vector<StoredFrame*>& pool, size_t k) {
  std::vector<StoredFrame*> picked;
  const size_t n = pool.size();
  k = std::min(k, n);
  // Positions (2j+1)n/2k are at least n/k >= 1 apart, so they are distinct and below n.
  for (size_t j = 0; j < k; ++j) picked.push_back(pool[(2 * j + 1) * n / (2 * k)]);
  return picked;
}

// Marks the frames to delete (see FrameStore::Prune) and tallies the result.
PruneResult ChooseDoomed(std::vector<StoredFrame>& frames, const RetentionBounds& bounds, const PruneKeep& keep) {
  PruneResult result;
  if (frames.empty()) return result;
  int replay_left = keep.replay_frames, validation_left = keep.validation_frames;
  for (auto it = frames.rbegin(); it != frames.rend(); ++it) {
    int& left = it->validation ? validation_left : replay_left;
    if (left > 0) it->kept = true, --left;
  }
  StoredFrame& newest = frames.back();
  result.frames_left = static_cast<int64_t>(frames.size());
  for (const StoredFrame& f : frames) result.bytes_left += f.bytes;
  auto doom = [&](StoredFrame* f) {
    if (f->doomed || f == &newest) return;
    f->doomed = true;
    ++result.deleted;
    result.deleted_bytes += f->bytes;
    --result.frames_left;
    result.bytes_left -= f->bytes;
    if (f->kept) ++(f->validation ? result.validation_deleted : result.replay_deleted);
  };
  if (bounds.max_age_s > 0) {
    double latest = -std::numeric_limits<double>::infinity();
    for (const StoredFrame& f : frames)
      if (std::isfinite(f.capture_time_s)) latest = std::max(latest, f.capture_time_s);
    for (StoredFrame& f : frames)
      if (std::isfinite(f.capture_time_s) && f.capture_time_s < latest - bounds.max_age_s) doom(&f);
  }
  auto within = [&](int64_t frames_left, int64_t bytes_left) {
    return (bounds.max_frames <= 0 || frames_left <= bounds.max_frames) &&
           (bounds.max_bytes <= 0 || bytes_left <= bounds.max_bytes);
  };
  if (within(result.frames_left, result.bytes_left)) return result;

  // Outside the kept windows: the fewest frames, thinned evenly per kind in proportion to its
  // share, that bring the device within bounds (found by bisection on the count).
  std::vector<StoredFrame*> pool[2];  // [validation]
  for (StoredFrame& f : frames)
    if (!f.kept && !f.doomed && &f != &newest) pool[f.validation].push_back(&f);
  const size_t total = pool[0].size() + pool[1].size();
  auto thinned = [&](size_t k) {
    const size_t k_val = std::min(pool[1].size(), (k * pool[1].size() + total / 2) / std::max<size_t>(total, 1));
    std::vector<StoredFrame*> picked = Evenly(pool[0], k - k_val);
    for (StoredFrame* f : Evenly(pool[1], k - picked.size())) picked.push_back(f);
    return picked;
  };
  auto fits = [&](size_t k) {
    int64_t bytes = 0;
    const std::vector<StoredFrame*> picked = thinned(k);
    for (const StoredFrame* f : picked) bytes += f->bytes;
    return within(result.frames_left - static_cast<int64_t>(picked.size()), result.bytes_left - bytes);
  };
  size_t lo = 0, hi = total;  // fits(hi) is assumed until checked; fits(lo) is false
  if (total > 0 && fits(total)) {
    while (hi - lo > 1) {
      const size_t mid = lo + (hi - lo) / 2;
      if (fits(mid)) {
        hi = mid;
      } else {
        lo = mid;
      }
    }
  }
  for (StoredFrame* f : thinned(hi)) doom(f);
  // Still over: the replay window from its oldest, then the gate's frames from their oldest.
  for (bool validation : {false, true})
    for (StoredFrame& f : frames)
      if (!within(result.frames_left, result.bytes_left) && f.kept && f.validation == validation) doom(&f);
  return result;
}

}  // namespace

StatusOr<PruneResult> FrameStore::Prune(const std::string& device_id, const RetentionBounds& bounds,
                                        const PruneKeep& keep) {
  SD_RETURN_IF_ERROR(CheckDeviceId(device_id));
  SD_RETURN_IF_ERROR(CheckWritable("pruning frames of " + device_id));
  const std::string index_path = dir_ + "/index.sqlite";
  std::lock_guard<std::mutex> prune_lock(prune_mu_);
  std::vector<StoredFrame> frames;
  {
    std::lock_guard<std::mutex> lock(mu_);
    sqlite3_stmt* stmt = statements_->frame_sizes;
    StatementUse use(stmt);
    BindText(stmt, 1, device_id);
    for (;;) {
      const int rc = sqlite3_step(stmt);
      if (rc == SQLITE_DONE) break;
      if (rc != SQLITE_ROW) return SqlError(db_, rc, index_path + ": listing frames of " + device_id);
      StoredFrame f;
      f.sequence = ColumnU64(stmt, 0);
      f.validation = sqlite3_column_int(stmt, 1) != 0;
      f.capture_time_s = ColumnDouble(stmt, 2);
      f.bytes = sqlite3_column_int64(stmt, 3);
      frames.push_back(f);
    }
  }
  PruneResult result = ChooseDoomed(frames, bounds, keep);
  if (result.deleted == 0) return result;

  std::vector<std::string> keys;
  {
    // Claimed like a Put's: a re-sent frame being stored under one of these names meanwhile
    // would otherwise lose its new file to the unlink below.
    std::unique_lock<std::mutex> lock(mu_);
    for (const StoredFrame& f : frames) {
      if (!f.doomed) continue;
      keys.push_back("f " + device_id + " " + std::to_string(f.sequence));
      Claim(keys.back(), &lock);
    }
  }
  Cleanup release([&] {
    for (const std::string& key : keys) Release(key);
  });
  {
    // Rows first, in one transaction; the files only once it committed. A crash in between
    // leaves files without rows, which Open removes; the other order could leave rows whose
    // files are gone, and every round reading them would fail with DataLoss.
    std::lock_guard<std::mutex> lock(mu_);
    const Statements& s = *statements_;
    const std::string what = index_path + ": pruning frames of " + device_id;
    Status status = StepDone(db_, s.txn.begin, what + " (begin)");
    for (const StoredFrame& f : frames) {
      if (!status.ok()) break;
      if (!f.doomed) continue;
      BindText(s.delete_frame, 1, device_id);
      BindU64(s.delete_frame, 2, f.sequence);
      status = StepDone(db_, s.delete_frame, what);
    }
    if (status.ok()) status = StepDone(db_, s.txn.commit, what + " (commit)");
    if (!status.ok()) {
      // The files stay: after a failed COMMIT the rows may still be there.
      if (!sqlite3_get_autocommit(db_)) StepDone(db_, s.txn.rollback, "rollback").ok();
      return status;
    }
  }
  // No directory fsync: an unlink lost to a power cut brings back a file without a row, which
  // the next Open removes.
  int failed = 0;
  Status first_failure;
  for (const StoredFrame& f : frames) {
    if (!f.doomed) continue;
    const Status rm = env_->RemoveFile(dir_ + "/frames/" + device_id + "/" + FrameFileName(f.sequence));
    if (!rm.ok() && rm.code() != Status::Code::kNotFound && failed++ == 0) first_failure = rm;
  }
  if (failed > 0)
    spdlog::warn("{}: {} pruned image file(s) of {} could not be removed (the next start removes them): {}", dir_,
                 failed, device_id, first_failure.ToString());
  return result;
}

std::vector<std::string> FrameStore::Devices() const {
  std::vector<std::string> out;
  std::lock_guard<std::mutex> lock(mu_);
  sqlite3_stmt* stmt = statements_->devices;
  StatementUse use(stmt);
  for (;;) {
    const int rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
      out.push_back(ColumnText(stmt, 0));
      continue;
    }
    if (rc != SQLITE_DONE) spdlog::error("{}", SqlError(db_, rc, dir_ + "/index.sqlite: listing devices").ToString());
    break;
  }
  return out;
}

}  // namespace sd
