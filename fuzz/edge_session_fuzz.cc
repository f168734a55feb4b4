// libFuzzer target: the server's handling of a sequence of EdgeMessages, through EdgeSession,
// the code the gRPC reactor calls for every message it reads. A real ServerCore (real store
// in a temp dir, real labeller pool) with a trivial teacher; no network.
//
// Input: byte 0 bit 0 set: a valid hello is sent first (so frames and requests are reached
// without the fuzzer having to guess the token); then records of [u16 little-endian length,
// that many bytes], each parsed as an EdgeMessage. Bytes that do not parse end the stream as
// the reactor would (OnEndOfStream(malformed)).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <condition_variable>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <unistd.h>

#include "fuzz/fuzz_util.h"
#include "server/edge_session.h"
#include "server/server_config.h"
#include "server/server_core.h"

namespace {

constexpr char kToken[] = "fuzz-token-1";

class NullTeacher : public sd::Teacher {
 public:
  sd::StatusOr<sd::Detections> Label(const cv::Mat& bgr) override {
    return sd::Detections{{{0, 0, static_cast<float>(bgr.cols), static_cast<float>(bgr.rows)}, 0.9f, 0}};
  }
  std::string Fingerprint() const override { return "fuzz-null"; }
};

class RecordingOutput : public sd::SessionOutput {
 public:
  void Send(streamdistill::v1::ServerMessage message) override {
    std::lock_guard<std::mutex> lock(mu);
    bytes += message.ByteSizeLong();
    if (counter) counter(static_cast<int64_t>(message.ByteSizeLong()));
  }
  void SendUpdate(std::shared_ptr<const sd::ModelUpdate> update, std::shared_ptr<const sd::ModelUpdate>) override {
    std::lock_guard<std::mutex> lock(mu);
    bytes += update->payload.size();
  }
  void Close(const sd::Status&) override {
    std::lock_guard<std::mutex> lock(mu);
    closed = true;
  }
  void SetByteCounter(std::function<void(int64_t)> c) override {
    std::lock_guard<std::mutex> lock(mu);
    counter = std::move(c);
  }
  bool WaitForBacklogBelow(size_t, std::function<void()>) override { return false; }

  std::mutex mu;
  size_t bytes = 0;
  bool closed = false;
  std::function<void(int64_t)> counter;
};

sd::ServerCore* Core() {
  static sd::ServerCore* core = [] {
    const std::string dir =
        (std::filesystem::temp_directory_path() / ("sd_edge_session_fuzz_" + std::to_string(getpid()))).string();
    std::filesystem::remove_all(dir);
    const std::string yaml = std::string("listen: \"127.0.0.1:0\"\nstorage_dir: \"") + dir +
                             "\"\nthreads: 1\n"
                             "devices:\n  cam1: {token: \"" + kToken + "\"}\n"
                             "labeler: {workers: 1, queue: 2}\n"
                             "limits: {full_model_burst: 2, full_model_refill_s: 0}\n"
                             "student:\n  input_width: 64\n  input_height: 64\n  classes: 1\n"
                             "  channels: [4, 4, 8, 8, 8]\n  block: separable\n"
                             "training: {background: false}\n";
    auto config = sd::ParseServerConfig(yaml, "edge_session_fuzz.yaml");
    if (!config.ok()) std::fprintf(stderr, "%s\n", config.status().ToString().c_str());
    SD_FUZZ_CHECK(config.ok());
    auto core = sd::ServerCore::Create(*config, [] {
      return sd::StatusOr<std::unique_ptr<sd::Teacher>>(std::unique_ptr<sd::Teacher>(new NullTeacher()));
    });
    if (!core.ok()) std::fprintf(stderr, "%s\n", core.status().ToString().c_str());
    SD_FUZZ_CHECK(core.ok());
    return core->release();
  }();
  // Lives for the whole fuzzing process, but is shut down before the process's static
  // destructors run: a labeller thread still decoding a JPEG when OpenCV's codec registry is
  // destroyed at exit crashed the target after its last input (CI, 2026-12-01).
  static const bool shutdown_registered = [] {
    std::atexit([] { delete core; });
    return true;
  }();
  (void)shutdown_registered;
  return core;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  sd::fuzz::QuietLogs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  sd::ServerCore* core = Core();
  auto output = std::make_shared<RecordingOutput>();
  std::mutex mu;
  std::condition_variable resumed_cv;
  bool resumed = false;
  auto session = sd::EdgeSession::Create(core, output, "fuzz", [&] {
    std::lock_guard<std::mutex> lock(mu);
    resumed = true;
    resumed_cv.notify_all();
  });

  auto feed = [&](const streamdistill::v1::EdgeMessage& m) {
    {
      std::lock_guard<std::mutex> lock(mu);
      resumed = false;
    }
    const auto next = session->OnMessage(m);
    if (next == sd::EdgeSession::Next::kPaused) {
      std::unique_lock<std::mutex> lock(mu);
      // The labeller makes room within milliseconds; a pause that never ends is a bug.
      SD_FUZZ_CHECK(resumed_cv.wait_for(lock, std::chrono::seconds(10), [&] { return resumed; }));
    }
    return next != sd::EdgeSession::Next::kClosed;
  };

  bool open = true;
  if (data[0] & 1) {
    streamdistill::v1::EdgeMessage hello;
    hello.mutable_hello()->set_device_id("cam1");
    hello.mutable_hello()->set_token(kToken);
    hello.mutable_hello()->set_architecture(core->config().student.Fingerprint());
    open = feed(hello);
  }
  size_t i = 1;
  while (open && i + 2 <= size) {
    const size_t length = data[i] | (size_t{data[i + 1]} << 8);
    i += 2;
    if (length > size - i) break;
    streamdistill::v1::EdgeMessage m;
    if (!m.ParseFromArray(data + i, static_cast<int>(length))) {
      session->OnEndOfStream(/*malformed=*/true);
      open = false;
      break;
    }
    i += length;
    open = feed(m);
  }
  if (open) session->OnEndOfStream(/*malformed=*/false);
  session->Detach();
  return 0;
}
