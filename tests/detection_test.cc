#include "common/vision/detection.h"

#include <gtest/gtest.h>

namespace sd {
namespace {

TEST(IoUTest, IdenticalDisjointAndHalfOverlap) {
  const Box a{0, 0, 10, 10};
  EXPECT_FLOAT_EQ(IoU(a, a), 1.0f);
  EXPECT_FLOAT_EQ(IoU(a, Box{20, 20, 30, 30}), 0.0f);
  // Overlap 5x10 = 50, union 150.
  EXPECT_NEAR(IoU(a, Box{5, 0, 15, 10}), 50.0f / 150.0f, 1e-6);
  EXPECT_FLOAT_EQ(IoU(a, Box{3, 3, 3, 9}), 0.0f);  // empty box
}

TEST(NonMaxSuppressionTest, KeepsBestPerClusterAndClass) {
  Detections in = {
      {{0, 0, 10, 10}, 0.5f, 0},
      {{1, 0, 11, 10}, 0.9f, 0},   // overlaps the first, higher score: kept
      {{1, 0, 11, 10}, 0.8f, 1},   // same place, other class: kept
      {{50, 50, 60, 60}, 0.3f, 0}  // far away: kept
  };
  Detections out = NonMaxSuppression(in, 0.5f);
  ASSERT_EQ(out.size(), 3u);
  EXPECT_FLOAT_EQ(out[0].score, 0.9f);
  EXPECT_EQ(out[1].class_id, 1);
  EXPECT_FLOAT_EQ(out[2].score, 0.3f);
  EXPECT_EQ(NonMaxSuppression(in, 0.5f, 1).size(), 1u);
}

}  // namespace
}  // namespace sd
