// Two replicas' connection pools on one fresh, migrated database of the tests' throw-away
// PostgreSQL (tests/pg_test_cluster.h): the fixture of the tests that race replicas against
// each other through the database (leases, the round queue).
#pragma once

#include <memory>
#include <string>

#include <gtest/gtest.h>

#include "server/pg_connection.h"
#include "server/pg_schema.h"
#include "tests/pg_test_cluster.h"

namespace sd::testing {

inline std::unique_ptr<PgPool> ConnectTestPool(const std::string& dsn, int connections) {
  PgOptions options;
  options.dsn = dsn;
  options.connections = connections;
  auto pool = PgPool::Connect(options);
  EXPECT_TRUE(pool.ok()) << pool.status().ToString();
  return pool.ok() ? std::move(pool).value() : nullptr;
}

class PgTwoReplicasTest : public ::testing::Test {
 protected:
  // Each replica's pool has `connections` connections.
  explicit PgTwoReplicasTest(int connections = 2) : connections_(connections) {}
  void SetUp() override {
    std::string why;
    cluster_ = PgTestCluster::Get(&why);
    ASSERT_NE(cluster_, nullptr) << why;
    dsn_ = cluster_->NewDatabase();
    a_pool_ = ConnectTestPool(dsn_, connections_);
    b_pool_ = ConnectTestPool(dsn_, connections_);
    ASSERT_TRUE(a_pool_ && b_pool_);
    ASSERT_TRUE(MigratePgSchema(*a_pool_).ok());
  }
  const int connections_;
  PgTestCluster* cluster_ = nullptr;
  std::string dsn_;
  std::unique_ptr<PgPool> a_pool_, b_pool_;
};

}  // namespace sd::testing
