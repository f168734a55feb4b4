// The edge applies model updates atomically: a corrupt, truncated, mismatched or stale
// update is refused and the serving model stays exactly as it was; a good one swaps in.
#include <gtest/gtest.h>

#include "common/link/update_codec.h"
#include "edge/edge_agent.h"
#include "tests/daemon_test_util.h"

namespace sd {
namespace {

using namespace sd::testing;

class EdgeUpdateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string dir = TempDir("edge_update");
    auto config = ParseEdgeConfig(EdgeYaml("cam1", "secret-token-1", 1, dir, SyntheticUri(1)), "edge.yaml");
    ASSERT_TRUE(config.ok()) << config.status().ToString();
    auto agent = EdgeAgent::Create(*config);
    ASSERT_TRUE(agent.ok()) << agent.status().ToString();
    agent_ = std::move(agent).value();
    auto other = StudentModel::Create(config->student, 99);
    ASSERT_TRUE(other.ok());
    target_ = (*other)->FlatWeights();
  }

  ModelUpdate Full(uint64_t version, UpdateEncoding encoding = UpdateEncoding::kFullFp32) {
    ModelUpdate u;
    u.new_version = version;
    u.encoding = encoding;
    u.payload = *EncodeUpdate(encoding, {}, target_, {});
    u.weights_checksum = WeightsChecksum(*DecodeUpdate(encoding, {}, u.payload, target_.size()));
    return u;
  }

  void ExpectUnchanged(const std::shared_ptr<const ServedModel>& before) {
    auto now = agent_->serving();
    EXPECT_EQ(now.get(), before.get());  // the very same snapshot keeps serving
    EXPECT_EQ(now->version, before->version);
  }

  std::unique_ptr<EdgeAgent> agent_;
  std::vector<float> target_;
};

TEST_F(EdgeUpdateTest, GoodUpdateSwapsTheServedModel) {
  auto before = agent_->serving();
  ASSERT_TRUE(agent_->ApplyUpdate(Full(1, UpdateEncoding::kFullFp16)).ok());
  auto after = agent_->serving();
  EXPECT_NE(after.get(), before.get());
  EXPECT_EQ(after->version, 1u);
  EXPECT_EQ(agent_->ServingChecksum(), Full(1, UpdateEncoding::kFullFp16).weights_checksum);
  // The old snapshot still works for a frame that took it before the swap.
  cv::Mat frame(192, 256, CV_8UC3, cv::Scalar(90, 90, 90));
  EXPECT_TRUE(before->detector->Detect(frame).ok());
}

TEST_F(EdgeUpdateTest, CorruptTruncatedMismatchedAndStaleUpdatesAreRefused) {
  auto before = agent_->serving();
  ModelUpdate corrupt = Full(1);
  corrupt.payload[corrupt.payload.size() / 2] ^= 0x10;
  EXPECT_EQ(agent_->ApplyUpdate(corrupt).code(), Status::Code::kDataLoss);
  ExpectUnchanged(before);

  ModelUpdate truncated = Full(1);
  truncated.payload.resize(truncated.payload.size() - 7);
  EXPECT_FALSE(agent_->ApplyUpdate(truncated).ok());
  ExpectUnchanged(before);

  ModelUpdate wrong_base = Full(1);
  wrong_base.base_version = 5;
  EXPECT_EQ(agent_->ApplyUpdate(wrong_base).code(), Status::Code::kFailedPrecondition);
  ExpectUnchanged(before);

  ModelUpdate mislabelled = Full(1);  // an fp32 payload announced as fp16 (unknown names stop at assembly)
  mislabelled.encoding = UpdateEncoding::kFullFp16;
  EXPECT_FALSE(agent_->ApplyUpdate(mislabelled).ok());
  ExpectUnchanged(before);

  ASSERT_TRUE(agent_->ApplyUpdate(Full(2)).ok());
  auto v2 = agent_->serving();
  EXPECT_EQ(agent_->ApplyUpdate(Full(2)).code(), Status::Code::kFailedPrecondition);  // not newer
  EXPECT_EQ(agent_->ApplyUpdate(Full(1)).code(), Status::Code::kFailedPrecondition);  // older
  ExpectUnchanged(v2);
}

// An admin's pin may go back to an older version, as a full model only.
TEST_F(EdgeUpdateTest, APinnedFullModelMayBeOlderThanTheServedOne) {
  ASSERT_TRUE(agent_->ApplyUpdate(Full(3)).ok());
  auto v3 = agent_->serving();
  ModelUpdate pinned_delta = Full(1);
  pinned_delta.pinned = true;
  pinned_delta.encoding = UpdateEncoding::kInt8;
  pinned_delta.base_version = 3;
  EXPECT_EQ(agent_->ApplyUpdate(pinned_delta).code(), Status::Code::kInvalidArgument);
  ExpectUnchanged(v3);

  ModelUpdate pinned = Full(1);
  pinned.pinned = true;
  ASSERT_TRUE(agent_->ApplyUpdate(pinned).ok());
  EXPECT_EQ(agent_->ServingVersion(), 1u);
  // Unpinned, the newest comes as usual.
  ASSERT_TRUE(agent_->ApplyUpdate(Full(4)).ok());
  EXPECT_EQ(agent_->ServingVersion(), 4u);
}

}  // namespace
}  // namespace sd
