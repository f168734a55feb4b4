#include "common/eval/detector_timing.h"

#include <algorithm>
#include <chrono>

namespace sd {
namespace {

using Clock = std::chrono::steady_clock;
constexpr int kWarmupCalls = 5;

double MsSince(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

}  // namespace

TimeDistribution DistributionOf(std::vector<double> ms) {
  TimeDistribution d;
  if (ms.empty()) return d;
  std::sort(ms.begin(), ms.end());
  auto rank = [&](double q) { return ms[std::min(ms.size() - 1, static_cast<size_t>(q * ms.size()))]; };
  double sum = 0;
  for (double v : ms) sum += v;
  d.frames = static_cast<int>(ms.size());
  d.median_ms = rank(0.5);
  d.p95_ms = rank(0.95);
  d.max_ms = ms.back();
  d.mean_ms = sum / ms.size();
  return d;
}

StatusOr<DetectorTiming> TimeStudentAndTeacher(const StudentDetector& student, Teacher& teacher,
                                               const std::vector<cv::Mat>& frames, int threads_after) {
  if (frames.empty()) return Status::InvalidArgument("no frames to time the detectors on");
  SetTorchThreads(1);
  cv::setNumThreads(1);
  Status result;
  DetectorTiming timing;
  std::vector<double> student_ms, teacher_ms;
  for (int i = 0; i < kWarmupCalls && result.ok(); ++i) {
    result = student.Detect(frames[i % frames.size()]).status();
    if (result.ok()) result = teacher.Label(frames[i % frames.size()]).status();
  }
  double detections = 0;
  for (size_t i = 0; i < frames.size() && result.ok(); ++i) {
    auto t0 = Clock::now();
    StatusOr<StudentOutput> out = student.Detect(frames[i]);
    student_ms.push_back(MsSince(t0));
    if (!out.ok()) {
      result = out.status();
      break;
    }
    detections += out->detections.size();
    t0 = Clock::now();
    result = teacher.Label(frames[i]).status();
    teacher_ms.push_back(MsSince(t0));
  }
  SetTorchThreads(threads_after);
  cv::setNumThreads(threads_after);
  SD_RETURN_IF_ERROR(result);
  timing.student = DistributionOf(student_ms);
  timing.teacher = DistributionOf(teacher_ms);
  timing.student_detections_per_frame = detections / frames.size();
  return timing;
}

}  // namespace sd
