// Disk faults, injected with FaultEnv (tests/fault_env.h) into otherwise real parts: real
// files, real SQLite, a real server and a real edge uplink over gRPC on loopback. A failed
// write, fsync or rename, or a full disk, must never leave half a file or lose a frame that
// was acked; the server refuses to ack while its disk fails (code 14) and the edge keeps those
// frames and delivers them once the disk works again.
#include <gtest/gtest.h>

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "common/base/env.h"
#include "tests/fault_env.h"
#include "common/teacher/label_cache.h"
#include "common/link/update_codec.h"
#include "edge/edge_agent.h"
#include "edge/spool.h"
#include "edge/uplink.h"
#include "server/frame_store.h"
#include "server/server.h"
#include "streamdistill.grpc.pb.h"
#include "tests/daemon_test_util.h"
#include "tests/scoped_temp_dir.h"

namespace sd {
namespace {

namespace fs = std::filesystem;
using streamdistill::v1::EdgeMessage;
using streamdistill::v1::ServerMessage;
using Op = FaultEnv::Op;

// One injected fault and what a test calls it.
struct Fault {
  std::string name;
  Op op;
  int err;
};
const std::vector<Fault>& AllFaults() {
  static const std::vector<Fault> faults = {
      {"write EIO", Op::kWrite, EIO},
      {"write ENOSPC", Op::kWrite, ENOSPC},
      {"fsync EIO", Op::kSync, EIO},
      {"rename EIO", Op::kRename, EIO},
  };
  return faults;
}

// Temp files anywhere under `dir`: a write that failed must not leave one behind.
std::vector<std::string> TempFiles(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (IsTempFileName(e.path().filename().string())) out.push_back(e.path().string());
  }
  return out;
}

template <typename Pred>
bool WaitFor(Pred pred, double seconds) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < until) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return pred();
}

// ---- The one durable write ------------------------------------------------------------------

TEST(WriteFileDurablyTest, EveryFaultLeavesTheOldContentAndNoTempFile) {
  for (const Fault& fault : AllFaults()) {
    SCOPED_TRACE(fault.name);
    testing::ScopedTempDir dir("sd_env_test");
    const std::string path = dir.File("state");
    FaultEnv env;
    ASSERT_TRUE(WriteFileDurably(&env, path, "old content").ok());
    env.FailOp(fault.op, fault.err, "state");
    const Status s = WriteFileDurably(&env, path, {"new ", std::string(100000, 'x')});
    ASSERT_FALSE(s.ok());
    EXPECT_NE(s.message().find(path), std::string::npos) << s.ToString();
    EXPECT_EQ(*Env::Default()->ReadFile(path), "old content");
    EXPECT_TRUE(TempFiles(dir.path()).empty());
    env.Clear();
    ASSERT_TRUE(WriteFileDurably(&env, path, "new content").ok());
    EXPECT_EQ(*Env::Default()->ReadFile(path), "new content");
  }
}

TEST(WriteFileDurablyTest, FullDiskSaysNoSpaceLeftWithThePath) {
  testing::ScopedTempDir dir("sd_env_test");
  FaultEnv env;
  env.SetDiskFull(true);
  const std::string path = dir.File("file");
  const Status s = WriteFileDurably(&env, path, "bytes");
  EXPECT_EQ(s.code(), Status::Code::kResourceExhausted) << s.ToString();
  EXPECT_NE(s.message().find("No space left"), std::string::npos) << s.ToString();
  EXPECT_NE(s.message().find(path), std::string::npos) << s.ToString();
  EXPECT_FALSE(Env::Default()->FileExists(path));
  EXPECT_TRUE(TempFiles(dir.path()).empty());
}

// ---- Label cache ----------------------------------------------------------------------------

TEST(LabelCacheFaultTest, AFailedSaveKeepsThePreviousEntryReadable) {
  for (const Fault& fault : AllFaults()) {
    SCOPED_TRACE(fault.name);
    testing::ScopedTempDir dir("sd_labels_fault");
    const std::string path = dir.File("clip.labels");
    FaultEnv env;
    const std::vector<Detections> old_labels = {{{{1, 2, 3, 4}, 0.5f, 0}}, {}};
    ASSERT_TRUE(SaveLabels(path, "key", old_labels, &env).ok());
    env.FailOp(fault.op, fault.err, "clip.labels");
    const std::vector<Detections> new_labels(500, Detections{{{5, 6, 7, 8}, 0.25f, 0}});
    EXPECT_FALSE(SaveLabels(path, "key", new_labels, &env).ok());
    auto loaded = LoadLabels(path, "key");
    ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
    EXPECT_EQ(loaded->size(), old_labels.size());
    EXPECT_TRUE(TempFiles(dir.path()).empty());
  }
}

// ---- Spool ------------------------------------------------------------------------------------

std::string Payload(uint64_t seq) { return std::string(1000 + seq, static_cast<char>('a' + seq % 26)); }

TEST(SpoolFaultTest, AFailedPushLeavesNoFileAndLosesNoPendingFrame) {
  for (const Fault& fault : AllFaults()) {
    SCOPED_TRACE(fault.name);
    testing::ScopedTempDir dir("sd_spool_fault");
    FaultEnv env;
    SpoolOptions options;
    options.dir = dir.File("spool");
    options.env = &env;
    {
      auto spool = Spool::Open(options);
      ASSERT_TRUE(spool.ok()) << spool.status().ToString();
      for (uint64_t seq = 1; seq <= 3; ++seq) ASSERT_TRUE((*spool)->Push(seq, Payload(seq)).ok());

      env.FailOp(fault.op, fault.err, ".frame");
      const Status failed = (*spool)->Push(4, Payload(4));
      ASSERT_FALSE(failed.ok());
      EXPECT_EQ((*spool)->Pending(), (std::vector<uint64_t>{1, 2, 3}));
      EXPECT_EQ((*spool)->push_failures(), 1);
      EXPECT_FALSE(Env::Default()->FileExists(options.dir + "/00000000000000000004.frame"));
      EXPECT_TRUE(TempFiles(options.dir).empty());

      env.Clear();  // the disk works again: the next push simply succeeds
      ASSERT_TRUE((*spool)->Push(5, Payload(5)).ok());
    }
    // After a restart every frame that was pushed is there and intact; the failed one is not.
    options.env = Env::Default();
    auto reopened = Spool::Open(options);
    ASSERT_TRUE(reopened.ok()) << reopened.status().ToString();
    EXPECT_EQ((*reopened)->Pending(), (std::vector<uint64_t>{1, 2, 3, 5}));
    for (uint64_t seq : {1, 2, 3, 5}) {
      auto bytes = (*reopened)->Read(seq);
      ASSERT_TRUE(bytes.ok()) << bytes.status().ToString();
      EXPECT_EQ(*bytes, Payload(seq));
    }
  }
}

// ---- FrameStore -----------------------------------------------------------------------------

FrameRecord MakeFrame(uint64_t sequence) {
  FrameRecord f;
  f.device_id = "cam";
  f.sequence = sequence;
  f.frame_index = static_cast<int64_t>(sequence) * 10;
  f.source_width = 64;
  f.source_height = 48;
  f.labels.push_back({{1, 2, 30, 40}, 0.9f, 0});
  f.jpeg = std::string(5000 + sequence, static_cast<char>(sequence));
  return f;
}

TEST(FrameStoreFaultTest, AFailedPutStoresNothingAndTheRetrySucceeds) {
  for (const Fault& fault : AllFaults()) {
    SCOPED_TRACE(fault.name);
    testing::ScopedTempDir dir("sd_store_fault");
    FaultEnv env;
    const std::string store_dir = dir.File("store");
    {
      auto store = FrameStore::Open(store_dir, &env);
      ASSERT_TRUE(store.ok()) << store.status().ToString();
      ASSERT_TRUE((*store)->Put(MakeFrame(1)).ok());

      env.FailOp(fault.op, fault.err, ".jpg");
      auto put = (*store)->Put(MakeFrame(2));
      ASSERT_FALSE(put.ok());
      EXPECT_NE(put.status().code(), Status::Code::kInvalidArgument);
      EXPECT_EQ((*store)->LastSequence("cam"), 1u);
      EXPECT_FALSE(Env::Default()->FileExists(store_dir + "/frames/cam/000000000002.jpg"));
      EXPECT_TRUE(TempFiles(store_dir).empty());

      env.Clear();
      auto again = (*store)->Put(MakeFrame(2));
      ASSERT_TRUE(again.ok()) << again.status().ToString();
      EXPECT_TRUE(*again);  // stored now, not a duplicate of a half-done first try
    }
    auto reopened = FrameStore::Open(store_dir);
    ASSERT_TRUE(reopened.ok()) << reopened.status().ToString();
    auto frames = (*reopened)->Since("cam", 0, 10);
    ASSERT_TRUE(frames.ok());
    ASSERT_EQ(frames->size(), 2u);
    for (const FrameRecord& f : *frames) {
      auto image = (*reopened)->LoadImage(f);
      ASSERT_TRUE(image.ok()) << image.status().ToString();
      EXPECT_EQ(*image, MakeFrame(f.sequence).jpeg);
    }
  }
}

TEST(FrameStoreFaultTest, AFailedCheckpointWriteStoresNoVersion) {
  for (const Fault& fault : AllFaults()) {
    SCOPED_TRACE(fault.name);
    testing::ScopedTempDir dir("sd_store_fault");
    FaultEnv env;
    auto store = FrameStore::Open(dir.File("store"), &env);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    VersionRecord v;
    v.device_id = "cam";
    v.version = 1;
    v.encoding = "full_fp32";
    const std::string checkpoint(20000, 'w');
    env.FailOp(fault.op, fault.err, ".sdw");
    ASSERT_FALSE((*store)->PutVersion(v, checkpoint).ok());
    EXPECT_EQ((*store)->LatestVersion("cam").status().code(), Status::Code::kNotFound);
    EXPECT_FALSE(Env::Default()->FileExists(dir.File("store") + "/models/cam/v1.sdw"));
    EXPECT_TRUE(TempFiles(dir.File("store")).empty());
    env.Clear();
    ASSERT_TRUE((*store)->PutVersion(v, checkpoint).ok());
    auto latest = (*store)->LatestVersion("cam");
    ASSERT_TRUE(latest.ok());
    EXPECT_EQ(*(*store)->LoadCheckpoint(*latest), checkpoint);
  }
}

// ---- Server and edge over real gRPC ---------------------------------------------------------

constexpr char kDevice[] = "cam1";
constexpr char kToken[] = "secret-token-1";

std::string RealJpeg(int shade) {
  cv::Mat image(192, 256, CV_8UC3, cv::Scalar(40, 90, shade));
  cv::rectangle(image, cv::Rect(60, 40, 50, 110), cv::Scalar(220, 220, 220), cv::FILLED);
  std::vector<uchar> bytes;
  EXPECT_TRUE(cv::imencode(".jpg", image, bytes));
  return std::string(bytes.begin(), bytes.end());
}

streamdistill::v1::SampledFrame MakeSampled(uint64_t sequence) {
  streamdistill::v1::SampledFrame f;
  f.set_sequence(sequence);
  f.set_frame_index(static_cast<int64_t>(sequence) * 10);
  f.set_capture_time_s(static_cast<double>(sequence));
  f.set_jpeg(RealJpeg(static_cast<int>(10 * sequence)));
  f.set_source_width(256);
  f.set_source_height(192);
  f.set_image_score(0.5f);
  return f;
}

// A real server whose store's files go through a FaultEnv.
class ServerDiskFaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = sd::testing::TempDir("fault_injection_" +
                                std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
    auto config = ParseServerConfig(std::string("listen: \"127.0.0.1:0\"\nhttp: {port: 0}\nstorage_dir: \"") + dir_ +
                                        "/store\"\nthreads: 1\ndevices:\n  cam1: {token: \"" + kToken +
                                        "\"}\nteacher:\n  kind: onnx\n  model: \"" SD_SOURCE_DIR
                                        "/tests/data/tiny_yolo.onnx\"\nlabeler: {workers: 1, queue: 4}\n"
                                        "student:\n  input_width: 128\n  input_height: 96\n  classes: 1\n"
                                        "  channels: [8, 8, 16, 16, 32]\n  block: separable\n"
                                        "training: {background: false}\n",
                                    "fault_injection_test.yaml");
    ASSERT_TRUE(config.ok()) << config.status().ToString();
    config_ = *config;
    config_.env = &env_;
    auto server = Server::Start(config_);
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(*server);
  }

  FrameStore& store() { return server_->core().store(); }
  std::vector<std::string> StoredImages() {
    std::vector<std::string> out;
    const fs::path frames = fs::path(dir_) / "store" / "frames" / kDevice;
    if (!fs::exists(frames)) return out;
    for (const auto& e : fs::directory_iterator(frames)) out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
  }

  FaultEnv env_;
  std::string dir_;
  ServerConfig config_;
  std::unique_ptr<Server> server_;
};

// One raw EdgeLink stream (no edge code), every call bounded by a deadline.
struct RawStream {
  explicit RawStream(int port)
      : stub(streamdistill::v1::EdgeLink::NewStub(
            grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials()))) {
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    rw = stub->Connect(&context);
  }
  // Sends the frame and returns its ack (skipping anything else).
  ::testing::AssertionResult Send(uint64_t sequence, streamdistill::v1::FrameAck* ack) {
    EdgeMessage m;
    *m.mutable_frame() = MakeSampled(sequence);
    if (!rw->Write(m)) return ::testing::AssertionFailure() << "write of frame " << sequence << " failed";
    ServerMessage in;
    while (rw->Read(&in)) {
      if (in.kind_case() != ServerMessage::kAck) continue;
      *ack = in.ack();
      if (ack->sequence() != sequence) return ::testing::AssertionFailure() << "ack for " << ack->sequence();
      return ::testing::AssertionSuccess();
    }
    return ::testing::AssertionFailure() << "stream ended before the ack of frame " << sequence;
  }

  std::unique_ptr<streamdistill::v1::EdgeLink::Stub> stub;
  grpc::ClientContext context;
  std::unique_ptr<grpc::ClientReaderWriter<EdgeMessage, ServerMessage>> rw;
};

// Sends the hello and expects the welcome.
::testing::AssertionResult SayHello(RawStream& s, const std::string& architecture) {
  EdgeMessage hello;
  hello.mutable_hello()->set_device_id(kDevice);
  hello.mutable_hello()->set_token(kToken);
  hello.mutable_hello()->set_architecture(architecture);
  if (!s.rw->Write(hello)) return ::testing::AssertionFailure() << "hello not sent";
  ServerMessage welcome;
  if (!s.rw->Read(&welcome) || welcome.kind_case() != ServerMessage::kWelcome)
    return ::testing::AssertionFailure() << "no welcome";
  return ::testing::AssertionSuccess();
}

TEST_F(ServerDiskFaultTest, FullDiskAcksUnavailableStoresNothingAndResendsAreStoredOnceSpaceReturns) {
  RawStream s(server_->port());
  ASSERT_TRUE(SayHello(s, config_.student.Fingerprint()));

  env_.SetDiskFull(true, "/frames/");
  for (uint64_t seq = 1; seq <= 3; ++seq) {
    streamdistill::v1::FrameAck ack;
    ASSERT_TRUE(s.Send(seq, &ack));
    EXPECT_EQ(ack.code(), 14) << ack.message();  // UNAVAILABLE: retry later
    EXPECT_NE(ack.message().find("storage unavailable"), std::string::npos) << ack.message();
    EXPECT_NE(ack.message().find("No space left"), std::string::npos) << ack.message();
    EXPECT_FALSE(ack.duplicate());
  }
  EXPECT_EQ(store().LastSequence(kDevice), 0u);
  EXPECT_TRUE(StoredImages().empty());
  EXPECT_EQ(server_->core().Counters(kDevice).frames_stored, 0);

  env_.SetDiskFull(false);  // space returns: the edge's re-sends are stored, once each
  for (uint64_t seq = 1; seq <= 3; ++seq) {
    streamdistill::v1::FrameAck ack;
    ASSERT_TRUE(s.Send(seq, &ack));
    EXPECT_EQ(ack.code(), 0) << ack.message();
    EXPECT_FALSE(ack.duplicate());
  }
  EXPECT_EQ(store().LastSequence(kDevice), 3u);
  EXPECT_EQ(StoredImages(), (std::vector<std::string>{"000000000001.jpg", "000000000002.jpg", "000000000003.jpg"}));
  auto frames = store().Since(kDevice, 0, 10);
  ASSERT_TRUE(frames.ok());
  for (const FrameRecord& f : *frames) EXPECT_EQ(*store().LoadImage(f), MakeSampled(f.sequence).jpeg());
  s.rw->WritesDone();
}

TEST_F(ServerDiskFaultTest, FailingFsyncIsUnavailableToo) {
  RawStream s(server_->port());
  ASSERT_TRUE(SayHello(s, config_.student.Fingerprint()));
  env_.FailOp(Op::kSync, EIO, ".jpg", 0, 1);  // the next fsync of an image fails, once
  streamdistill::v1::FrameAck ack;
  ASSERT_TRUE(s.Send(1, &ack));
  EXPECT_EQ(ack.code(), 14) << ack.message();
  EXPECT_NE(ack.message().find("storage unavailable"), std::string::npos) << ack.message();
  EXPECT_NE(ack.message().find("fsync"), std::string::npos) << ack.message();
  ASSERT_TRUE(s.Send(1, &ack));
  EXPECT_EQ(ack.code(), 0) << ack.message();
  EXPECT_EQ(store().LastSequence(kDevice), 1u);
  s.rw->WritesDone();
}

class NoUpdates : public UpdateSink {
 public:
  Status ApplyUpdate(const ModelUpdate&) override { return Status::FailedPrecondition("not in this test"); }
  uint64_t ServingVersion() const override { return 0; }
  std::string ServingChecksum() const override { return ""; }
};

TEST_F(ServerDiskFaultTest, EdgeKeepsItsFramesWhileTheServerDiskIsFullAndDrainsThemAfter) {
  testing::ScopedTempDir edge_dir("sd_uplink_fault");
  auto spool = Spool::Open({edge_dir.File("spool")});
  ASSERT_TRUE(spool.ok()) << spool.status().ToString();
  constexpr uint64_t kFrames = 5;
  for (uint64_t seq = 1; seq <= kFrames; ++seq) {
    ASSERT_TRUE((*spool)->Push(seq, MakeSampled(seq).SerializeAsString()).ok());
  }
  env_.SetDiskFull(true, "/frames/");

  UplinkOptions options;
  options.server = "127.0.0.1:" + std::to_string(server_->port());
  options.device_id = kDevice;
  options.token = kToken;
  options.backoff_initial_s = 0.2;
  options.backoff_max_s = 1.0;
  NoUpdates sink;
  Uplink uplink(options, config_.student.Fingerprint(), spool->get(), &sink);
  uplink.Start();

  // Every frame is refused with a retryable code, and every one stays in the spool.
  ASSERT_TRUE(WaitFor([&] { return uplink.stats().frames_retried >= static_cast<int64_t>(kFrames); }, 20));
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t sent_before = uplink.stats().frames_sent;
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  const double window_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const UplinkStats during = uplink.stats();
  EXPECT_EQ((*spool)->pending_count(), static_cast<int64_t>(kFrames));
  EXPECT_EQ(during.frames_acked, 0);
  EXPECT_EQ(during.frames_rejected, 0);
  EXPECT_EQ(store().LastSequence(kDevice), 0u);
  // Re-sent after a back-off, not in a tight loop: at most the frames once per 0.1 s (the
  // shortest jittered back-off), in practice far fewer.
  EXPECT_LE(during.frames_sent - sent_before, static_cast<int64_t>(kFrames * (window_s / 0.1 + 1)));
  EXPECT_GT(during.frames_sent - sent_before, 0);  // but re-sent all the same

  env_.SetDiskFull(false);
  ASSERT_TRUE(WaitFor([&] { return uplink.Drained(); }, 20)) << (*spool)->pending_count() << " frames still pending";
  uplink.Stop();
  EXPECT_EQ(uplink.stats().frames_acked, static_cast<int64_t>(kFrames));
  EXPECT_EQ(store().LastSequence(kDevice), kFrames);
  EXPECT_EQ(StoredImages().size(), kFrames);
  auto frames = store().Since(kDevice, 0, 100);
  ASSERT_TRUE(frames.ok());
  for (const FrameRecord& f : *frames) EXPECT_EQ(*store().LoadImage(f), MakeSampled(f.sequence).jpeg());
}

// ---- Edge agent -------------------------------------------------------------------------------

StatusOr<EdgeConfig> EdgeConfigFor(const std::string& state_dir, FaultEnv* env, const std::string& extra = "") {
  // Port 1: no server; the uplink keeps retrying, which does not matter here.
  auto config = ParseEdgeConfig(
      sd::testing::EdgeYaml("cam1", kToken, 1, state_dir, sd::testing::SyntheticUri(1), extra), "edge.yaml");
  if (config.ok()) config->env = env;
  return config;
}

int64_t Lines(const std::string& path) {
  std::ifstream in(path);
  int64_t n = 0;
  for (std::string line; std::getline(in, line);) ++n;
  return n;
}

TEST(EdgeFaultTest, DetectionGoesOnWhileTheSpoolCannotGrow) {
  const std::string dir = sd::testing::TempDir("fault_injection_edge_spool");
  FaultEnv env;
  auto config = EdgeConfigFor(dir, &env);
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  auto agent = EdgeAgent::Create(*config);
  ASSERT_TRUE(agent.ok()) << agent.status().ToString();
  env.SetDiskFull(true, "/spool/");
  std::thread runner([&] { (*agent)->Run().ok(); });

  const bool detected = WaitFor([&] { return (*agent)->stats().spool_failures >= 10; }, 60);
  const EdgeStats during = (*agent)->stats();
  env.SetDiskFull(false);
  const bool spooled_again = WaitFor([&] { return (*agent)->stats().queried >= 3; }, 60);
  (*agent)->Stop();
  runner.join();
  ASSERT_TRUE(detected) << "spool failures: " << (*agent)->stats().spool_failures;
  EXPECT_EQ(during.queried, 0);                        // nothing could be spooled
  EXPECT_GE(during.detected, during.spool_failures);  // but every frame was still detected
  EXPECT_TRUE(spooled_again) << "the spool did not take frames again once the disk had space";
  const EdgeStats after = (*agent)->stats();
  EXPECT_EQ(Lines(dir + "/detections.jsonl"), after.detected);  // and its detections emitted
  EXPECT_TRUE(TempFiles(dir).empty());
}

class EdgeModelFileTest : public ::testing::Test {
 protected:
  ModelUpdate Full(uint64_t version, uint64_t seed, const StudentArchitecture& arch) {
    auto other = StudentModel::Create(arch, seed);
    EXPECT_TRUE(other.ok());
    const std::vector<float> target = (*other)->FlatWeights();
    ModelUpdate u;
    u.new_version = version;
    u.encoding = UpdateEncoding::kFullFp32;
    u.payload = *EncodeUpdate(UpdateEncoding::kFullFp32, {}, target, {});
    u.weights_checksum = WeightsChecksum(*DecodeUpdate(UpdateEncoding::kFullFp32, {}, u.payload, target.size()));
    return u;
  }
};

TEST_F(EdgeModelFileTest, DeployedModelIsOneFileAndAFailedSaveKeepsThePreviousOne) {
  const std::string dir = sd::testing::TempDir("fault_injection_edge_model");
  FaultEnv env;
  auto config = EdgeConfigFor(dir, &env);
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  const std::string deployed_path = dir + "/deployed.sdw";
  std::string v1_checksum;
  {
    auto agent = EdgeAgent::Create(*config);
    ASSERT_TRUE(agent.ok()) << agent.status().ToString();
    ASSERT_TRUE((*agent)->ApplyUpdate(Full(1, 11, config->student)).ok());
    v1_checksum = (*agent)->ServingChecksum();
    auto saved = DecodeDeployedWeights(*Env::Default()->ReadFile(deployed_path));
    ASSERT_TRUE(saved.ok()) << saved.status().ToString();
    EXPECT_EQ(saved->version, 1u);
    EXPECT_EQ(saved->weights_checksum, v1_checksum);
    EXPECT_FALSE(fs::exists(dir + "/deployed.version"));  // one file, nothing beside it

    for (const Fault& fault : AllFaults()) {
      SCOPED_TRACE(fault.name);
      env.FailOp(fault.op, fault.err, "deployed.sdw");
      // The update itself is applied (the model serves); only its saving failed.
      ASSERT_TRUE((*agent)->ApplyUpdate(Full((*agent)->ServingVersion() + 1, 20, config->student)).ok());
      env.Clear();
      auto kept = DecodeDeployedWeights(*Env::Default()->ReadFile(deployed_path));
      ASSERT_TRUE(kept.ok()) << kept.status().ToString();
      EXPECT_EQ(kept->version, 1u);
      EXPECT_EQ(kept->weights_checksum, v1_checksum);
      EXPECT_TRUE(TempFiles(dir).empty());
    }
  }
  // A restarted edge resumes the version that was saved whole.
  auto restarted = EdgeAgent::Create(*config);
  ASSERT_TRUE(restarted.ok()) << restarted.status().ToString();
  EXPECT_EQ((*restarted)->ServingVersion(), 1u);
  EXPECT_EQ((*restarted)->ServingChecksum(), v1_checksum);
}

TEST_F(EdgeModelFileTest, EarlierReleasesTwoFileLayoutIsStillRead) {
  const std::string dir = sd::testing::TempDir("fault_injection_edge_legacy");
  auto config = EdgeConfigFor(dir, nullptr);
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  config->env = Env::Default();
  auto model = StudentModel::Create(config->student, 42);
  ASSERT_TRUE(model.ok());
  {
    std::ofstream(dir + "/deployed.sdw", std::ios::binary) << (*model)->SerializeWeights();
    std::ofstream(dir + "/deployed.version") << "7\n";
  }
  auto agent = EdgeAgent::Create(*config);
  ASSERT_TRUE(agent.ok()) << agent.status().ToString();
  EXPECT_EQ((*agent)->ServingVersion(), 7u);
  EXPECT_EQ((*agent)->ServingChecksum(), WeightsChecksum((*model)->FlatWeights()));
}

}  // namespace
}  // namespace sd
