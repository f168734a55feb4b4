// The FrameStore implementations that the store's contract suites (frame_store_test,
// retention_test) run against, each a value of a TEST_P. Today only the SQLite store; a second
// backend (issue 24: PostgreSQL) adds its factory here and every contract test runs on it too.
// Tests of one backend's own layout (files, LOCK, orphan sweep, read-only opening) stay plain
// TESTs beside them.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "server/frame_store.h"

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

inline std::vector<FrameStoreBackend> FrameStoreBackends() {
  return {
      {"Sqlite", [](const std::string& dir) { return FrameStore::Open(dir); }, /*files_in_dir=*/true},
  };
}

inline std::string FrameStoreBackendName(const ::testing::TestParamInfo<FrameStoreBackend>& info) {
  return info.param.name;
}

}  // namespace testing
}  // namespace sd
