#include "server/labeler.h"

#include <atomic>
#include <condition_variable>
#include <future>
#include <map>
#include <mutex>
#include <thread>

#include <gtest/gtest.h>
#include <opencv2/imgcodecs.hpp>

#include "common/video/synthetic_scene.h"

namespace sd {
namespace {

const std::string kOnnxFixture = std::string(SD_SOURCE_DIR) + "/tests/data/tiny_yolo.onnx";

std::string EncodeJpeg(const cv::Mat& bgr) {
  std::vector<uchar> bytes;
  EXPECT_TRUE(cv::imencode(".jpg", bgr, bytes, {cv::IMWRITE_JPEG_QUALITY, 95}));
  return std::string(bytes.begin(), bytes.end());
}

// A counting semaphore the test opens by hand, so "a job is being labelled" is a state the
// test controls instead of a race it waits out.
class Gate {
 public:
  void Open(int permits) {
    std::lock_guard<std::mutex> lock(mu_);
    permits_ += permits;
    cv_.notify_all();
  }
  // Called by the teacher: announces the call, then blocks until a permit is available.
  void Pass() {
    std::unique_lock<std::mutex> lock(mu_);
    ++started_;
    cv_.notify_all();
    cv_.wait(lock, [this] { return permits_ > 0; });
    --permits_;
  }
  void WaitStarted(int n) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return started_ >= n; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int permits_ = 0;
  int started_ = 0;
};

// Labels every frame with one box covering it; optionally waits on a gate. Fails the test if
// two threads ever use one instance at once (the pool promises one teacher per worker).
class FakeTeacher : public Teacher {
 public:
  explicit FakeTeacher(Gate* gate) : gate_(gate) {}
  StatusOr<Detections> Label(const cv::Mat& bgr) override {
    EXPECT_FALSE(busy_.exchange(true)) << "one Teacher used by two threads at once";
    if (gate_ != nullptr) gate_->Pass();
    Detections out = {Detection{Box{0, 0, static_cast<float>(bgr.cols), static_cast<float>(bgr.rows)}, 1.0f, 0}};
    busy_ = false;
    return out;
  }
  std::string Fingerprint() const override { return "fake"; }

 private:
  Gate* gate_;
  std::atomic<bool> busy_{false};
};

TeacherFactory FakeFactory(Gate* gate = nullptr) {
  return [gate]() -> StatusOr<std::unique_ptr<Teacher>> { return std::unique_ptr<Teacher>(new FakeTeacher(gate)); };
}

std::unique_ptr<LabelerPool> MakePool(TeacherFactory factory, int workers, int capacity) {
  auto pool = LabelerPool::Create(std::move(factory), workers, capacity);
  EXPECT_TRUE(pool.ok()) << pool.status().ToString();
  return pool.ok() ? std::move(pool).value() : nullptr;
}

LabelJob Job(const std::string& jpeg, uint64_t sequence, const std::string& device = "cam") {
  LabelJob job;
  job.device_id = device;
  job.sequence = sequence;
  job.jpeg = std::make_shared<const std::string>(jpeg);
  return job;
}

// Collects callback results and lets the test wait for a number of them.
class Results {
 public:
  LabelCallback Callback(uint64_t sequence) {
    return [this, sequence](StatusOr<LabelResult> r) {
      std::lock_guard<std::mutex> lock(mu_);
      ++calls_[sequence];
      if (r.ok()) ++ok_;
      else codes_.push_back(r.status().code());
      cv_.notify_all();
    };
  }
  void WaitFor(int n) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return Total() >= n; });
  }
  int ok() {
    std::lock_guard<std::mutex> lock(mu_);
    return ok_;
  }
  std::vector<Status::Code> errors() {
    std::lock_guard<std::mutex> lock(mu_);
    return codes_;
  }
  std::map<uint64_t, int> calls() {
    std::lock_guard<std::mutex> lock(mu_);
    return calls_;
  }

 private:
  int Total() const { return ok_ + static_cast<int>(codes_.size()); }
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<uint64_t, int> calls_;
  int ok_ = 0;
  std::vector<Status::Code> codes_;
};

TEST(LabelerPoolTest, LabelsJpegWithRealOnnxTeacherAndShrinks) {
  TeacherOptions options;
  options.kind = TeacherKind::kOnnx;
  options.model_path = kOnnxFixture;
  options.input_width = options.input_height = 64;
  auto pool = LabelerPool::Create(options, 1, 2);
  ASSERT_TRUE(pool.ok()) << pool.status().ToString();
  EXPECT_NE((*pool)->teacher_fingerprint().find("onnx "), std::string::npos);

  // A 256x128 red frame shrunk to 128x64 is the frame tests/teacher_test.cc decodes by hand.
  LabelJob job = Job(EncodeJpeg(cv::Mat(128, 256, CV_8UC3, cv::Scalar(0, 0, 255))), 7);
  job.max_image_width = 128;
  std::promise<StatusOr<LabelResult>> promise;
  ASSERT_TRUE((*pool)->TrySubmit(job, [&](StatusOr<LabelResult> r) { promise.set_value(std::move(r)); }));
  StatusOr<LabelResult> result = promise.get_future().get();
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  EXPECT_EQ(result->image.cols, 128);
  EXPECT_EQ(result->image.rows, 64);
  EXPECT_EQ(result->image.type(), CV_8UC3);
  EXPECT_GT(result->teacher_ms, 0);
  ASSERT_EQ(result->labels.size(), 3u);
  EXPECT_EQ(result->labels[0].class_id, 2);
  EXPECT_EQ(result->labels[1].class_id, 0);
  EXPECT_NEAR(result->labels[1].box.x1, 44, 1e-3);
  EXPECT_NEAR(result->labels[1].box.y2, 62, 1e-3);
  EXPECT_EQ(result->labels[2].class_id, 1);
}

TEST(LabelerPoolTest, CorruptJpegGivesInvalidArgumentThroughCallback) {
  auto pool = MakePool(FakeFactory(), 1, 4);
  ASSERT_NE(pool, nullptr);
  const std::string good = EncodeJpeg(cv::Mat(24, 32, CV_8UC3, cv::Scalar(10, 200, 30)));
  const std::vector<std::string> bad = {"", "not a jpeg at all", std::string("\xFF\xD8\xFF\xE0", 4),
                                        std::string(200, '\x42')};
  for (size_t i = 0; i < bad.size(); ++i) {
    std::promise<StatusOr<LabelResult>> promise;
    ASSERT_TRUE(pool->TrySubmit(Job(bad[i], 40 + i, "door"), [&](StatusOr<LabelResult> r) { promise.set_value(std::move(r)); }));
    StatusOr<LabelResult> result = promise.get_future().get();
    ASSERT_FALSE(result.ok()) << "input " << i;
    EXPECT_EQ(result.status().code(), Status::Code::kInvalidArgument) << result.status().ToString();
    EXPECT_NE(result.status().message().find("device door frame " + std::to_string(40 + i)), std::string::npos)
        << result.status().ToString();
  }
  // The worker survives bad input.
  std::promise<StatusOr<LabelResult>> promise;
  ASSERT_TRUE(pool->TrySubmit(Job(good, 1), [&](StatusOr<LabelResult> r) { promise.set_value(std::move(r)); }));
  StatusOr<LabelResult> result = promise.get_future().get();
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  ASSERT_EQ(result->labels.size(), 1u);
  EXPECT_EQ(result->labels[0].box.x2, 32);
}

TEST(LabelerPoolTest, FullQueueRefusesAndWaitForSpaceFiresWhenRoomReturns) {
  Gate gate;
  auto pool = MakePool(FakeFactory(&gate), 1, 2);
  ASSERT_NE(pool, nullptr);
  const std::string jpeg = EncodeJpeg(cv::Mat(24, 32, CV_8UC3, cv::Scalar(90, 90, 90)));
  Results results;

  // Room now: WaitForSpace says so and never calls back (the caller retries itself).
  bool called = false;
  EXPECT_FALSE(pool->WaitForSpace([&] { called = true; }));
  EXPECT_FALSE(called);

  ASSERT_TRUE(pool->TrySubmit(Job(jpeg, 0), results.Callback(0)));
  gate.WaitStarted(1);  // job 0 is in the teacher, no longer queued
  ASSERT_TRUE(pool->TrySubmit(Job(jpeg, 1), results.Callback(1)));
  ASSERT_TRUE(pool->TrySubmit(Job(jpeg, 2), results.Callback(2)));
  EXPECT_EQ(pool->queued(), 2);
  EXPECT_EQ(pool->capacity(), 2);
  bool refused_callback_ran = false;
  EXPECT_FALSE(pool->TrySubmit(Job(jpeg, 3), [&](StatusOr<LabelResult>) { refused_callback_ran = true; }));

  auto space = std::make_shared<std::promise<void>>();
  std::future<void> has_space = space->get_future();
  EXPECT_TRUE(pool->WaitForSpace([space] { space->set_value(); }));
  EXPECT_EQ(has_space.wait_for(std::chrono::seconds(0)), std::future_status::timeout);

  gate.Open(1);  // job 0 finishes; the worker takes job 1 off the queue, which makes room
  has_space.get();
  ASSERT_TRUE(pool->TrySubmit(Job(jpeg, 3), results.Callback(3)));
  gate.Open(3);
  results.WaitFor(4);
  EXPECT_EQ(results.ok(), 4);
  EXPECT_FALSE(refused_callback_ran);
  for (const auto& [sequence, calls] : results.calls()) EXPECT_EQ(calls, 1) << "sequence " << sequence;
}

TEST(LabelerPoolTest, DestructorCancelsQueuedJobsWithoutHangingOrLeaking) {
  Gate gate;
  auto pool = MakePool(FakeFactory(&gate), 1, 4);
  ASSERT_NE(pool, nullptr);
  const std::string jpeg = EncodeJpeg(cv::Mat(24, 32, CV_8UC3, cv::Scalar(90, 90, 90)));
  Results results;
  auto token = std::make_shared<int>(0);  // captured by every callback: must be released
  for (uint64_t i = 0; i < 5; ++i) {
    LabelCallback inner = results.Callback(i);
    ASSERT_TRUE(pool->TrySubmit(Job(jpeg, i), [token, inner](StatusOr<LabelResult> r) { inner(std::move(r)); }));
    if (i == 0) gate.WaitStarted(1);
  }
  EXPECT_EQ(pool->queued(), 4);
  auto space = std::make_shared<std::promise<void>>();
  std::future<void> has_space = space->get_future();
  EXPECT_TRUE(pool->WaitForSpace([space = std::move(space), token] { space->set_value(); }));  // the only owner

  // The destructor cancels the four queued jobs first, then waits for the one in the teacher.
  std::thread destroyer([&] { pool.reset(); });
  results.WaitFor(4);
  gate.Open(1);
  destroyer.join();
  EXPECT_EQ(results.ok(), 1);
  const std::vector<Status::Code> errors = results.errors();
  ASSERT_EQ(errors.size(), 4u);
  for (Status::Code code : errors) EXPECT_EQ(code, Status::Code::kAborted);
  for (const auto& [sequence, calls] : results.calls()) EXPECT_EQ(calls, 1) << "sequence " << sequence;
  EXPECT_THROW(has_space.get(), std::future_error);  // dropped, not called
  EXPECT_EQ(token.use_count(), 1);
}

TEST(LabelerPoolTest, ManySubmittersAllJobsCompleteExactlyOnce) {
  auto pool = MakePool(FakeFactory(), 3, 4);
  ASSERT_NE(pool, nullptr);
  EXPECT_EQ(pool->workers(), 3);
  const std::string jpeg = EncodeJpeg(cv::Mat(24, 32, CV_8UC3, cv::Scalar(50, 60, 70)));
  Results results;
  constexpr int kThreads = 4, kJobsEach = 60;
  std::atomic<int> refusals{0};
  std::vector<std::thread> submitters;
  for (int t = 0; t < kThreads; ++t) {
    submitters.emplace_back([&, t] {
      for (int i = 0; i < kJobsEach; ++i) {
        const uint64_t sequence = t * 1000 + i;
        // Flow control as a stream handler does it: hold the frame until there is room.
        while (!pool->TrySubmit(Job(jpeg, sequence, "cam" + std::to_string(t)), results.Callback(sequence))) {
          ++refusals;
          auto space = std::make_shared<std::promise<void>>();
          std::future<void> has_space = space->get_future();
          if (pool->WaitForSpace([space] { space->set_value(); })) has_space.get();
        }
      }
    });
  }
  for (std::thread& t : submitters) t.join();
  results.WaitFor(kThreads * kJobsEach);
  EXPECT_EQ(results.ok(), kThreads * kJobsEach);
  const auto calls = results.calls();
  EXPECT_EQ(calls.size(), static_cast<size_t>(kThreads * kJobsEach));
  for (const auto& [sequence, n] : calls) EXPECT_EQ(n, 1) << "sequence " << sequence;
  EXPECT_LE(pool->queued(), pool->capacity());
  RecordProperty("refusals", refusals.load());
}

TEST(LabelerPoolTest, CreateRejectsBadArgumentsAndReportsTeacherErrors) {
  EXPECT_EQ(LabelerPool::Create(FakeFactory(), 0, 4).status().code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(LabelerPool::Create(FakeFactory(), 1, 0).status().code(), Status::Code::kInvalidArgument);
  TeacherOptions options;
  options.kind = TeacherKind::kOnnx;
  options.model_path = "/nonexistent/model.onnx";
  auto pool = LabelerPool::Create(options, 2, 4);
  ASSERT_FALSE(pool.ok());
  EXPECT_NE(pool.status().message().find("labeler worker 0"), std::string::npos) << pool.status().ToString();
  EXPECT_NE(pool.status().message().find("/nonexistent/model.onnx"), std::string::npos) << pool.status().ToString();
}

TEST(LabelAgreementTest, EmptyIdenticalDisjointAndPartial) {
  const Detection a1{Box{10, 10, 50, 60}, 0.9f, 0};
  const Detection a2{Box{100, 20, 140, 90}, 0.8f, 0};
  const Detection far{Box{200, 200, 230, 240}, 0.9f, 0};
  EXPECT_EQ(LabelAgreement({}, {}), 1.0);
  EXPECT_EQ(LabelAgreement({a1}, {}), 0.0);
  EXPECT_EQ(LabelAgreement({}, {a1}), 0.0);
  EXPECT_NEAR(LabelAgreement({a1, a2}, {a2, a1}), 1.0, 1e-9);
  EXPECT_NEAR(LabelAgreement({a1}, {far}), 0.0, 1e-9);
  Detection other_class = a1;
  other_class.class_id = 1;
  EXPECT_NEAR(LabelAgreement({a1}, {other_class}), 0.0, 1e-9);
  // One of two objects found: strictly between, and symmetric.
  const double partial = LabelAgreement({a1, a2}, {a1});
  EXPECT_GT(partial, 0.4);
  EXPECT_LT(partial, 1.0);
  EXPECT_DOUBLE_EQ(partial, LabelAgreement({a1}, {a1, a2}));
}

}  // namespace
}  // namespace sd
