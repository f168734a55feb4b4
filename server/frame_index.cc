#include "server/frame_index.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <utility>

#include <spdlog/spdlog.h>

#include "server/label_codec.h"

namespace sd {
namespace {

// Bumped when the tables change incompatibly; a newer store is refused, not misread.
constexpr int kSchemaVersion = 3;  // 2: frames.embedding; 3: frames.privacy

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
  privacy TEXT,                   -- the edge's mask declaration (FormatPrivacy); NULL before version 3
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
    "sequence, frame_index, capture_time_s, source_width, source_height, image_score, validation, labels, embedding, "
    "privacy";
constexpr char kVersionColumns[] = "version, base_version, encoding, weights_checksum, val_map50, created_ms";

// A row of kFrameColumns but the labels (column 7), which can fail to decode.
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
  r.privacy = ColumnText(s, 9);
  return r;
}

// A row of kVersionColumns.
VersionRecord ReadVersionRow(sqlite3_stmt* stmt, const std::string& device_id) {
  VersionRecord v;
  v.device_id = device_id;
  v.version = ColumnU64(stmt, 0);
  v.base_version = ColumnU64(stmt, 1);
  v.encoding = ColumnText(stmt, 2);
  v.weights_checksum = ColumnText(stmt, 3);
  v.val_map50 = ColumnDouble(stmt, 4);
  v.created_ms = sqlite3_column_int64(stmt, 5);
  return v;
}

// The stored file size of row (device, number) via `stmt`; -1 when there is no such row.
StatusOr<int64_t> StoredSize(const SqliteDb& db, sqlite3_stmt* stmt, const std::string& device_id, uint64_t number,
                             const std::string& what) {
  StatementUse use(stmt);
  BindText(stmt, 1, device_id);
  BindU64(stmt, 2, number);
  const int rc = sqlite3_step(stmt);
  if (rc == SQLITE_DONE) return int64_t{-1};
  if (rc != SQLITE_ROW) return db.Error(rc, what);
  return static_cast<int64_t>(sqlite3_column_int64(stmt, 0));
}

}  // namespace

// Prepared once at Open and reused; each use resets it (StatementUse). Owned by the SqliteDb.
struct FrameIndex::Statements {
  sqlite3_stmt* insert_device = nullptr;
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

  Status Prepare(SqliteDb* db) {
    const std::string frame_select = std::string("SELECT ") + kFrameColumns + " FROM frames ";
    const std::pair<sqlite3_stmt**, std::string> all[] = {
        {&insert_frame,
         "INSERT OR IGNORE INTO frames(device_id, sequence, frame_index, capture_time_s, source_width, "
         "source_height, image_score, validation, labels, image_bytes, embedding, privacy) "
         "VALUES(?,?,?,?,?,?,?,?,?,?,?,?)"},
        {&insert_device, "INSERT OR IGNORE INTO devices(device_id) VALUES(?)"},
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
      SD_ASSIGN_OR_RETURN(*stmt, db->Prepare(sql));
    }
    return Status::Ok();
  }
};

FrameIndex::FrameIndex(std::string path, std::unique_ptr<SqliteDb> db)
    : path_(std::move(path)), db_(std::move(db)) {}

FrameIndex::~FrameIndex() = default;  // the statements are finalized by db_

StatusOr<std::unique_ptr<FrameIndex>> FrameIndex::Open(const std::string& path, bool read_only) {
  SD_ASSIGN_OR_RETURN(std::unique_ptr<SqliteDb> db, SqliteDb::Open(path, read_only));
  std::unique_ptr<FrameIndex> index(new FrameIndex(path, std::move(db)));
  SD_RETURN_IF_ERROR(index->CreateOrCheckSchema(read_only));
  index->statements_ = std::make_unique<Statements>();
  SD_RETURN_IF_ERROR(index->statements_->Prepare(index->db_.get()));
  return index;
}

// Runs before the index is shared, so it needs no lock.
Status FrameIndex::CreateOrCheckSchema(bool read_only) {
  const SqliteDb& db = *db_;
  if (read_only) {
    // Only the server sets the journal mode. Under WAL a reader takes no lock that a writer
    // waits for; under a rollback journal it would stall the server's commits.
    SD_ASSIGN_OR_RETURN(std::string mode, db.QueryText("PRAGMA journal_mode", path_ + ": reading the journal mode"));
    if (mode != "wal") return Status::FailedPrecondition(path_ + ": journal mode '" + mode + "', not WAL");
  } else {
    SD_ASSIGN_OR_RETURN(std::string mode, db.QueryText("PRAGMA journal_mode=WAL", path_ + ": setting WAL mode"));
    if (mode != "wal") return Status::FailedPrecondition(path_ + ": cannot use WAL journal (got '" + mode + "')");
    // FULL: each commit fsyncs the WAL, so a row Put returned for survives power loss.
    SD_RETURN_IF_ERROR(db.Exec("PRAGMA synchronous=FULL", path_ + ": setting synchronous=FULL"));
  }
  SD_ASSIGN_OR_RETURN(std::string version_text,
                      db.QueryText("PRAGMA user_version", path_ + ": reading schema version"));
  const int version = std::atoi(version_text.c_str());
  if (version > kSchemaVersion) {
    return Status::FailedPrecondition(path_ + ": schema version " + std::to_string(version) +
                                      " is newer than this server's " + std::to_string(kSchemaVersion));
  }
  if (read_only) {
    // A server sets the version with the tables, in one transaction.
    if (version == 0) return Status::FailedPrecondition(path_ + ": not a frame store index (no tables)");
    if (version != kSchemaVersion)
      return Status::FailedPrecondition(path_ + ": schema version " + std::to_string(version) +
                                        "; start the server on it once to upgrade it to " +
                                        std::to_string(kSchemaVersion));
    return Status::Ok();
  }
  if (version == 1) {  // frames stored before then keep a NULL embedding
    SD_RETURN_IF_ERROR(
        db.Exec("BEGIN IMMEDIATE;ALTER TABLE frames ADD COLUMN embedding BLOB;PRAGMA user_version=2;COMMIT;",
                path_ + ": upgrading the schema from version 1 to 2"));
    spdlog::info("{}: schema upgraded from version 1 to 2 (frame embeddings)", path_);
  }
  if (version >= 1 && version <= 2) {  // frames stored before then keep a NULL declaration
    SD_RETURN_IF_ERROR(
        db.Exec("BEGIN IMMEDIATE;ALTER TABLE frames ADD COLUMN privacy TEXT;PRAGMA user_version=3;COMMIT;",
                path_ + ": upgrading the schema from version 2 to 3"));
    spdlog::info("{}: schema upgraded from version 2 to 3 (privacy mask declarations)", path_);
  }
  return db.Exec(
      std::string("BEGIN IMMEDIATE;") + kSchema + "PRAGMA user_version=" + std::to_string(kSchemaVersion) + ";COMMIT;",
      path_ + ": creating tables");
}

StatusOr<int64_t> FrameIndex::FrameBytes(const std::string& device_id, uint64_t sequence,
                                         const std::string& what) const {
  std::lock_guard<std::mutex> lock(mu_);
  return StoredSize(*db_, statements_->frame_bytes, device_id, sequence, what);
}

StatusOr<int64_t> FrameIndex::CheckpointBytes(const std::string& device_id, uint64_t version,
                                              const std::string& what) const {
  std::lock_guard<std::mutex> lock(mu_);
  return StoredSize(*db_, statements_->version_bytes, device_id, version, what);
}

template <typename Insert>
Status FrameIndex::CommitRow(Insert insert, const std::string& device_id, const std::string& what,
                             bool* maybe_committed) const {
  *maybe_committed = false;
  Status status = db_->Begin(what);
  if (status.ok()) {
    const int rc = insert();
    if (rc != SQLITE_DONE) status = db_->Error(rc, what);
  }
  if (status.ok()) {
    sqlite3_stmt* stmt = statements_->insert_device;
    StatementUse use(stmt);
    BindText(stmt, 1, device_id);
    const int rc = sqlite3_step(stmt);
    if (rc != SQLITE_DONE) status = db_->Error(rc, what + " (device row)");
  }
  if (!status.ok()) {
    db_->RollbackIfOpen();
    return status;
  }
  status = db_->Commit(what);
  if (!status.ok()) {
    // The outcome is unknown: the row may be durable even though COMMIT reported an error.
    *maybe_committed = true;
    db_->RollbackIfOpen();
  }
  return status;
}

Status FrameIndex::InsertFrame(const FrameRecord& frame, int64_t file_bytes, const std::string& what,
                               bool* maybe_committed) const {
  std::lock_guard<std::mutex> lock(mu_);
  sqlite3_stmt* s = statements_->insert_frame;
  return CommitRow(
      [&]() -> int {
        StatementUse use(s);
        BindText(s, 1, frame.device_id);
        BindU64(s, 2, frame.sequence);
        sqlite3_bind_int64(s, 3, frame.frame_index);
        sqlite3_bind_double(s, 4, frame.capture_time_s);
        sqlite3_bind_int(s, 5, frame.source_width);
        sqlite3_bind_int(s, 6, frame.source_height);
        sqlite3_bind_double(s, 7, frame.image_score);
        sqlite3_bind_int(s, 8, frame.validation ? 1 : 0);
        BindText(s, 9, EncodeLabels(frame.labels));
        sqlite3_bind_int64(s, 10, static_cast<sqlite3_int64>(file_bytes));
        if (frame.embedding.empty()) {
          sqlite3_bind_null(s, 11);
        } else {
          sqlite3_bind_blob(s, 11, frame.embedding.data(), static_cast<int>(frame.embedding.size() * sizeof(float)),
                            SQLITE_TRANSIENT);
        }
        if (frame.privacy.empty()) {
          sqlite3_bind_null(s, 12);
        } else {
          BindText(s, 12, frame.privacy);
        }
        return sqlite3_step(s);
      },
      frame.device_id, what, maybe_committed);
}

Status FrameIndex::InsertVersion(const VersionRecord& version, int64_t file_bytes, const std::string& what,
                                 bool* maybe_committed) const {
  std::lock_guard<std::mutex> lock(mu_);
  sqlite3_stmt* s = statements_->insert_version;
  return CommitRow(
      [&]() -> int {
        StatementUse use(s);
        BindText(s, 1, version.device_id);
        BindU64(s, 2, version.version);
        BindU64(s, 3, version.base_version);
        BindText(s, 4, version.encoding);
        BindText(s, 5, version.weights_checksum);
        sqlite3_bind_double(s, 6, version.val_map50);
        sqlite3_bind_int64(s, 7, version.created_ms);
        sqlite3_bind_int64(s, 8, static_cast<sqlite3_int64>(file_bytes));
        return sqlite3_step(s);
      },
      version.device_id, what, maybe_committed);
}

StatusOr<uint64_t> FrameIndex::LastSequence(const std::string& device_id) const {
  std::lock_guard<std::mutex> lock(mu_);
  sqlite3_stmt* stmt = statements_->last_sequence;
  StatementUse use(stmt);
  BindText(stmt, 1, device_id);
  const int rc = sqlite3_step(stmt);
  if (rc != SQLITE_ROW) return db_->Error(rc, path_ + ": last sequence of " + device_id);
  return ColumnU64(stmt, 0);  // MAX of no rows is NULL, which reads as 0
}

StatusOr<int64_t> FrameIndex::Count(const std::string& device_id, bool validation) const {
  std::lock_guard<std::mutex> lock(mu_);
  sqlite3_stmt* stmt = statements_->count;
  StatementUse use(stmt);
  BindText(stmt, 1, device_id);
  sqlite3_bind_int(stmt, 2, validation ? 1 : 0);
  const int rc = sqlite3_step(stmt);
  if (rc != SQLITE_ROW) return db_->Error(rc, path_ + ": counting frames of " + device_id);
  return static_cast<int64_t>(sqlite3_column_int64(stmt, 0));
}

StatusOr<StoredUsage> FrameIndex::Usage(const std::string& device_id) const {
  std::lock_guard<std::mutex> lock(mu_);
  sqlite3_stmt* stmt = statements_->usage;
  StatementUse use(stmt);
  BindText(stmt, 1, device_id);
  const int rc = sqlite3_step(stmt);
  if (rc != SQLITE_ROW) return db_->Error(rc, path_ + ": summing the frames of " + device_id);
  return StoredUsage{sqlite3_column_int64(stmt, 0), sqlite3_column_int64(stmt, 1)};
}

// Reads all rows of a frame query; requires mu_ held.
StatusOr<std::vector<FrameRecord>> FrameIndex::ReadFrames(sqlite3_stmt* stmt, const std::string& device_id,
                                                          const std::string& what) const {
  std::vector<FrameRecord> out;
  for (;;) {
    const int rc = sqlite3_step(stmt);
    if (rc == SQLITE_DONE) break;
    if (rc != SQLITE_ROW) return db_->Error(rc, path_ + ": " + what);
    FrameRecord r = ReadFrameRow(stmt, device_id);
    if (!DecodeLabels(ColumnText(stmt, 7), &r.labels)) {
      return Status::DataLoss(path_ + ": frame " + device_id + "/" + std::to_string(r.sequence) +
                              ": malformed labels '" + ColumnText(stmt, 7).substr(0, 80) + "'");
    }
    out.push_back(std::move(r));
  }
  return out;
}

StatusOr<std::vector<FrameRecord>> FrameIndex::NewestOfKind(const std::string& device_id, bool validation,
                                                            uint64_t max_sequence, int limit) const {
  std::lock_guard<std::mutex> lock(mu_);
  sqlite3_stmt* stmt = statements_->newest_of_kind;
  StatementUse use(stmt);
  BindText(stmt, 1, device_id);
  sqlite3_bind_int(stmt, 2, validation ? 1 : 0);
  BindU64(stmt, 3, std::min(max_sequence, kMaxSqlInteger));
  sqlite3_bind_int(stmt, 4, limit);
  return ReadFrames(stmt, device_id, "newest frames of " + device_id + " up to " + std::to_string(max_sequence));
}

StatusOr<std::vector<FrameRecord>> FrameIndex::Since(const std::string& device_id, uint64_t after_sequence,
                                                     int limit) const {
  std::lock_guard<std::mutex> lock(mu_);
  sqlite3_stmt* stmt = statements_->since;
  StatementUse use(stmt);
  BindText(stmt, 1, device_id);
  BindU64(stmt, 2, after_sequence);
  sqlite3_bind_int(stmt, 3, limit);
  return ReadFrames(stmt, device_id, "frames of " + device_id + " since " + std::to_string(after_sequence));
}

StatusOr<bool> FrameIndex::LatestVersion(const std::string& device_id, VersionRecord* out) const {
  std::lock_guard<std::mutex> lock(mu_);
  sqlite3_stmt* stmt = statements_->latest_version;
  StatementUse use(stmt);
  BindText(stmt, 1, device_id);
  const int rc = sqlite3_step(stmt);
  if (rc == SQLITE_DONE) return false;
  if (rc != SQLITE_ROW) return db_->Error(rc, path_ + ": latest version of " + device_id);
  *out = ReadVersionRow(stmt, device_id);
  return true;
}

StatusOr<std::vector<VersionRecord>> FrameIndex::Versions(const std::string& device_id, int limit) const {
  std::vector<VersionRecord> versions;
  std::lock_guard<std::mutex> lock(mu_);
  sqlite3_stmt* stmt = statements_->versions;
  StatementUse use(stmt);
  BindText(stmt, 1, device_id);
  sqlite3_bind_int(stmt, 2, limit);
  int rc;
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) versions.push_back(ReadVersionRow(stmt, device_id));
  if (rc != SQLITE_DONE) return db_->Error(rc, path_ + ": versions of " + device_id);
  return versions;
}

std::vector<std::string> FrameIndex::Devices(Status* error) const {
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
    if (rc != SQLITE_DONE) *error = db_->Error(rc, path_ + ": listing devices");
    break;
  }
  return out;
}

StatusOr<std::vector<StoredFrame>> FrameIndex::ListForRetention(const std::string& device_id) const {
  std::vector<StoredFrame> frames;
  std::lock_guard<std::mutex> lock(mu_);
  sqlite3_stmt* stmt = statements_->frame_sizes;
  StatementUse use(stmt);
  BindText(stmt, 1, device_id);
  for (;;) {
    const int rc = sqlite3_step(stmt);
    if (rc == SQLITE_DONE) break;
    if (rc != SQLITE_ROW) return db_->Error(rc, path_ + ": listing frames of " + device_id);
    StoredFrame f;
    f.sequence = ColumnU64(stmt, 0);
    f.validation = sqlite3_column_int(stmt, 1) != 0;
    f.capture_time_s = ColumnDouble(stmt, 2);
    f.bytes = sqlite3_column_int64(stmt, 3);
    frames.push_back(f);
  }
  return frames;
}

Status FrameIndex::DeleteFrames(const std::string& device_id, const std::vector<StoredFrame>& frames) const {
  std::lock_guard<std::mutex> lock(mu_);
  sqlite3_stmt* s = statements_->delete_frame;
  const std::string what = path_ + ": pruning frames of " + device_id;
  Status status = db_->Begin(what);
  for (const StoredFrame& f : frames) {
    if (!status.ok()) break;
    if (!f.doomed) continue;
    BindText(s, 1, device_id);
    BindU64(s, 2, f.sequence);
    status = db_->StepDone(s, what);
  }
  if (status.ok()) status = db_->Commit(what);
  if (!status.ok()) db_->RollbackIfOpen();
  return status;
}

}  // namespace sd
