// The server's labelling stage: a pool of teacher workers behind a bounded queue.
//
// Frames arrive as JPEG bytes on gRPC threads; each worker thread owns one Teacher (a Teacher
// is not thread-safe, and loading one per job would be far too slow), decodes the frame,
// optionally shrinks it, and labels it. The queue is bounded so that a burst of frames turns
// into back-pressure on the streams instead of memory growth: TrySubmit refuses when full and
// the caller holds on to its frame until WaitForSpace says there is room. Nothing is dropped.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <opencv2/core.hpp>

#include "common/vision/detection.h"
#include "common/vision/image_header.h"
#include "common/base/status.h"
#include "common/teacher/teacher.h"

namespace sd {

struct LabelJob {
  std::string device_id;
  uint64_t sequence = 0;
  // Shared with the submitter's callback, which stores these same bytes: not copied per stage.
  std::shared_ptr<const std::string> jpeg;
  int max_image_width = 0;  // wider frames are shrunk to this width (aspect kept); 0: keep
  ImageLimits limits;       // larger JPEGs (by their header) are refused before decoding
};

struct LabelResult {
  cv::Mat image;      // the decoded (and possibly shrunk) BGR frame: the image to store
  // True when `image` was shrunk (LabelJob::max_image_width); false: it is the sent JPEG
  // decoded, so those bytes can be stored as they are, without encoding it again.
  bool shrunk = false;
  Detections labels;  // the teacher's boxes, in `image`'s pixels
  std::vector<float> embedding;  // AppearanceEmbedding(image): the long-term memory's measure of looks
  double teacher_ms = 0;  // time spent in Teacher::Label alone
  double queue_wait_s = 0;  // from TrySubmit to a worker taking the job
};

using LabelCallback = std::function<void(StatusOr<LabelResult>)>;
using TeacherFactory = std::function<StatusOr<std::unique_ptr<Teacher>>()>;

class LabelerPool {
 public:
  // `workers` threads, each with its own Teacher from CreateTeacher(options); at most
  // `queue_capacity` jobs waiting (jobs being labelled do not count).
  static StatusOr<std::unique_ptr<LabelerPool>> Create(const TeacherOptions& options, int workers, int queue_capacity);
  // The same with teachers from `factory` (called `workers` times on the calling thread, so
  // a model that does not load fails Create rather than a worker). Tests pass fakes here.
  static StatusOr<std::unique_ptr<LabelerPool>> Create(TeacherFactory factory, int workers, int queue_capacity);

  // Jobs still queued are cancelled first: their callbacks run on the destroying thread with
  // Aborted. WaitForSpace callbacks still waiting are destroyed without being called (a captured
  // std::promise then reports broken_promise). Then jobs being labelled finish, get their
  // callbacks, and the threads are joined; when it returns no callback is running or pending.
  // Callbacks must not destroy the pool.
  ~LabelerPool();

  LabelerPool(const LabelerPool&) = delete;
  LabelerPool& operator=(const LabelerPool&) = delete;

  // Queues the job; false (and `done` is not kept) when the queue is full or the pool is
  // shutting down: the caller keeps the frame and waits with WaitForSpace. `done` runs exactly once,
  // on a worker thread, with the result or an error (an undecodable JPEG gives
  // InvalidArgument), the error naming the device and sequence.
  bool TrySubmit(LabelJob job, LabelCallback done);

  // After a refused TrySubmit: when the queue is still full, keeps `fn` and returns true; `fn`
  // then runs once, on the worker thread that makes room. When there is room now (or the
  // pool is shutting down) returns false and drops `fn`: the caller retries TrySubmit itself.
  // `fn` never runs on the calling thread, so a caller holding its own state cannot be
  // re-entered. Room is not reserved: another submitter may take it first, so `fn` should
  // retry TrySubmit and wait again if that fails.
  bool WaitForSpace(std::function<void()> fn);

  // Back-pressure in seconds of work: from now on the queue holds at most as many jobs as
  // the workers label in `seconds` at the measured time per job (a job's labelling and its
  // callback: storing the frame), never more than the queue capacity; before the first
  // measurement, one job per worker. 0: the capacity alone (the default).
  void SetMaxQueueSeconds(double seconds);

  int queued() const;
  int capacity() const { return capacity_; }
  // The jobs the queue may hold now (the capacity, or fewer under SetMaxQueueSeconds).
  int effective_capacity() const;
  // Measured seconds of a worker per job, smoothed (0 before the first job ends).
  double seconds_per_job() const;
  // The work queued, in seconds of the pool (queued jobs x seconds_per_job / workers).
  double queued_seconds() const;
  double max_queue_seconds() const;
  // Seconds the workers spent on jobs, in all (the labellers' busy share is its rate / workers).
  double busy_seconds() const;
  int workers() const { return static_cast<int>(threads_.size()); }
  // The teachers' Fingerprint() (all workers share one configuration): the label-cache key.
  const std::string& teacher_fingerprint() const { return fingerprint_; }

 private:
  struct Pending {
    LabelJob job;
    LabelCallback done;
    double queued_at_s = 0;  // steady clock
  };
  int EffectiveCapacityLocked() const;  // mu_ held

  LabelerPool(std::vector<std::unique_ptr<Teacher>> teachers, int queue_capacity);
  void WorkerLoop(Teacher* teacher);
  static StatusOr<LabelResult> Process(Teacher* teacher, const LabelJob& job);

  const int capacity_;
  std::string fingerprint_;
  // One per worker; teachers_[i] is used only by threads_[i], so they need no lock.
  std::vector<std::unique_ptr<Teacher>> teachers_;
  std::vector<std::thread> threads_;

  mutable std::mutex mu_;
  std::condition_variable work_ready_;  // signalled on a new job and on shutdown
  // Guarded by mu_: jobs not yet taken by a worker (size <= capacity_), callers waiting for
  // room, and whether the destructor has begun (then nothing new is accepted).
  std::deque<Pending> queue_;
  std::vector<std::function<void()>> space_waiters_;
  bool stopping_ = false;
  double max_queue_seconds_ = 0;  // guarded by mu_, as are the two below
  double seconds_per_job_ = 0;
  double busy_seconds_ = 0;
};

// How much two label sets agree (e.g. the teacher's and the student's on one frame, which
// adaptive sampling uses to decide how often to send frames): mAP50 of `b` scored against `a`
// as reference and of `a` against `b`, averaged so neither side is privileged. In [0, 1]:
// 1 when both are empty, 0 when exactly one is.
double LabelAgreement(const Detections& a, const Detections& b);

}  // namespace sd
