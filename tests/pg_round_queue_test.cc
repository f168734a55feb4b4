// The cluster's round queue (server/pg_round_queue.h) on a real PostgreSQL: many workers on
// two replicas claiming at once never claim one round twice; a unit is queued once however
// often it is asked for; a claim whose replica stopped renewing it expires and is claimed
// again with a higher epoch, and the old claimant can then store nothing; a released round is
// claimed at once; renewing keeps only the claims this process holds.
#include "server/pg_round_queue.h"

#include <atomic>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include <gtest/gtest.h>
#include <pqxx/pqxx>

#include "server/pg_frame_store.h"
#include "server/pg_schema.h"
#include "tests/pg_two_replicas.h"

namespace sd {
namespace {

VersionRecord Version(const std::string& device, uint64_t version) {
  VersionRecord v;
  v.device_id = device;
  v.version = version;
  v.base_version = version - 1;
  v.encoding = "int8";
  v.weights_checksum = "c" + std::to_string(version);
  v.created_ms = 1;
  return v;
}

class PgRoundQueueTest : public testing::PgTwoReplicasTest {
 protected:
  PgRoundQueueTest() : PgTwoReplicasTest(/*connections=*/4) {}
  // Moves every claim's expiry into the past, as if its replica had stopped renewing it.
  void ExpireClaims() {
    pqxx::connection c(dsn_);
    pqxx::work tx(c);
    tx.exec("UPDATE round_queue SET claim_expires_at = now() - interval '1 second' WHERE claimed_by IS NOT NULL");
    tx.commit();
  }
  int QueuedRows() {
    pqxx::connection c(dsn_);
    pqxx::work tx(c);
    return tx.exec1("SELECT count(*) FROM round_queue")[0].as<int>();
  }
};

TEST_F(PgRoundQueueTest, WorkersOnTwoReplicasClaimingAtOnceRunEachRoundOnce) {
  PgRoundQueue a(a_pool_.get(), "r1", 30);
  PgRoundQueue b(b_pool_.get(), "r2", 30);
  constexpr int kUnits = 40;
  for (int i = 0; i < kUnits; ++i) ASSERT_TRUE(a.Request("cam" + std::to_string(i), 60, "test").ok());
  // Asked again while queued: still one request each.
  for (int i = 0; i < kUnits; ++i) ASSERT_TRUE(b.Request("cam" + std::to_string(i), 30, "again").ok());
  EXPECT_EQ(QueuedRows(), kUnits);

  std::mutex mu;
  std::map<std::string, int> claimed;  // unit -> times claimed
  std::map<std::string, int> by_replica;
  std::atomic<int> errors{0};
  auto worker = [&](PgRoundQueue* queue) {
    for (;;) {
      auto claim = queue->Claim();
      if (!claim.ok()) {
        ++errors;
        return;
      }
      if (!claim->has_value()) return;
      const RoundClaim& c = **claim;
      {
        std::lock_guard<std::mutex> lock(mu);
        ++claimed[c.unit];
        ++by_replica[queue->replica()];
      }
      EXPECT_EQ(c.iterations, 60) << "the first request's steps";
      EXPECT_EQ(c.requested_by, "r1");
      EXPECT_EQ(c.attempts, 1);
      EXPECT_TRUE(c.previous.empty());
      EXPECT_GE(c.waited_s, 0);
      if (!queue->Finish(c).ok()) ++errors;
    }
  };
  std::vector<std::thread> workers;
  for (int i = 0; i < 4; ++i) workers.emplace_back(worker, i % 2 == 0 ? &a : &b);
  for (std::thread& t : workers) t.join();
  EXPECT_EQ(errors.load(), 0);
  ASSERT_EQ(claimed.size(), static_cast<size_t>(kUnits));
  for (const auto& [unit, times] : claimed) EXPECT_EQ(times, 1) << unit << " claimed more than once";
  EXPECT_EQ(QueuedRows(), 0);
  std::printf("claims: r1 %d, r2 %d\n", by_replica["r1"], by_replica["r2"]);
}

TEST_F(PgRoundQueueTest, AnExpiredClaimIsClaimedAgainAndItsOldClaimantCanStoreNothing) {
  PgRoundQueue a(a_pool_.get(), "r1", 30);
  PgRoundQueue b(b_pool_.get(), "r2", 30);
  PgFrameStore store_a(a_pool_.get(), DatabaseBlobStore(), nullptr);
  PgFrameStore store_b(b_pool_.get(), DatabaseBlobStore(), nullptr);
  ASSERT_TRUE(a.Request("cam1", 60, "test").ok());
  auto first = a.Claim();
  ASSERT_TRUE(first.ok() && first->has_value());
  // Claimed and unexpired: nobody else gets it.
  auto none = b.Claim();
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());

  ExpireClaims();  // r1 died: its keeper no longer renews
  auto second = b.Claim();
  ASSERT_TRUE(second.ok() && second->has_value());
  EXPECT_EQ((*second)->unit, "cam1");
  EXPECT_EQ((*second)->attempts, 2);
  EXPECT_EQ((*second)->previous, "r1");
  EXPECT_GT((*second)->epoch, (*first)->epoch);

  // r1 comes back from its pause and tries to store its round's version: fenced off.
  const RoundClaim stale = **first;
  Status fenced = store_a.PutClaimedVersions({{Version("cam1", 1), "update a"}}, "weights a",
                                            [&](pqxx::dbtransaction& tx) { return a.FenceAndFinish(tx, stale); });
  EXPECT_EQ(fenced.code(), Status::Code::kFailedPrecondition) << fenced.ToString();
  EXPECT_NE(fenced.message().find("expired or was taken over"), std::string::npos) << fenced.message();
  // Finishing it drops nothing: the request is r2's now.
  EXPECT_TRUE(a.Finish(stale).ok());
  EXPECT_EQ(QueuedRows(), 1);

  // r2's round stores its version with its update and ends the request in one transaction.
  const RoundClaim current = **second;
  Status stored = store_b.PutClaimedVersions({{Version("cam1", 1), "update b"}}, "weights b",
                                            [&](pqxx::dbtransaction& tx) { return b.FenceAndFinish(tx, current); });
  ASSERT_TRUE(stored.ok()) << stored.ToString();
  EXPECT_EQ(QueuedRows(), 0);
  auto latest = store_a.LatestVersion("cam1");
  ASSERT_TRUE(latest.ok());
  EXPECT_EQ(latest->version, 1u);
  auto weights = store_a.LoadCheckpoint(*latest);
  ASSERT_TRUE(weights.ok());
  EXPECT_EQ(*weights, "weights b");
  auto update = store_a.LoadUpdatePayload("cam1", 1);
  ASSERT_TRUE(update.ok()) << update.status().ToString();
  EXPECT_EQ(*update, "update b");
  // A version stored through the lease path keeps no update.
  ASSERT_TRUE(store_a.PutVersion(Version("cam1", 2), "weights 2").ok());
  EXPECT_EQ(store_a.LoadUpdatePayload("cam1", 2).status().code(), Status::Code::kNotFound);

  // Two claims of one number: the versions' primary key refuses the second even when its
  // claim holds (a round queued again after the first was stored).
  ASSERT_TRUE(a.Request("cam1", 60, "again").ok());
  auto third = a.Claim();
  ASSERT_TRUE(third.ok() && third->has_value());
  const RoundClaim again = **third;
  Status twice = store_a.PutClaimedVersions({{Version("cam1", 2), "update x"}}, "weights x",
                                           [&](pqxx::dbtransaction& tx) { return a.FenceAndFinish(tx, again); });
  EXPECT_EQ(twice.code(), Status::Code::kAlreadyExists) << twice.ToString();
  EXPECT_EQ(QueuedRows(), 1) << "the refused version's transaction rolled the request's end back";
}

// A shared student's round: one version for every member, stored in one transaction with
// one checkpoint, or for none of them.
TEST_F(PgRoundQueueTest, AGroupsVersionIsStoredForEveryMemberOrForNone) {
  PgRoundQueue a(a_pool_.get(), "r1", 30);
  PgFrameStore store(a_pool_.get(), DatabaseBlobStore(), nullptr);
  ASSERT_TRUE(a.Request("group:lobby", 60, "test").ok());
  auto claim = a.Claim();
  ASSERT_TRUE(claim.ok() && claim->has_value());
  EXPECT_EQ((*claim)->unit, "group:lobby");
  // cam2 has a version 3 already (stored alone before it joined the group): a round that
  // would give every member version 3 stores nothing.
  ASSERT_TRUE(store.PutVersion(Version("cam2", 3), "weights of cam2").ok());
  const RoundClaim held = **claim;
  auto fence = [&](pqxx::dbtransaction& tx) { return a.FenceAndFinish(tx, held); };
  Status clash = store.PutClaimedVersions({{Version("cam1", 3), "u1"}, {Version("cam2", 3), "u2"}}, "group v3", fence);
  EXPECT_EQ(clash.code(), Status::Code::kAlreadyExists) << clash.ToString();
  EXPECT_EQ(store.LatestVersion("cam1").status().code(), Status::Code::kNotFound) << "cam1's row stayed";
  EXPECT_EQ(QueuedRows(), 1);
  // Version 4 for both: stored, one checkpoint, each member's own update.
  ASSERT_TRUE(store.PutClaimedVersions({{Version("cam1", 4), "u1"}, {Version("cam2", 4), "u2"}}, "group v4", fence).ok());
  EXPECT_EQ(QueuedRows(), 0);
  for (const std::string device : {"cam1", "cam2"}) {
    auto latest = store.LatestVersion(device);
    ASSERT_TRUE(latest.ok()) << device;
    EXPECT_EQ(latest->version, 4u);
    auto weights = store.LoadCheckpoint(*latest);
    ASSERT_TRUE(weights.ok());
    EXPECT_EQ(*weights, "group v4");
  }
  EXPECT_EQ(*store.LoadUpdatePayload("cam1", 4), "u1");
  EXPECT_EQ(*store.LoadUpdatePayload("cam2", 4), "u2");
}

TEST_F(PgRoundQueueTest, ReleasedRoundsAreClaimedAtOnceAndOnlyHeldClaimsAreRenewed) {
  PgRoundQueue a(a_pool_.get(), "r1", 30);
  PgRoundQueue b(b_pool_.get(), "r2", 30);
  ASSERT_TRUE(a.Request("cam1", 60, "test").ok());
  auto claim = a.Claim();
  ASSERT_TRUE(claim.ok() && claim->has_value());
  a.Release(**claim);  // a shutdown
  auto taken = b.Claim();
  ASSERT_TRUE(taken.ok() && taken->has_value());
  EXPECT_EQ((*taken)->unit, "cam1");
  EXPECT_TRUE((*taken)->previous.empty()) << "released, not expired";

  // r2 is killed and restarted under the same name: the new process holds none of the dead
  // one's claims, so its renewals leave the dead claim to expire.
  ExpireClaims();
  PgRoundQueue b_restarted(b_pool_.get(), "r2", 30);
  b_restarted.RenewAll();
  auto again = a.Claim();
  ASSERT_TRUE(again.ok() && again->has_value()) << "the dead process's claim was renewed";
  EXPECT_EQ((*again)->previous, "r2");
  // The live holder's renewal does keep its claim.
  ExpireClaims();
  a.RenewAll();
  auto none = b.Claim();
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value()) << "r1 renewed its claim, yet r2 took it";
}

TEST_F(PgRoundQueueTest, OwnUnitsGoFirstUnlessAnotherReplicasRoundHasWaited) {
  PgRoundQueue a(a_pool_.get(), "r1", 30);
  PgRoundQueue b(b_pool_.get(), "r2", 30);
  ASSERT_TRUE(b.Request("theirs", 60, "test").ok());
  ASSERT_TRUE(a.Request("mine", 60, "test").ok());
  auto first = a.Claim();
  ASSERT_TRUE(first.ok() && first->has_value());
  EXPECT_EQ((*first)->unit, "mine") << "its own unit, though queued later";
  ASSERT_TRUE(a.Finish(**first).ok());
  ASSERT_TRUE(a.Request("mine2", 60, "test").ok());
  {
    pqxx::connection c(dsn_);
    pqxx::work tx(c);
    tx.exec("UPDATE round_queue SET requested_at = now() - interval '10 seconds' WHERE unit = 'theirs'");
    tx.commit();
  }
  auto second = a.Claim();
  ASSERT_TRUE(second.ok() && second->has_value());
  EXPECT_EQ((*second)->unit, "theirs") << "a round waiting over 5 s goes first";
  EXPECT_GE((*second)->waited_s, 9.0);
  auto queued = a.Queued({"mine2", "theirs", "unknown"});
  ASSERT_TRUE(queued.ok());
  EXPECT_EQ(*queued, (std::set<std::string>{"mine2", "theirs"}));
}

}  // namespace
}  // namespace sd
