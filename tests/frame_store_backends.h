// The FrameStore implementations that the store's contract suites (frame_store_test,
// retention_test) run against, each a value of a TEST_P: the SQLite store, and the PostgreSQL
// store (docs/scale-out.md) with its blobs in the database and in a directory, each on a
// throw-away PostgreSQL cluster this test process starts (tests/pg_test_cluster.h).
// Tests of one backend's own layout (files, LOCK, orphan sweep, read-only opening) stay plain
// TESTs beside them.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "server/frame_store.h"
#include "server/pg_frame_store.h"
#include "tests/pg_test_cluster.h"

namespace sd {
namespace testing {

struct FrameStoreBackend {
  std::string name;
  // Opens (creating) a store that keeps its state under `dir`, a fresh directory per test;
  // opened again with the same `dir` after the first is closed, it is the same store (a restart).
  std::function<StatusOr<std::unique_ptr<FrameStore>>(const std::string& dir)> open;
  // True when the store keeps frame images as files under <dir>/frames/<device>/ and
  // checkpoints under <dir>/models/<device>/ (the SQLite layout): tests then check those too.
  bool files_in_dir = false;
};

// A PostgreSQL store for a test's `dir`: the same database each time the same dir is opened
// (a restart), a fresh one per dir. Blobs in the database, or under <dir>/blobs.
inline StatusOr<std::unique_ptr<FrameStore>> OpenPgStore(const std::string& dir, bool blobs_in_dir) {
  static std::map<std::string, std::string> dsn_of_dir;
  PgTestCluster* cluster = PgTestCluster::Get();
  if (cluster == nullptr) return Status::Unavailable("PostgreSQL could not be started (scripts/setup.sh installs it)");
  std::string& dsn = dsn_of_dir[dir];
  if (dsn.empty()) dsn = cluster->NewDatabase();
  PgOptions options;
  options.dsn = dsn;
  options.connections = 3;
  SD_ASSIGN_OR_RETURN(std::unique_ptr<PgFrameStore> store,
                      PgFrameStore::Open(options, blobs_in_dir ? dir + "/blobs" : "postgres"));
  return std::unique_ptr<FrameStore>(std::move(store));
}

inline std::vector<FrameStoreBackend> FrameStoreBackends() {
  return {
      {"Sqlite", [](const std::string& dir) { return FrameStore::Open(dir); }, /*files_in_dir=*/true},
      {"PostgresBlobsInDatabase", [](const std::string& dir) { return OpenPgStore(dir, false); }},
      {"PostgresBlobsInDirectory", [](const std::string& dir) { return OpenPgStore(dir, true); }},
  };
}

inline std::string FrameStoreBackendName(const ::testing::TestParamInfo<FrameStoreBackend>& info) {
  return info.param.name;
}

}  // namespace testing
}  // namespace sd
