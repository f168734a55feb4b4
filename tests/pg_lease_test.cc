// The cluster backend's leases and fencing (server/pg_leases.h) on a real PostgreSQL: one
// replica serves a device at a time, even when two are asked to serve it at once; a lease
// expires when its replica stops renewing it; and a replica that lost a device can store
// nothing more for it (its frames and versions are fenced off by the epoch).
#include "server/pg_leases.h"

#include <atomic>
#include <thread>

#include <gtest/gtest.h>
#include <pqxx/pqxx>

#include "server/pg_frame_store.h"
#include "server/pg_schema.h"
#include "tests/pg_two_replicas.h"

namespace sd {
namespace {

using testing::PgTestCluster;

FrameRecord Frame(uint64_t sequence) {
  FrameRecord f;
  f.device_id = "cam1";
  f.sequence = sequence;
  f.capture_time_s = sequence;
  return f;
}

using PgLeaseTest = testing::PgTwoReplicasTest;

TEST_F(PgLeaseTest, ASecondReplicaIsRefusedWhileTheFirstHoldsTheDevice) {
  PgLeases a(a_pool_.get(), "replica-a", 30);
  PgLeases b(b_pool_.get(), "replica-b", 30);
  auto first = a.Acquire("cam1");
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  auto second = b.Acquire("cam1");
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), Status::Code::kUnavailable);
  EXPECT_NE(second.status().message().find("served by replica replica-a"), std::string::npos)
      << second.status().message();
  EXPECT_EQ(b.Held("cam1"), 0u);
  // Given up, the device goes to whoever asks next, at a higher epoch.
  a.Release("cam1", *first);
  auto third = b.Acquire("cam1");
  ASSERT_TRUE(third.ok()) << third.status().ToString();
  EXPECT_GT(*third, *first);
}

TEST_F(PgLeaseTest, TwoReplicasAskedAtOnceNeverBothServeTheDevice) {
  // Each round, both replicas race for the device; exactly one wins and gives it up again.
  PgLeases a(a_pool_.get(), "replica-a", 30);
  PgLeases b(b_pool_.get(), "replica-b", 30);
  int a_wins = 0, b_wins = 0;
  for (int round = 0; round < 40; ++round) {
    StatusOr<uint64_t> got_a = Status::Internal(""), got_b = Status::Internal("");
    std::thread ta([&] { got_a = a.Acquire("cam1"); });
    std::thread tb([&] { got_b = b.Acquire("cam1"); });
    ta.join();
    tb.join();
    ASSERT_NE(got_a.ok(), got_b.ok()) << "round " << round << ": " << got_a.status().ToString() << " / "
                                      << got_b.status().ToString();
    if (got_a.ok()) {
      ++a_wins;
      a.Release("cam1", *got_a);
    } else {
      ++b_wins;
      b.Release("cam1", *got_b);
    }
  }
  EXPECT_EQ(a_wins + b_wins, 40);
}

TEST_F(PgLeaseTest, AnExpiredLeaseIsTakenOverAndTheOldHolderIsFencedOff) {
  PgLeases a(a_pool_.get(), "replica-a", 1);  // replica a stops renewing: it "died"
  PgLeases b(b_pool_.get(), "replica-b", 30);
  PgFrameStore store_a(a_pool_.get(), DatabaseBlobStore(), &a);
  PgFrameStore store_b(b_pool_.get(), DatabaseBlobStore(), &b);
  ASSERT_TRUE(a.Acquire("cam1").ok());
  auto stored = store_a.Put(Frame(1), "jpeg-1");
  ASSERT_TRUE(stored.ok() && *stored) << stored.status().ToString();
  // Live: b is refused; expired: b takes over.
  EXPECT_FALSE(b.Acquire("cam1").ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(1300));
  auto taken = b.Acquire("cam1");
  ASSERT_TRUE(taken.ok()) << taken.status().ToString();
  // a still believes it serves cam1, but its writes are refused; b's go in.
  EXPECT_GT(a.Held("cam1"), 0u);
  auto fenced = store_a.Put(Frame(2), "jpeg-2");
  ASSERT_FALSE(fenced.ok());
  EXPECT_EQ(fenced.status().code(), Status::Code::kFailedPrecondition);
  EXPECT_NE(fenced.status().message().find("lost the lease"), std::string::npos) << fenced.status().message();
  VersionRecord v;
  v.device_id = "cam1";
  v.version = 1;
  v.encoding = "full_fp16";
  EXPECT_EQ(store_a.PutVersion(v, "weights").code(), Status::Code::kFailedPrecondition);
  EXPECT_TRUE(store_b.PutVersion(v, "weights").ok());
  // A version number is used once, whoever stores it.
  EXPECT_EQ(store_b.PutVersion(v, "other weights").code(), Status::Code::kAlreadyExists);
  auto also = store_b.Put(Frame(2), "jpeg-2");
  ASSERT_TRUE(also.ok() && *also) << also.status().ToString();
  // Renewing tells a that it lost the device.
  EXPECT_EQ(a.RenewAll(), std::vector<std::string>{"cam1"});
  EXPECT_EQ(a.Held("cam1"), 0u);
  EXPECT_TRUE(b.RenewAll().empty());
  EXPECT_EQ(store_b.LastSequence("cam1"), 2u);
}

TEST_F(PgLeaseTest, WrongDsnAndUnreachableServerAreClearErrors) {
  PgOptions options;
  options.dsn = "host=" + cluster_->dir() + " port=" + std::to_string(cluster_->port()) +
                " user=postgres dbname=no_such_database";
  auto pool = PgPool::Connect(options);
  ASSERT_FALSE(pool.ok());
  EXPECT_EQ(pool.status().code(), Status::Code::kUnavailable);
  EXPECT_NE(pool.status().message().find("no_such_database"), std::string::npos) << pool.status().message();
  options.dsn = "host=127.0.0.1 port=1 user=postgres dbname=x";
  options.password_env = "SD_TEST_PG_PASSWORD";
  setenv("SD_TEST_PG_PASSWORD", "s3cret-password", 1);
  pool = PgPool::Connect(options);
  ASSERT_FALSE(pool.ok());
  EXPECT_EQ(pool.status().message().find("s3cret-password"), std::string::npos) << "the password leaked into a message";
  options.dsn = "host=127.0.0.1 password=inline";
  EXPECT_FALSE(options.Validate().ok());
  EXPECT_EQ(RedactDsn("postgresql://u:pw@h/db"), "postgresql://u:***@h/db");
  EXPECT_EQ(RedactDsn("host=h password='a b' dbname=d"), "host=h password=*** dbname=d");
}

}  // namespace
}  // namespace sd
