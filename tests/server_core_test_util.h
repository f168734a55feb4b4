// For tests that drive a ServerCore by hand: an oracle teacher for one synthetic scene, and
// frames of that scene submitted the way a stream does.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <opencv2/imgcodecs.hpp>

#include "server/server_core.h"
#include "tests/daemon_test_util.h"

namespace sd::testing {

// Labels from the scene's ground truth: the oracle of the daemon tests on one scene.
inline TeacherFactory Oracle(const SyntheticScene& scene) {
  return [scene]() -> StatusOr<std::unique_ptr<Teacher>> {
    return std::unique_ptr<Teacher>(std::make_unique<SyntheticOracleTeacher>(std::vector<SyntheticScene>{scene}, 20));
  };
}

// Sends frames first..first+n-1 of each device (the scene's frames of those numbers),
// alternating, and waits until all are stored: both devices become due within a frame of each
// other.
inline void SendFrames(ServerCore& core, const SyntheticScene& scene, const std::vector<std::string>& devices, int n,
                       int first = 1) {
  std::mutex mu;
  std::condition_variable cv;
  int stored = 0;
  for (int sequence = first; sequence < first + n; ++sequence)
    for (const std::string& device : devices) {
      std::vector<uchar> jpeg;
      cv::imencode(".jpg", scene.Render(sequence).bgr, jpeg);
      FrameRecord meta;
      meta.sequence = sequence;
      meta.frame_index = sequence;
      meta.image_score = 0.5f;
      auto done = [&](FrameOutcome outcome) {
        EXPECT_TRUE(outcome.status.ok()) << outcome.status.ToString();
        std::lock_guard<std::mutex> lock(mu);
        ++stored;
        cv.notify_all();
      };
      while (!core.TrySubmitFrame(device, meta, std::make_shared<const std::string>(jpeg.begin(), jpeg.end()), done))
        std::this_thread::sleep_for(std::chrono::milliseconds(5));  // the labelling queue is full
    }
  std::unique_lock<std::mutex> lock(mu);
  ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(30), [&] { return stored == n * int(devices.size()); }));
}

}  // namespace sd::testing
