#include "server/pg_blobs.h"

#include <vector>

#include <pqxx/pqxx>
#include <spdlog/spdlog.h>

#include "common/base/token_hash.h"

namespace sd {

std::string BlobStore::KeyOf(std::string_view bytes) { return HexEncode(Sha256(bytes)); }

namespace {

// Whether any row still names the blob; the caller holds the transaction that deleted some.
bool Referenced(pqxx::dbtransaction& tx, const std::string& key) {
  return tx.exec_params1("SELECT EXISTS(SELECT 1 FROM frames WHERE image_key=$1) OR "
                         "EXISTS(SELECT 1 FROM versions WHERE checkpoint_key=$1)",
                         key)[0]
      .as<bool>();
}

class InDatabase : public BlobStore {
 public:
  StatusOr<std::string> Put(pqxx::dbtransaction& tx, std::string_view bytes) override {
    std::string key = KeyOf(bytes);
    pqxx::binarystring blob(bytes.data(), bytes.size());
    tx.exec_params("INSERT INTO blobs(key, bytes) VALUES($1, $2) ON CONFLICT (key) DO NOTHING", key, blob);
    return key;
  }
  StatusOr<std::string> Get(pqxx::dbtransaction& tx, const std::string& key, int64_t expected_size,
                            const std::string& what) override {
    pqxx::result r = tx.exec_params("SELECT bytes FROM blobs WHERE key=$1", key);
    if (r.empty()) return Status::DataLoss(what + ": its blob " + key + " is missing from the database");
    pqxx::binarystring blob(r[0][0]);
    if (static_cast<int64_t>(blob.size()) != expected_size)
      return Status::DataLoss(what + ": its blob has " + std::to_string(blob.size()) + " bytes, " +
                              std::to_string(expected_size) + " were stored");
    return blob.str();
  }
  Status Unreferenced(pqxx::dbtransaction& tx, const std::string& key, std::vector<std::string>*) override {
    if (!Referenced(tx, key)) tx.exec_params("DELETE FROM blobs WHERE key=$1", key);
    return Status::Ok();
  }
  std::string Describe() const override { return "postgres"; }
};

class InDirectory : public BlobStore {
 public:
  InDirectory(Env* env, std::string dir) : env_(env), dir_(std::move(dir)) {}

  StatusOr<std::string> Put(pqxx::dbtransaction&, std::string_view bytes) override {
    std::string key = KeyOf(bytes);
    const std::string path = PathOf(key);
    // Content-addressed: a complete file of this name already holds these bytes.
    auto size = env_->FileSize(path);
    if (size.ok() && *size == bytes.size()) return key;
    SD_RETURN_IF_ERROR(env_->CreateDir(dir_ + "/" + key.substr(0, 2)));
    SD_RETURN_IF_ERROR(WriteFileDurably(env_, path, bytes).WithContext("blob directory " + dir_));
    return key;
  }
  StatusOr<std::string> Get(pqxx::dbtransaction&, const std::string& key, int64_t expected_size,
                            const std::string& what) override {
    auto bytes = env_->ReadFile(PathOf(key));
    if (!bytes.ok()) return Status::DataLoss(what + ": its blob " + PathOf(key) + ": " + bytes.status().message());
    if (static_cast<int64_t>(bytes->size()) != expected_size)
      return Status::DataLoss(what + ": " + PathOf(key) + " has " + std::to_string(bytes->size()) + " bytes, " +
                              std::to_string(expected_size) + " were stored");
    return bytes;
  }
  Status Unreferenced(pqxx::dbtransaction& tx, const std::string& key,
                      std::vector<std::string>* remove_after_commit) override {
    if (!Referenced(tx, key)) remove_after_commit->push_back(key);
    return Status::Ok();
  }
  void RemoveFiles(const std::vector<std::string>& keys) override {
    for (const std::string& key : keys) {
      Status removed = env_->RemoveFile(PathOf(key));
      if (!removed.ok()) spdlog::warn("blob directory {}: {}", dir_, removed.ToString());
    }
  }
  std::string Describe() const override { return "dir " + dir_; }

 private:
  std::string PathOf(const std::string& key) const { return dir_ + "/" + key.substr(0, 2) + "/" + key; }

  Env* const env_;
  const std::string dir_;
};

}  // namespace

std::unique_ptr<BlobStore> DatabaseBlobStore() { return std::make_unique<InDatabase>(); }

StatusOr<std::unique_ptr<BlobStore>> DirectoryBlobStore(Env* env, const std::string& dir) {
  if (env == nullptr) env = Env::Default();
  Status made = env->CreateDir(dir);
  if (!made.ok()) return Status::FailedPrecondition("storage.blobs: cannot make the blob directory: " + made.message());
  const std::string probe = dir + "/.write_probe";
  Status written = WriteFileDurably(env, probe, "probe");
  if (!written.ok())
    return Status::FailedPrecondition("storage.blobs: the blob directory " + dir + " is not writable: " +
                                      written.message());
  env->RemoveFile(probe).ok();
  return std::unique_ptr<BlobStore>(new InDirectory(env, dir));
}

}  // namespace sd
