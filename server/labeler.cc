#include "server/labeler.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <utility>

#include <opencv2/imgcodecs.hpp>

#include "common/vision/appearance.h"
#include "common/vision/resize.h"
#include "common/base/clock.h"
#include "common/eval/map_eval.h"

namespace sd {

StatusOr<std::unique_ptr<LabelerPool>> LabelerPool::Create(const TeacherOptions& options, int workers,
                                                           int queue_capacity) {
  return Create([options] { return CreateTeacher(options); }, workers, queue_capacity);
}

StatusOr<std::unique_ptr<LabelerPool>> LabelerPool::Create(TeacherFactory factory, int workers, int queue_capacity) {
  if (workers < 1) return Status::InvalidArgument("labeler workers must be >= 1, got " + std::to_string(workers));
  if (queue_capacity < 1)
    return Status::InvalidArgument("labeler queue capacity must be >= 1, got " + std::to_string(queue_capacity));
  if (!factory) return Status::InvalidArgument("labeler teacher factory is empty");
  std::vector<std::unique_ptr<Teacher>> teachers;
  for (int i = 0; i < workers; ++i) {
    StatusOr<std::unique_ptr<Teacher>> teacher = factory();
    if (!teacher.ok()) return teacher.status().WithContext("labeler worker " + std::to_string(i));
    if (*teacher == nullptr) return Status::Internal("labeler worker " + std::to_string(i) + ": factory returned null");
    teachers.push_back(std::move(teacher).value());
  }
  return std::unique_ptr<LabelerPool>(new LabelerPool(std::move(teachers), queue_capacity));
}

LabelerPool::LabelerPool(std::vector<std::unique_ptr<Teacher>> teachers, int queue_capacity)
    : capacity_(queue_capacity), fingerprint_(teachers.front()->Fingerprint()), teachers_(std::move(teachers)) {
  threads_.reserve(teachers_.size());
  for (auto& teacher : teachers_) threads_.emplace_back(&LabelerPool::WorkerLoop, this, teacher.get());
}

LabelerPool::~LabelerPool() {
  std::deque<Pending> cancelled;
  std::vector<std::function<void()>> dropped;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    cancelled.swap(queue_);
    dropped.swap(space_waiters_);
  }
  work_ready_.notify_all();
  // Before the join: a slow teacher call in flight should not delay telling the owners of
  // queued frames that those will not be labelled.
  for (Pending& p : cancelled)
    p.done(Status::Aborted("device " + p.job.device_id + " frame " + std::to_string(p.job.sequence) +
                           ": labeler shut down before the frame was labelled"));
  for (std::thread& t : threads_) t.join();
}

void LabelerPool::SetMaxQueueSeconds(double seconds) {
  std::lock_guard<std::mutex> lock(mu_);
  max_queue_seconds_ = seconds > 0 ? seconds : 0;
}

int LabelerPool::EffectiveCapacityLocked() const {
  if (!(max_queue_seconds_ > 0)) return capacity_;
  if (!(seconds_per_job_ > 0)) return std::min(capacity_, workers());  // nothing measured yet
  // A job at place k waits about k / workers jobs' time: the queue holds no more than the bound.
  const double jobs = std::floor(max_queue_seconds_ * workers() / seconds_per_job_);
  return static_cast<int>(std::clamp(jobs, 1.0, static_cast<double>(capacity_)));
}

int LabelerPool::effective_capacity() const {
  std::lock_guard<std::mutex> lock(mu_);
  return EffectiveCapacityLocked();
}

double LabelerPool::seconds_per_job() const {
  std::lock_guard<std::mutex> lock(mu_);
  return seconds_per_job_;
}

double LabelerPool::queued_seconds() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<double>(queue_.size()) * seconds_per_job_ / workers();
}

double LabelerPool::max_queue_seconds() const {
  std::lock_guard<std::mutex> lock(mu_);
  return max_queue_seconds_;
}

double LabelerPool::busy_seconds() const {
  std::lock_guard<std::mutex> lock(mu_);
  return busy_seconds_;
}

bool LabelerPool::TrySubmit(LabelJob job, LabelCallback done) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_ || static_cast<int>(queue_.size()) >= EffectiveCapacityLocked()) return false;
    queue_.push_back(Pending{std::move(job), std::move(done), SteadySeconds()});
  }
  work_ready_.notify_one();
  return true;
}

bool LabelerPool::WaitForSpace(std::function<void()> fn) {
  std::lock_guard<std::mutex> lock(mu_);
  // Shutting down: there will never be room; dropping `fn` releases whatever it captured.
  if (stopping_ || static_cast<int>(queue_.size()) < EffectiveCapacityLocked()) return false;
  space_waiters_.push_back(std::move(fn));
  return true;
}

int LabelerPool::queued() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int>(queue_.size());
}

void LabelerPool::WorkerLoop(Teacher* teacher) {
  while (true) {
    Pending pending;
    std::vector<std::function<void()>> waiters;
    {
      std::unique_lock<std::mutex> lock(mu_);
      work_ready_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;  // the destructor cancels what is still queued
      pending = std::move(queue_.front());
      queue_.pop_front();
      // Taking a job off the queue is what makes room, so this is where waiters are woken.
      waiters.swap(space_waiters_);
    }
    for (auto& fn : waiters) fn();
    const double start_s = SteadySeconds();
    StatusOr<LabelResult> result = Process(teacher, pending.job);
    if (result.ok()) result->queue_wait_s = start_s - pending.queued_at_s;
    pending.done(std::move(result));
    const double busy_s = SteadySeconds() - start_s;
    std::lock_guard<std::mutex> lock(mu_);
    busy_seconds_ += busy_s;
    // Smoothed over about ten jobs: follows a teacher that slows down (bigger frames, a busy
    // machine) within seconds, and one odd frame moves it little.
    seconds_per_job_ = seconds_per_job_ > 0 ? seconds_per_job_ + 0.1 * (busy_s - seconds_per_job_) : busy_s;
  }
}

StatusOr<LabelResult> LabelerPool::Process(Teacher* teacher, const LabelJob& job) {
  const std::string what = "device " + job.device_id + " frame " + std::to_string(job.sequence);
  LabelResult result;
  try {
    if (!job.jpeg || job.jpeg->empty()) return Status::InvalidArgument(what + ": empty JPEG");
    // From the header, before decoding: a few hundred bytes can claim gigapixels.
    auto size = CheckJpegSize(*job.jpeg, job.limits);
    if (!size.ok()) return size.status().WithContext(what);
    const cv::Mat bytes(1, static_cast<int>(job.jpeg->size()), CV_8UC1, const_cast<char*>(job.jpeg->data()));
    result.image = cv::imdecode(bytes, cv::IMREAD_COLOR);
    if (result.image.empty())
      return Status::InvalidArgument(what + ": JPEG does not decode (" + std::to_string(job.jpeg->size()) + " bytes)");
    const int decoded_width = result.image.cols;
    result.image = ShrinkToWidth(result.image, job.max_image_width);
    result.shrunk = result.image.cols != decoded_width;
  } catch (const cv::Exception& e) {
    return Status::InvalidArgument(what + ": JPEG does not decode: " + e.what());
  }
  result.embedding = AppearanceEmbedding(result.image);
  const auto start = std::chrono::steady_clock::now();
  StatusOr<Detections> labels = teacher->Label(result.image);
  result.teacher_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  if (!labels.ok()) return labels.status().WithContext(what);
  result.labels = std::move(labels).value();
  return result;
}

double LabelAgreement(const Detections& a, const Detections& b) {
  if (a.empty() && b.empty()) return 1.0;
  if (a.empty() || b.empty()) return 0.0;
  DetectionEvaluator b_vs_a, a_vs_b;
  b_vs_a.AddFrame(b, a);
  a_vs_b.AddFrame(a, b);
  return 0.5 * (b_vs_a.Compute().map50 + a_vs_b.Compute().map50);
}

}  // namespace sd
