#include "common/eval/map_eval.h"

#include <gtest/gtest.h>

namespace sd {
namespace {

constexpr double kTol = 1e-6;

Detection Det(float x1, float y1, float x2, float y2, float score = 1.0f, int class_id = 0) {
  return Detection{Box{x1, y1, x2, y2}, score, class_id};
}

TEST(DetectionEvaluatorTest, PerfectPredictionsScoreOne) {
  DetectionEvaluator evaluator;
  // Reference scores are ignored, so 0 here must not matter.
  evaluator.AddFrame({Det(0, 0, 10, 10, 0.9f, 0), Det(20, 20, 40, 40, 0.8f, 1)},
                     {Det(0, 0, 10, 10, 0.0f, 0), Det(20, 20, 40, 40, 0.0f, 1)});
  evaluator.AddFrame({Det(5, 5, 15, 15, 0.3f, 0)}, {Det(5, 5, 15, 15, 0.0f, 0)});
  const EvalResult result = evaluator.Compute();
  ASSERT_TRUE(result.valid());
  EXPECT_NEAR(result.map50, 1.0, kTol);
  EXPECT_NEAR(result.map50_95, 1.0, kTol);
  EXPECT_EQ(result.num_frames, 2);
  EXPECT_EQ(result.num_ground_truth, 3);
  EXPECT_EQ(result.num_predictions, 3);
  ASSERT_EQ(result.per_class.size(), 2u);
  EXPECT_EQ(result.per_class[0].class_id, 0);
  EXPECT_EQ(result.per_class[0].num_ground_truth, 2);
  EXPECT_EQ(result.per_class[0].num_predictions, 2);
  EXPECT_EQ(result.per_class[1].class_id, 1);
  EXPECT_NEAR(result.per_class[1].ap50_95, 1.0, kTol);
}

TEST(DetectionEvaluatorTest, EmptyEvaluatorIsInvalid) {
  const EvalResult result = DetectionEvaluator().Compute();
  EXPECT_FALSE(result.valid());
  EXPECT_EQ(result.map50, 0.0);
  EXPECT_EQ(result.map50_95, 0.0);
  EXPECT_EQ(result.num_frames, 0);
  EXPECT_TRUE(result.per_class.empty());
}

TEST(DetectionEvaluatorTest, NoGroundTruthIsInvalidAndUndefinedPerClass) {
  DetectionEvaluator evaluator;
  evaluator.AddFrame({Det(0, 0, 10, 10, 0.9f, 3)}, {});
  evaluator.AddFrame({}, {});
  const EvalResult result = evaluator.Compute();
  EXPECT_FALSE(result.valid());
  EXPECT_EQ(result.map50, 0.0);
  EXPECT_EQ(result.map50_95, 0.0);
  EXPECT_EQ(result.num_frames, 2);
  EXPECT_EQ(result.num_predictions, 1);
  ASSERT_EQ(result.per_class.size(), 1u);
  EXPECT_EQ(result.per_class[0].class_id, 3);
  EXPECT_EQ(result.per_class[0].ap50, -1.0);
  EXPECT_EQ(result.per_class[0].ap50_95, -1.0);
}

TEST(DetectionEvaluatorTest, NoPredictionsScoreZero) {
  DetectionEvaluator evaluator;
  evaluator.AddFrame({}, {Det(0, 0, 10, 10)});
  const EvalResult result = evaluator.Compute();
  ASSERT_TRUE(result.valid());
  EXPECT_EQ(result.map50, 0.0);
  EXPECT_EQ(result.map50_95, 0.0);
  ASSERT_EQ(result.per_class.size(), 1u);
  EXPECT_EQ(result.per_class[0].ap50, 0.0);
  EXPECT_EQ(result.per_class[0].num_ground_truth, 1);
  EXPECT_EQ(result.per_class[0].num_predictions, 0);
}

TEST(DetectionEvaluatorTest, FalsePositiveInFrameWithoutTruthLowersAP) {
  DetectionEvaluator evaluator;
  evaluator.AddFrame({Det(0, 0, 10, 10, 0.9f)}, {Det(0, 0, 10, 10)});
  // Same place as frame 0's object, but in a frame with no object: it must not match across
  // frames.
  evaluator.AddFrame({Det(0, 0, 10, 10, 0.95f)}, {});
  // Ranked FP (p 0/1), TP (p 1/2, recall 1). Envelope: 0.5 at every recall point -> AP 0.5.
  const EvalResult result = evaluator.Compute();
  EXPECT_NEAR(result.map50, 0.5, kTol);
  EXPECT_NEAR(result.map50_95, 0.5, kTol);
}

TEST(DetectionEvaluatorTest, DuplicatesOfOneObjectAreFalsePositives) {
  DetectionEvaluator evaluator;
  evaluator.AddFrame({Det(0, 0, 10, 10, 0.9f), Det(0, 0, 10, 10, 0.85f), Det(0, 0, 10, 10, 0.8f),
                      Det(20, 0, 30, 10, 0.6f)},
                     {Det(0, 0, 10, 10), Det(20, 0, 30, 10)});
  // Ranked TP, FP, FP, TP over 2 objects: precision 1, 1/2, 1/3, 1/2 at recall .5, .5, .5, 1.
  // Envelope 1, 1/2, 1/2, 1/2. Recall points 0..0.50 (51) read 1, 0.51..1 (50) read 1/2:
  // AP = (51 + 25) / 101 = 76/101 at every threshold.
  const EvalResult result = evaluator.Compute();
  EXPECT_NEAR(result.map50, 76.0 / 101.0, kTol);
  EXPECT_NEAR(result.map50_95, 76.0 / 101.0, kTol);
  EXPECT_EQ(result.num_predictions, 4);
}

TEST(DetectionEvaluatorTest, MatchFallsBackToNextBestUnmatchedTruth) {
  DetectionEvaluator evaluator;
  // A = [0,10], B = [4,14]. The second prediction [1,11] overlaps A best (IoU 90/110) but A is
  // taken by the first, so it takes B (IoU 70/130 = 0.538): a TP at 0.50 only.
  evaluator.AddFrame({Det(0, 0, 10, 10, 0.9f), Det(1, 0, 11, 10, 0.8f)},
                     {Det(0, 0, 10, 10), Det(4, 0, 14, 10)});
  // t = 0.50: TP, TP -> AP 1. t >= 0.55: TP, FP, recall stops at 1/2 -> points 0..0.50 read 1,
  // the rest 0: AP 51/101. Mean over 10 thresholds: (1 + 9 * 51/101) / 10 = 56/101.
  const EvalResult result = evaluator.Compute();
  EXPECT_NEAR(result.map50, 1.0, kTol);
  EXPECT_NEAR(result.map50_95, 56.0 / 101.0, kTol);
}

TEST(DetectionEvaluatorTest, PrefersTheHighestIoUTruth) {
  DetectionEvaluator evaluator;
  // A = [0,10], B = [3,13]. The first prediction is A itself but also overlaps B (IoU 70/130 =
  // 0.538); it must take A, leaving B for the second one, [6,16] (IoU with B 0.538, with A 0.25).
  evaluator.AddFrame({Det(0, 0, 10, 10, 0.9f), Det(6, 0, 16, 10, 0.8f)},
                     {Det(0, 0, 10, 10), Det(3, 0, 13, 10)});
  // t = 0.50: TP, TP -> AP 1. t >= 0.55: TP, FP -> AP 51/101 (as above): mean 56/101.
  const EvalResult result = evaluator.Compute();
  EXPECT_NEAR(result.map50, 1.0, kTol);
  EXPECT_NEAR(result.map50_95, 56.0 / 101.0, kTol);
}

TEST(DetectionEvaluatorTest, LowIoUCountsOnlyAtLowThresholds) {
  DetectionEvaluator evaluator;
  // IoU 6200 / 10000 = 0.62: a hit at 0.50, 0.55, 0.60 and a miss (AP 0) at 0.65 .. 0.95.
  evaluator.AddFrame({Det(0, 0, 100, 62)}, {Det(0, 0, 100, 100)});
  const EvalResult result = evaluator.Compute();
  EXPECT_NEAR(result.map50, 1.0, kTol);
  EXPECT_NEAR(result.map50_95, 3.0 / 10.0, kTol);
}

TEST(DetectionEvaluatorTest, IoUExactlyAtThresholdCounts) {
  for (int k = 0; k < 10; ++k) {
    // IoU exactly h / 10 = (50 + 5k) / 100, the k-th threshold: a hit at thresholds 0 .. k.
    const float h = 5.0f + 0.5f * k;
    DetectionEvaluator evaluator;
    evaluator.AddFrame({Det(0, 0, 10, h)}, {Det(0, 0, 10, 10)});
    const EvalResult result = evaluator.Compute();
    EXPECT_NEAR(result.map50, 1.0, kTol) << "k=" << k;
    EXPECT_NEAR(result.map50_95, (k + 1) / 10.0, kTol) << "k=" << k;
  }
}

TEST(DetectionEvaluatorTest, RecallNeverReachedReadsZero) {
  DetectionEvaluator evaluator;
  evaluator.AddFrame({Det(0, 0, 10, 10)},
                     {Det(0, 0, 10, 10), Det(20, 0, 30, 10), Det(40, 0, 50, 10)});
  // One TP of 3 objects: recall 1/3 covers points 0 .. 0.33 (34 of them) at precision 1.
  EXPECT_NEAR(evaluator.Compute().map50, 34.0 / 101.0, kTol);
}

TEST(DetectionEvaluatorTest, MeanIsOverClassesWithTruth) {
  DetectionEvaluator evaluator;
  evaluator.AddFrame(
      {
          Det(0, 0, 10, 10, 0.5f, 0),     // class 0: perfect, AP 1
          Det(50, 50, 60, 60, 0.9f, 1),   // class 1: FP ranked first,
          Det(0, 0, 10, 10, 0.8f, 1),     // then two TPs
          Det(20, 20, 30, 30, 0.7f, 1),
      },
      {
          Det(0, 0, 10, 10, 1, 0),
          Det(0, 0, 10, 10, 1, 1),
          Det(20, 20, 30, 30, 1, 1),
          Det(100, 100, 110, 110, 1, 2),  // class 2: never predicted, AP 0
      });
  // Class 1: precision 0, 1/2, 2/3 at recall 0, 1/2, 1 -> envelope 2/3 everywhere: AP 2/3.
  // Mean over classes 0, 1, 2: (1 + 2/3 + 0) / 3 = 5/9.
  const EvalResult result = evaluator.Compute();
  ASSERT_EQ(result.per_class.size(), 3u);
  EXPECT_NEAR(result.per_class[0].ap50, 1.0, kTol);
  EXPECT_NEAR(result.per_class[1].ap50, 2.0 / 3.0, kTol);
  EXPECT_NEAR(result.per_class[2].ap50, 0.0, kTol);
  EXPECT_NEAR(result.map50, 5.0 / 9.0, kTol);
  EXPECT_NEAR(result.map50_95, 5.0 / 9.0, kTol);
  EXPECT_EQ(result.num_ground_truth, 4);
  EXPECT_EQ(result.num_predictions, 4);
}

TEST(DetectionEvaluatorTest, ClassOnlyInPredictionsIsListedButNotAveraged) {
  DetectionEvaluator evaluator;
  // The class-7 box sits on the class-0 object: a wrong class never matches.
  evaluator.AddFrame({Det(0, 0, 10, 10, 0.9f, 0), Det(0, 0, 10, 10, 0.99f, 7)},
                     {Det(0, 0, 10, 10, 1, 0)});
  const EvalResult result = evaluator.Compute();
  EXPECT_NEAR(result.map50, 1.0, kTol);
  EXPECT_NEAR(result.map50_95, 1.0, kTol);
  ASSERT_EQ(result.per_class.size(), 2u);
  EXPECT_EQ(result.per_class[1].class_id, 7);
  EXPECT_EQ(result.per_class[1].ap50, -1.0);
  EXPECT_EQ(result.per_class[1].ap50_95, -1.0);
  EXPECT_EQ(result.per_class[1].num_ground_truth, 0);
  EXPECT_EQ(result.per_class[1].num_predictions, 1);
}

// Two objects and one stray box; only the stray box's score changes.
double ApWithStrayScore(float stray_score) {
  DetectionEvaluator evaluator;
  evaluator.AddFrame({Det(0, 0, 10, 10, 0.8f), Det(20, 0, 30, 10, 0.6f),
                      Det(50, 0, 60, 10, stray_score)},
                     {Det(0, 0, 10, 10), Det(20, 0, 30, 10)});
  return evaluator.Compute().map50;
}

TEST(DetectionEvaluatorTest, ScoreOrderingMatters) {
  // TP, TP, FP: recall reaches 1 at precision 1 -> AP 1.
  EXPECT_NEAR(ApWithStrayScore(0.1f), 1.0, kTol);
  // TP, FP, TP: envelope 1 up to recall 1/2 (51 points), then 2/3 (50 points):
  // (51 + 100/3) / 101 = 253/303.
  EXPECT_NEAR(ApWithStrayScore(0.7f), 253.0 / 303.0, kTol);
  // FP, TP, TP: envelope 2/3 everywhere -> AP 2/3.
  EXPECT_NEAR(ApWithStrayScore(0.9f), 2.0 / 3.0, kTol);
}

TEST(DetectionEvaluatorTest, TiedScoresKeepInsertionOrder) {
  const Detections hit = {Det(0, 0, 10, 10, 0.5f)};
  const Detections truth = {Det(0, 0, 10, 10)};
  const Detections stray = {Det(50, 0, 60, 10, 0.5f)};

  DetectionEvaluator hit_first;
  hit_first.AddFrame(hit, truth);
  hit_first.AddFrame(stray, {});
  EXPECT_NEAR(hit_first.Compute().map50, 1.0, kTol);  // TP, FP

  DetectionEvaluator stray_first;
  stray_first.AddFrame(stray, {});
  stray_first.AddFrame(hit, truth);
  EXPECT_NEAR(stray_first.Compute().map50, 0.5, kTol);  // FP, TP

  // Enough ties that an unstable sort (not just insertion sort) would shuffle them.
  DetectionEvaluator many;
  for (int f = 0; f < 100; ++f) many.AddFrame(hit, truth);
  for (int f = 0; f < 100; ++f) many.AddFrame(stray, {});
  EXPECT_NEAR(many.Compute().map50, 1.0, kTol);  // 100 TPs reach recall 1 before any FP
}

TEST(DetectionEvaluatorTest, HandlesManyFrames) {
  DetectionEvaluator evaluator;
  constexpr int kFrames = 10000;
  for (int f = 0; f < kFrames; ++f) {
    Detections truth;
    Detections predictions;
    for (int i = 0; i < 10; ++i) {
      const float x = 20.0f * i;
      truth.push_back(Det(x, 0, x + 10, 10, 1, i % 3));
      // Each object found, at varying scores, plus a low-scored stray box per frame.
      predictions.push_back(Det(x, 0, x + 10, 10, 0.5f + 0.0001f * ((f * 7 + i) % 4000), i % 3));
    }
    predictions.push_back(Det(500, 500, 510, 510, 0.1f, f % 3));
    evaluator.AddFrame(predictions, truth);
  }
  const EvalResult result = evaluator.Compute();
  // Every stray box ranks below every hit, after which recall is already 1: AP 1.
  EXPECT_NEAR(result.map50_95, 1.0, kTol);
  EXPECT_EQ(result.num_frames, kFrames);
  EXPECT_EQ(result.num_ground_truth, 10 * kFrames);
  EXPECT_EQ(result.num_predictions, 11 * kFrames);
}

}  // namespace
}  // namespace sd
