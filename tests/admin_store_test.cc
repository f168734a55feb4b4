// The AdminStore contract (server/admin_store.h: pins and pauses), one suite over both
// backends: the file beside a single server's store, and PostgreSQL shared by replicas
// (server/pg_admin_store.h), on a throw-away cluster this process starts.
#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "server/admin_store.h"
#include "server/pg_admin_store.h"
#include "server/pg_schema.h"
#include "tests/pg_test_cluster.h"
#include "tests/scoped_temp_dir.h"

namespace sd {
namespace {

using sd::testing::PgTestCluster;
using sd::testing::ScopedTempDir;

// One backend's stores: each Open() is a new store over the same state, as a restarted
// server (the file) or another replica (PostgreSQL) opens it.
class AdminBackend {
 public:
  virtual ~AdminBackend() = default;
  virtual StatusOr<std::unique_ptr<AdminStore>> Open() = 0;
  // What another store's updates take to be seen by `store`: nothing for the file (read at
  // Open), a Refresh for PostgreSQL (a replica polls it).
  virtual Status CatchUp(AdminStore* store) = 0;
  // Whether stores may be open at once: replicas on PostgreSQL; a file is one server's (its
  // store directory is locked), so a second store is a restart after the first.
  virtual bool SharedByLiveStores() const = 0;
};

class FileBackend : public AdminBackend {
 public:
  StatusOr<std::unique_ptr<AdminStore>> Open() override {
    SD_ASSIGN_OR_RETURN(auto store, FileAdminStore::Open(Env::Default(), dir_.path()));
    return std::unique_ptr<AdminStore>(std::move(store));
  }
  Status CatchUp(AdminStore*) override { return Status::Ok(); }
  bool SharedByLiveStores() const override { return false; }

 private:
  ScopedTempDir dir_{"admin_store_test"};
};

class PgBackend : public AdminBackend {
 public:
  PgBackend() {
    PgTestCluster* cluster = PgTestCluster::Get();
    if (cluster == nullptr) return;
    options_.dsn = cluster->NewDatabase();
    options_.connections = 2;
  }
  StatusOr<std::unique_ptr<AdminStore>> Open() override {
    if (options_.dsn.empty()) return Status::Unavailable("PostgreSQL could not be started (scripts/setup.sh installs it)");
    SD_ASSIGN_OR_RETURN(auto pool, PgPool::Connect(options_));
    SD_RETURN_IF_ERROR(MigratePgSchema(*pool));
    SD_ASSIGN_OR_RETURN(auto store, PgAdminStore::Open(pool.get()));
    pools_.push_back(std::move(pool));  // outlives the store: destroyed after the test's stores
    return std::unique_ptr<AdminStore>(std::move(store));
  }
  Status CatchUp(AdminStore* store) override { return static_cast<PgAdminStore*>(store)->Refresh().status(); }
  bool SharedByLiveStores() const override { return true; }

 private:
  PgOptions options_;
  std::vector<std::unique_ptr<PgPool>> pools_;
};

struct BackendParam {
  std::string name;
  std::function<std::unique_ptr<AdminBackend>()> make;
};

class AdminStoreTest : public ::testing::TestWithParam<BackendParam> {
 protected:
  void SetUp() override { backend_ = GetParam().make(); }
  std::unique_ptr<AdminStore> OpenStore() {
    auto store = backend_->Open();
    EXPECT_TRUE(store.ok()) << store.status().ToString();
    return store.ok() ? std::move(*store) : nullptr;
  }
  std::unique_ptr<AdminBackend> backend_;
};

TEST_P(AdminStoreTest, ADeviceNeverActedOnHasTheDefaultState) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  const AdminState state = store->Get("cam1");
  EXPECT_EQ(state.pinned_version, 0u);
  EXPECT_FALSE(state.paused);
}

TEST_P(AdminStoreTest, AnUpdateIsReadBackAndSurvivesTheStore) {
  {
    auto store = OpenStore();
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->Update("cam1", [](AdminState& s) { s.pinned_version = 7; }).ok());
    ASSERT_TRUE(store->Update("cam2", [](AdminState& s) { s.paused = true; }).ok());
    EXPECT_EQ(store->Get("cam1").pinned_version, 7u);
    EXPECT_TRUE(store->Get("cam2").paused);
    EXPECT_FALSE(store->Get("cam1").paused) << "one device's change reached another";
  }
  auto reopened = OpenStore();  // a restart, or another replica starting
  ASSERT_NE(reopened, nullptr);
  EXPECT_EQ(reopened->Get("cam1").pinned_version, 7u);
  EXPECT_TRUE(reopened->Get("cam2").paused);
  EXPECT_EQ(reopened->Get("cam2").pinned_version, 0u);
}

// Two stores (two replicas open at once, the second's copy older than the first's change;
// for the file, a restart after the first wrote): each change is applied to the stored
// state, not to a stale copy, so neither is lost.
TEST_P(AdminStoreTest, ChangesFromTwoStoresBothHold) {
  auto first = OpenStore();
  ASSERT_NE(first, nullptr);
  std::unique_ptr<AdminStore> second;
  if (backend_->SharedByLiveStores()) second = OpenStore();
  ASSERT_TRUE(first->Update("cam1", [](AdminState& s) { s.pinned_version = 3; }).ok());
  if (!second) {
    first.reset();
    second = OpenStore();
  }
  ASSERT_NE(second, nullptr);
  // Before its poll a replica still reads its own copy; the update below must not trust it.
  if (backend_->SharedByLiveStores()) EXPECT_EQ(second->Get("cam1").pinned_version, 0u);
  ASSERT_TRUE(second->Update("cam1", [](AdminState& s) { s.paused = true; }).ok());
  const AdminState seen = second->Get("cam1");
  EXPECT_EQ(seen.pinned_version, 3u) << "the second store's change dropped the first's pin";
  EXPECT_TRUE(seen.paused);
  auto third = OpenStore();
  ASSERT_NE(third, nullptr);
  EXPECT_EQ(third->Get("cam1").pinned_version, 3u);
  EXPECT_TRUE(third->Get("cam1").paused);
}

// Updates from many threads of one store: none is lost (each is read-modify-write of the
// stored state under the store's own serialisation).
TEST_P(AdminStoreTest, ConcurrentUpdatesAreNotLost) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  constexpr int kThreads = 4, kEach = 10;
  std::atomic<int> failed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < kEach; ++i)
        if (!store->Update("cam1", [](AdminState& s) { ++s.pinned_version; }).ok()) ++failed;
    });
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(store->Get("cam1").pinned_version, static_cast<uint64_t>(kThreads * kEach));
  auto reopened = OpenStore();
  ASSERT_NE(reopened, nullptr);
  EXPECT_EQ(reopened->Get("cam1").pinned_version, static_cast<uint64_t>(kThreads * kEach));
}

INSTANTIATE_TEST_SUITE_P(Backends, AdminStoreTest,
                         ::testing::Values(BackendParam{"File", [] { return std::make_unique<FileBackend>(); }},
                                           BackendParam{"Postgres", [] { return std::make_unique<PgBackend>(); }}),
                         [](const ::testing::TestParamInfo<BackendParam>& info) { return info.param.name; });

}  // namespace
}  // namespace sd
