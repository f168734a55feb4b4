#include "server/frame_store.h"

#include "server/sqlite_frame_store.h"

namespace sd {

StatusOr<std::unique_ptr<FrameStore>> FrameStore::Open(const std::string& dir, Env* env) {
  SD_ASSIGN_OR_RETURN(std::unique_ptr<SqliteFrameStore> store, SqliteFrameStore::Open(dir, env));
  return std::unique_ptr<FrameStore>(std::move(store));
}

StatusOr<std::unique_ptr<FrameStore>> FrameStore::OpenReadOnly(const std::string& dir, Env* env) {
  SD_ASSIGN_OR_RETURN(std::unique_ptr<SqliteFrameStore> store, SqliteFrameStore::OpenReadOnly(dir, env));
  return std::unique_ptr<FrameStore>(std::move(store));
}

}  // namespace sd
