#include "common/eval/map_eval.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <numeric>

namespace sd {
namespace {

constexpr int kNumIouThresholds = 10;  // 0.50, 0.55, ..., 0.95
constexpr int kNumRecallPoints = 101;  // 0.00, 0.01, ..., 1.00

// Rounded from the exact decimal, so that an IoU of exactly 3/4 (which IoU() also rounds to
// the nearest float) meets the 0.75 threshold instead of missing it by one ulp.
float IouThreshold(int index) { return static_cast<float>((50 + 5 * index) / 100.0); }

// A NaN score would break the strict weak ordering of the ranking sort; rank it last instead.
float RankableScore(float score) {
  return std::isnan(score) ? -std::numeric_limits<float>::infinity() : score;
}

// One prediction with its IoUs against the reference boxes of its class in its own frame.
// Those boxes are numbered consecutively per class, [gt_begin, gt_begin + num_gt).
struct ClassPrediction {
  float score = 0;
  int gt_begin = 0;
  int num_gt = 0;
  size_t iou_begin = 0;  // into ClassRecords::ious
};

struct ClassRecords {
  std::vector<ClassPrediction> predictions;  // in the order frames were added
  std::vector<float> ious;
  int num_ground_truth = 0;
};

// A frame's reference boxes of one class and where they start in that class's numbering.
struct FrameClassTruth {
  int gt_begin = 0;
  std::vector<const Box*> boxes;
};

// IoUs are computed once here; only the matching depends on the threshold.
std::map<int, ClassRecords> GroupByClass(const std::vector<Detections>& predictions,
                                         const std::vector<Detections>& ground_truth) {
  std::map<int, ClassRecords> classes;
  for (size_t frame = 0; frame < predictions.size(); ++frame) {
    std::map<int, FrameClassTruth> truth;
    for (const Detection& g : ground_truth[frame]) truth[g.class_id].boxes.push_back(&g.box);
    for (auto& [class_id, frame_truth] : truth) {
      ClassRecords& records = classes[class_id];
      frame_truth.gt_begin = records.num_ground_truth;
      records.num_ground_truth += static_cast<int>(frame_truth.boxes.size());
    }
    for (const Detection& p : predictions[frame]) {
      ClassRecords& records = classes[p.class_id];
      ClassPrediction prediction;
      prediction.score = RankableScore(p.score);
      prediction.iou_begin = records.ious.size();
      const auto it = truth.find(p.class_id);
      if (it != truth.end()) {
        prediction.gt_begin = it->second.gt_begin;
        prediction.num_gt = static_cast<int>(it->second.boxes.size());
        for (const Box* box : it->second.boxes) records.ious.push_back(IoU(p.box, *box));
      }
      records.predictions.push_back(prediction);
    }
  }
  return classes;
}

// Indices of the predictions by descending score; stable, so ties keep insertion order.
std::vector<int> RankByScore(const std::vector<ClassPrediction>& predictions) {
  std::vector<int> ranking(predictions.size());
  std::iota(ranking.begin(), ranking.end(), 0);
  std::stable_sort(ranking.begin(), ranking.end(), [&](int a, int b) {
    return predictions[a].score > predictions[b].score;
  });
  return ranking;
}

// Marks is_tp[rank] for each prediction in ranked order, each taking the best still
// unmatched reference box of its frame with IoU >= threshold.
void MatchGreedily(const ClassRecords& records, const std::vector<int>& ranking, float threshold,
                   std::vector<char>* matched, std::vector<char>* is_tp) {
  std::fill(matched->begin(), matched->end(), 0);
  for (size_t rank = 0; rank < ranking.size(); ++rank) {
    const ClassPrediction& p = records.predictions[ranking[rank]];
    int best = -1;
    float best_iou = threshold;
    for (int j = 0; j < p.num_gt; ++j) {
      const float iou = records.ious[p.iou_begin + j];
      // As pycocotools: `<`, so a box exactly at the threshold matches.
      if ((*matched)[p.gt_begin + j] || iou < best_iou) continue;
      best_iou = iou;
      best = j;
    }
    (*is_tp)[rank] = best >= 0;
    if (best >= 0) (*matched)[p.gt_begin + best] = 1;
  }
}

// 101-point interpolated AP of a ranked list of hits against num_gt > 0 reference boxes.
double InterpolatedAP(const std::vector<char>& is_tp, int num_gt) {
  const size_t n = is_tp.size();
  std::vector<int> tp_so_far(n);
  std::vector<double> precision(n);
  int tp = 0;
  for (size_t i = 0; i < n; ++i) {
    tp += is_tp[i];
    tp_so_far[i] = tp;
    precision[i] = static_cast<double>(tp) / static_cast<double>(i + 1);
  }
  // Envelope from the right: the best precision reachable at this recall or beyond.
  for (size_t i = n; i-- > 1;) precision[i - 1] = std::max(precision[i - 1], precision[i]);

  double sum = 0;
  size_t k = 0;
  for (int r = 0; r < kNumRecallPoints; ++r) {
    // recall >= r / 100 in integers: tp / num_gt and r / 100 can round differently as doubles.
    while (k < n && int64_t{tp_so_far[k]} * 100 < int64_t{r} * num_gt) ++k;
    if (k == n) break;  // recall never gets this far: precision 0 here and beyond
    sum += precision[k];
  }
  return sum / kNumRecallPoints;
}

ClassAP EvaluateClass(int class_id, const ClassRecords& records) {
  ClassAP result;
  result.class_id = class_id;
  result.num_ground_truth = records.num_ground_truth;
  result.num_predictions = static_cast<int>(records.predictions.size());
  if (records.num_ground_truth == 0) {
    result.ap50 = result.ap50_95 = -1;
    return result;
  }
  const std::vector<int> ranking = RankByScore(records.predictions);
  std::vector<char> matched(records.num_ground_truth);
  std::vector<char> is_tp(ranking.size());
  double ap_sum = 0;
  for (int t = 0; t < kNumIouThresholds; ++t) {
    MatchGreedily(records, ranking, IouThreshold(t), &matched, &is_tp);
    const double ap = InterpolatedAP(is_tp, records.num_ground_truth);
    if (t == 0) result.ap50 = ap;
    ap_sum += ap;
  }
  result.ap50_95 = ap_sum / kNumIouThresholds;
  return result;
}

}  // namespace

void DetectionEvaluator::AddFrame(const Detections& predictions, const Detections& ground_truth) {
  predictions_.push_back(predictions);
  ground_truth_.push_back(ground_truth);
}

EvalResult DetectionEvaluator::Compute() const {
  EvalResult result;
  result.num_frames = static_cast<int>(predictions_.size());
  double sum50 = 0;
  double sum50_95 = 0;
  int classes_with_truth = 0;
  for (const auto& [class_id, records] : GroupByClass(predictions_, ground_truth_)) {
    const ClassAP ap = EvaluateClass(class_id, records);
    result.num_ground_truth += ap.num_ground_truth;
    result.num_predictions += ap.num_predictions;
    if (ap.num_ground_truth > 0) {
      sum50 += ap.ap50;
      sum50_95 += ap.ap50_95;
      ++classes_with_truth;
    }
    result.per_class.push_back(ap);
  }
  if (classes_with_truth > 0) {
    result.map50 = sum50 / classes_with_truth;
    result.map50_95 = sum50_95 / classes_with_truth;
  }
  return result;
}

}  // namespace sd
