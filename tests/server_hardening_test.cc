// Hostile clients against a real in-process server over real gRPC on loopback (issue 10):
// inputs that once crashed, starved or locked out the server. Each test failed on the server
// before its fix; here every one must leave the server serving.
#include <gtest/gtest.h>

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cmath>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <limits>
#include <mutex>
#include <sstream>
#include <thread>

#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include "common/student/student.h"
#include "server/server.h"
#include "server/server_config.h"
#include "tests/daemon_test_util.h"
#include "tests/protocol_client.h"
#include "tests/sanitizer_build.h"

namespace {

namespace fs = std::filesystem;
using sd::testing::ExpectNoStream;
using sd::testing::ExpectWelcome;
using sd::testing::FrameMessage;
using sd::testing::HelloMessage;
using sd::testing::Plaintext;
using sd::testing::RealJpeg;
using sd::testing::SendFrame;
using sd::testing::Stream;
using streamdistill::v1::EdgeMessage;
using streamdistill::v1::FrameAck;
using streamdistill::v1::ServerMessage;

constexpr char kToken[] = "secret-token-1";

fs::path UniqueDir(const std::string& what) { return sd::testing::TempDir("server_hardening_" + what); }

// Two devices, HOG teacher (the one that crashed on small frames), tiny student, no
// background training; `extra` is appended (more top-level keys).
sd::ServerConfig MakeConfig(const fs::path& dir, const std::string& extra = "", const std::string& labeler = "") {
  std::ostringstream y;
  y << "listen: \"127.0.0.1:0\"\n"
    << "http: {port: 0}\n"
    << "storage_dir: \"" << (dir / "store").string() << "\"\n"
    << "max_message_bytes: 1048576\n"
    << "update_chunk_bytes: 16384\n"
    << "threads: 1\n"
    << "devices:\n  cam1: {token: \"" << kToken << "\"}\n  cam2: {token: \"" << kToken << "-2\"}\n"
    << "teacher: {kind: hog}\n"
    << (labeler.empty() ? "labeler: {workers: 1, queue: 4}\n" : labeler)
    << "student:\n  input_width: 128\n  input_height: 96\n  classes: 1\n"
    << "  channels: [8, 8, 16, 16, 32]\n  block: separable\n"
    << "training: {background: false}\n"
    << extra;
  auto config = sd::ParseServerConfig(y.str(), "server_hardening_test.yaml");
  EXPECT_TRUE(config.ok()) << config.status().ToString();
  return config.ok() ? *config : sd::ServerConfig();
}

std::unique_ptr<sd::Server> StartServer(const sd::ServerConfig& config, sd::TeacherFactory teachers = {}) {
  auto server = sd::Server::Start(config, std::move(teachers));
  EXPECT_TRUE(server.ok()) << server.status().ToString();
  return server.ok() ? std::move(*server) : nullptr;
}

std::string Arch(sd::Server& server) { return server.core().config().student.Fingerprint(); }

std::string Jpeg(int width, int height) {
  cv::Mat image(height, width, CV_8UC3, cv::Scalar(60, 120, 180));
  cv::rectangle(image, cv::Rect(width / 4, height / 4, std::max(1, width / 3), std::max(1, height / 2)),
                cv::Scalar(230, 230, 230), cv::FILLED);
  std::vector<uchar> bytes;
  EXPECT_TRUE(cv::imencode(".jpg", image, bytes));
  return std::string(bytes.begin(), bytes.end());
}

// A real JPEG whose frame header is rewritten to claim `width` x `height`: a few hundred
// bytes that would decode to gigabytes.
std::string BombJpeg(int width, int height) {
  std::string jpeg = Jpeg(16, 16);
  for (size_t i = 2; i + 9 < jpeg.size(); ++i) {
    if (static_cast<uint8_t>(jpeg[i]) == 0xFF && static_cast<uint8_t>(jpeg[i + 1]) == 0xC0) {
      jpeg[i + 5] = static_cast<char>(height >> 8);
      jpeg[i + 6] = static_cast<char>(height & 0xFF);
      jpeg[i + 7] = static_cast<char>(width >> 8);
      jpeg[i + 8] = static_cast<char>(width & 0xFF);
      return jpeg;
    }
  }
  ADD_FAILURE() << "no SOF0 in the encoded JPEG";
  return jpeg;
}

int64_t ResidentMb() {
  std::ifstream statm("/proc/self/statm");
  int64_t pages = 0, resident = 0;
  statm >> pages >> resident;
  return resident * sysconf(_SC_PAGESIZE) / (1 << 20);
}

// The bound on the growth of the server's resident memory under an attack.
// AddressSanitizer keeps freed memory in quarantine (256 MB by default), so its builds get
// that much more room; the product build is held to 150 MB.
constexpr int64_t kFloodRssMb = sd::kAddressSanitizerBuild ? 150 + 256 : 150;

// A connected, welcomed stream of one device.
std::unique_ptr<Stream> Connect(sd::Server& server, const std::string& device = "cam1",
                                const std::string& token = kToken, std::chrono::seconds deadline = std::chrono::seconds(20)) {
  auto s = std::make_unique<Stream>(Plaintext(server.port()), deadline);
  EXPECT_TRUE(s->Send(HelloMessage(Arch(server), device, token)));
  EXPECT_TRUE(ExpectWelcome(*s.get()));
  return s;
}

TEST(ServerHardeningTest, SmallValidFramesAreLabelledWithoutCrashing) {
  const fs::path dir = UniqueDir("small");
  auto server = StartServer(MakeConfig(dir));
  ASSERT_NE(server, nullptr);
  auto s = Connect(*server);
  // Every size that killed the server inside HOGDescriptor::detectMultiScale, and an edge
  // with upload.max_width: 150 (150x112).
  const std::vector<std::pair<int, int>> sizes = {{1, 1},   {32, 32},  {64, 48},  {320, 64},
                                                  {640, 100}, {30, 300}, {150, 112}, {63, 127}};
  uint64_t sequence = 0;
  for (auto [w, h] : sizes) {
    FrameAck ack;
    ASSERT_TRUE(SendFrame(*s, ++sequence, Jpeg(w, h), &ack)) << w << "x" << h;
    EXPECT_EQ(ack.code(), 0) << w << "x" << h << ": " << ack.message();
  }
  EXPECT_TRUE(s->Close().ok());
  EXPECT_EQ(server->core().store().LastSequence("cam1"), sequence);
}

TEST(ServerHardeningTest, FramesShrunkBelowTheTeachersWindowAreLabelled) {
  const fs::path dir = UniqueDir("shrunk");
  auto server = StartServer(
      MakeConfig(dir, "", "labeler: {workers: 1, queue: 4, stored_image_max_width: 128}\n"));
  ASSERT_NE(server, nullptr);
  auto s = Connect(*server);
  FrameAck ack;
  ASSERT_TRUE(SendFrame(*s, 1, Jpeg(768, 576), &ack));  // shrunk to 128x96 before labelling
  EXPECT_EQ(ack.code(), 0) << ack.message();
  EXPECT_TRUE(s->Close().ok());
}

TEST(ServerHardeningTest, DecompressionBombIsRefusedFromItsHeaderWhileOthersGetAcks) {
  const fs::path dir = UniqueDir("bomb");
  auto server = StartServer(MakeConfig(dir));
  ASSERT_NE(server, nullptr);
  const int64_t rss_before = ResidentMb();
  auto attacker = Connect(*server, "cam1");
  auto honest = Connect(*server, "cam2", std::string(kToken) + "-2");
  uint64_t sequence = 0;
  for (auto [w, h] : std::vector<std::pair<int, int>>{{20000, 20000}, {30000, 30000}, {65535, 65535}, {65535, 1}}) {
    const std::string bomb = BombJpeg(w, h);
    ASSERT_LT(bomb.size(), 1000u);
    FrameAck ack;
    const auto start = std::chrono::steady_clock::now();
    ASSERT_TRUE(SendFrame(*attacker, ++sequence, bomb, &ack));
    EXPECT_EQ(ack.code(), 3) << ack.message();  // INVALID_ARGUMENT
    EXPECT_NE(ack.message().find("exceeds"), std::string::npos) << ack.message();
    // The other camera is served at once meanwhile.
    ASSERT_TRUE(SendFrame(*honest, sequence, RealJpeg(), &ack));
    EXPECT_EQ(ack.code(), 0) << ack.message();
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
  }
  EXPECT_LT(ResidentMb() - rss_before, kFloodRssMb) << "resident memory grew";
  EXPECT_EQ(server->core().store().LastSequence("cam1"), 0u);
  EXPECT_TRUE(attacker->Close().ok());
  EXPECT_TRUE(honest->Close().ok());
}

TEST(ServerHardeningTest, SequencesOutsideTheValidRangeCannotLockTheDeviceOut) {
  const fs::path dir = UniqueDir("sequence");
  auto server = StartServer(MakeConfig(dir));
  ASSERT_NE(server, nullptr);
  auto s = Connect(*server);
  const std::string jpeg = RealJpeg();
  FrameAck ack;
  for (uint64_t bad : {uint64_t{0}, (uint64_t{1} << 63) - 1, uint64_t{1} << 63, ~uint64_t{0}, uint64_t{1} << 53,
                       (uint64_t{1} << 32) + 1}) {
    ASSERT_TRUE(SendFrame(*s, bad, jpeg, &ack)) << bad;
    EXPECT_EQ(ack.code(), 3) << bad << ": " << ack.message();
  }
  ASSERT_TRUE(SendFrame(*s, 5, jpeg, &ack));
  EXPECT_EQ(ack.code(), 0) << ack.message();
  EXPECT_TRUE(s->Close().ok());
  // A new stream is told 5, so the real edge goes on from 6.
  Stream again(Plaintext(server->port()));
  ASSERT_TRUE(again.Send(HelloMessage(Arch(*server), "cam1", kToken)));
  streamdistill::v1::Welcome welcome;
  ASSERT_TRUE(ExpectWelcome(again, &welcome));
  EXPECT_EQ(welcome.last_stored_sequence(), 5u);
  ASSERT_TRUE(SendFrame(again, 6, jpeg, &ack));
  EXPECT_EQ(ack.code(), 0) << ack.message();
  EXPECT_TRUE(again.Close().ok());
}

TEST(ServerHardeningTest, NonFiniteAndNegativeFieldsAreRefused) {
  const fs::path dir = UniqueDir("fields");
  auto server = StartServer(MakeConfig(dir));
  ASSERT_NE(server, nullptr);
  auto s = Connect(*server);
  const std::string jpeg = RealJpeg();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<std::function<void(streamdistill::v1::SampledFrame*)>> breakers = {
      [&](auto* f) { f->set_capture_time_s(nan); },
      [&](auto* f) { f->set_capture_time_s(-inf); },
      [&](auto* f) { f->set_image_score(inf); },
      [&](auto* f) { f->set_image_score(nan); },
      [&](auto* f) { f->set_image_score(-0.5f); },
      [&](auto* f) { f->set_frame_index(-7); },
      [&](auto* f) { f->set_source_width(-1); },
      [&](auto* f) { f->set_source_height(1 << 20); },
      [&](auto* f) { f->add_embedding(0.5f); f->add_embedding(nan); },
      [&](auto* f) { for (int i = 0; i < 5000; ++i) f->add_embedding(0.f); },
  };
  uint64_t sequence = 0;
  for (auto& breaker : breakers) {
    EdgeMessage m = FrameMessage(++sequence, jpeg);
    breaker(m.mutable_frame());
    ASSERT_TRUE(s->Send(m));
    ServerMessage reply;
    ASSERT_TRUE(s->Next(&reply));
    ASSERT_EQ(reply.kind_case(), ServerMessage::kAck);
    EXPECT_EQ(reply.ack().sequence(), sequence);
    EXPECT_EQ(reply.ack().code(), 3) << "case " << sequence << ": " << reply.ack().message();
  }
  EXPECT_TRUE(s->Close().ok());
  EXPECT_EQ(server->core().store().LastSequence("cam1"), 0u);
  EXPECT_EQ(server->core().Counters("cam1").frames_rejected, static_cast<int64_t>(breakers.size()));
}

TEST(ServerHardeningTest, ANewStreamReplacesTheDevicesOpenOne) {
  const fs::path dir = UniqueDir("sessions");
  auto server = StartServer(MakeConfig(dir));
  ASSERT_NE(server, nullptr);
  std::vector<std::unique_ptr<Stream>> streams;
  for (int i = 0; i < 50; ++i) streams.push_back(Connect(*server));
  // Every stream but the newest was ended, with a status that says why.
  for (int i = 0; i + 1 < 50; ++i) {
    grpc::Status status = streams[i]->End();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::ABORTED) << i << ": " << status.error_message();
    EXPECT_NE(status.error_message().find("replaced"), std::string::npos) << status.error_message();
  }
  FrameAck ack;
  ASSERT_TRUE(SendFrame(*streams.back(), 1, RealJpeg(), &ack));
  EXPECT_EQ(ack.code(), 0) << ack.message();
  EXPECT_TRUE(streams.back()->Close().ok());
}

// A stored version to serve: written to the store before the server opens it.
void StoreVersion(const fs::path& dir, const sd::ServerConfig& config) {
  auto store = sd::FrameStore::Open((dir / "store").string());
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  auto model = sd::StudentModel::Create(config.student, 7);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  sd::VersionRecord v;
  v.device_id = "cam1";
  v.version = 1;
  v.encoding = "full_fp32";
  ASSERT_TRUE((*store)->PutVersion(v, (*model)->SerializeWeights()).ok());
}

TEST(ServerHardeningTest, FullModelRequestsAreRateLimitedPerDevice) {
  const fs::path dir = UniqueDir("amplify");
  sd::ServerConfig config = MakeConfig(dir, "limits: {full_model_burst: 3, full_model_refill_s: 3600}\n");
  StoreVersion(dir, config);
  auto server = StartServer(config);
  ASSERT_NE(server, nullptr);
  Stream s(Plaintext(server->port()), std::chrono::seconds(20));
  EdgeMessage hello = HelloMessage(Arch(*server), "cam1", kToken);
  hello.mutable_hello()->set_model_version(1);  // up to date: the hello costs no model
  ASSERT_TRUE(s.Send(hello));
  ASSERT_TRUE(ExpectWelcome(s));
  EdgeMessage request;
  request.mutable_model_request()->set_have_version(0);
  request.mutable_model_request()->set_full(true);
  for (int i = 0; i < 2000; ++i) ASSERT_TRUE(s.Send(request));
  // A frame after the flood: its ack marks the end of what the requests produced.
  ASSERT_TRUE(s.Send(FrameMessage(1, RealJpeg())));
  int last_chunks = 0;
  ServerMessage m;
  while (s.Next(&m)) {
    if (m.kind_case() == ServerMessage::kAck) break;
    if (m.kind_case() == ServerMessage::kUpdate && m.update().chunk_index() + 1 == m.update().chunk_count())
      ++last_chunks;
  }
  // Requests that arrive while a copy is still queued or on its way add nothing, so fewer
  // than the burst may be sent; never more.
  EXPECT_GE(last_chunks, 1);
  EXPECT_LE(last_chunks, 3) << "full models sent for 2000 requests";
  EXPECT_TRUE(s.Close().ok());
  // The bucket itself: the hello and the requests above took the burst; one device's use
  // leaves another's alone.
  EXPECT_FALSE(server->core().AllowFullModelSend("cam1"));
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(server->core().AllowFullModelSend("cam2")) << i;
  EXPECT_FALSE(server->core().AllowFullModelSend("cam2"));
}

TEST(ServerHardeningTest, AClientThatNeverReadsIsNotBufferedWithoutLimit) {
  const fs::path dir = UniqueDir("noread");
  auto server = StartServer(MakeConfig(dir, "limits: {stream_backlog: 64}\n"));
  ASSERT_NE(server, nullptr);
  auto s = Connect(*server, "cam1", kToken, std::chrono::seconds(60));
  constexpr int kFrames = 100000;
  std::atomic<int> written{0};
  std::thread writer([&] {
    for (int i = 1; i <= kFrames; ++i) {  // rejected frames: each one only costs the server an ack
      if (!s->Send(FrameMessage(i, "not a jpeg"))) return;
      ++written;
    }
  });
  // Wait until the server stops handling frames (a second without one; slower builds such as
  // the sanitizers' take longer to get there), then it must have stopped short of them all.
  int64_t before = -1, handled = 0;
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (handled != before && std::chrono::steady_clock::now() < give_up) {
    before = handled;
    std::this_thread::sleep_for(std::chrono::seconds(1));
    handled = server->core().Counters("cam1").frames_rejected;
  }
  EXPECT_EQ(handled, before) << "the server kept reading";
  EXPECT_LT(handled, kFrames);
  // Reading again lets everything through, each frame answered once.
  int acks = 0;
  ServerMessage m;
  while (acks < kFrames && s->Next(&m))
    if (m.kind_case() == ServerMessage::kAck) ++acks;
  writer.join();
  EXPECT_EQ(written.load(), kFrames);
  EXPECT_EQ(acks, kFrames);
  EXPECT_TRUE(s->Close().ok());
}

// Floods from one device (10,000 frames, 10,000 full-model requests, bomb headers), sent by a
// client that never reads, keep the server's resident memory within kFloodRssMb of where it
// started, while another device's frames are acked within a second.


TEST(ServerHardeningTest, FloodsFromOneDeviceDoNotStarveAnotherOrGrowMemory) {
  const fs::path dir = UniqueDir("flood");
  sd::ServerConfig config = MakeConfig(dir);
  StoreVersion(dir, config);
  auto server = StartServer(config);
  ASSERT_NE(server, nullptr);
  const int64_t rss_before = ResidentMb();
  auto attacker = Connect(*server, "cam1", kToken, std::chrono::seconds(120));
  auto honest = Connect(*server, "cam2", std::string(kToken) + "-2", std::chrono::seconds(120));
  std::atomic<bool> done{false};
  std::thread flood([&] {
    EdgeMessage request;
    request.mutable_model_request()->set_have_version(0);
    request.mutable_model_request()->set_full(true);
    const std::string bomb = BombJpeg(30000, 30000);
    for (int i = 1; i <= 10000 && !done; ++i) {
      if (!attacker->Send(FrameMessage(i, i % 2 ? "not a jpeg" : bomb))) break;
      if (!attacker->Send(request)) break;
    }
  });
  const std::string jpeg = RealJpeg();
  double worst_s = 0;
  for (uint64_t sequence = 1; sequence <= 15; ++sequence) {
    const auto start = std::chrono::steady_clock::now();
    FrameAck ack;
    ASSERT_TRUE(SendFrame(*honest, sequence, jpeg, &ack));
    EXPECT_EQ(ack.code(), 0) << ack.message();
    worst_s = std::max(worst_s, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  const int64_t grown_mb = ResidentMb() - rss_before;
  std::printf("flood: honest device's slowest ack %.3f s, resident memory +%lld MB\n", worst_s,
              static_cast<long long>(grown_mb));
  EXPECT_LT(worst_s, 1.0) << "the honest device waited for its ack";
  EXPECT_LT(grown_mb, kFloodRssMb) << "resident memory grew under the flood";
  done = true;
  attacker->context.TryCancel();
  flood.join();
  attacker->rw->Finish();
  EXPECT_TRUE(honest->Close().ok());
}

// A teacher that holds every frame until released, so the labelling queue can be kept full.
class GatedTeacher : public sd::Teacher {
 public:
  struct Gate {
    std::mutex mu;
    std::condition_variable cv;
    bool open = false;
  };
  explicit GatedTeacher(std::shared_ptr<Gate> gate) : gate_(std::move(gate)) {}
  static void Set(Gate* gate, bool open) {
    std::lock_guard<std::mutex> lock(gate->mu);
    gate->open = open;
    gate->cv.notify_all();
  }
  sd::StatusOr<sd::Detections> Label(const cv::Mat&) override {
    std::unique_lock<std::mutex> lock(gate_->mu);
    gate_->cv.wait(lock, [&] { return gate_->open; });
    return sd::Detections{};
  }
  std::string Fingerprint() const override { return "gated"; }

 private:
  std::shared_ptr<Gate> gate_;
};

// One labeller with a queue of one, so three frames make a stream wait for room.
std::unique_ptr<sd::Server> StartGatedServer(const fs::path& dir, std::shared_ptr<GatedTeacher::Gate> gate) {
  return StartServer(MakeConfig(dir, "", "labeler: {workers: 1, queue: 1}\n"), [gate] {
    return sd::StatusOr<std::unique_ptr<sd::Teacher>>(std::unique_ptr<sd::Teacher>(new GatedTeacher(gate)));
  });
}

TEST(ServerHardeningTest, CancellingAStreamThatWaitsForTheLabellersIsSafe) {
  const fs::path dir = UniqueDir("cancel");
  auto gate = std::make_shared<GatedTeacher::Gate>();
  auto server = StartGatedServer(dir, gate);
  ASSERT_NE(server, nullptr);
  const std::string jpeg = RealJpeg();
  uint64_t sequence = 0;
  // Each round hit the old use-after-free about one time in five: 15 rounds catch it reliably.
  for (int round = 0; round < 15; ++round) {
    auto s = Connect(*server);
    // One frame in the teacher, one queued, the third makes the stream wait for room.
    for (int i = 0; i < 4; ++i) s->Send(FrameMessage(++sequence, jpeg));
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    s->context.TryCancel();
    s->rw->Finish();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    GatedTeacher::Set(gate.get(), true);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    GatedTeacher::Set(gate.get(), false);
  }
  GatedTeacher::Set(gate.get(), true);
  auto s = Connect(*server);
  FrameAck ack;
  ASSERT_TRUE(SendFrame(*s, ++sequence, jpeg, &ack));
  EXPECT_EQ(ack.code(), 0) << ack.message();
  EXPECT_TRUE(s->Close().ok());
}

TEST(ServerHardeningTest, ShutdownWhileAStreamWaitsForTheLabellersFinishes) {
  const fs::path dir = UniqueDir("shutdown");
  auto gate = std::make_shared<GatedTeacher::Gate>();
  auto server = StartGatedServer(dir, gate);
  ASSERT_NE(server, nullptr);
  auto s = Connect(*server);
  for (int i = 1; i <= 4; ++i) s->Send(FrameMessage(i, RealJpeg()));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  std::thread opener([&] {
    std::this_thread::sleep_for(std::chrono::seconds(3));
    GatedTeacher::Set(gate.get(), true);
  });
  const auto start = std::chrono::steady_clock::now();
  server->Shutdown();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
  opener.join();
  s->End();
}

TEST(ServerHardeningTest, AnUnparseableMessageEndsTheStreamWithInvalidArgument) {
  const fs::path dir = UniqueDir("malformed");
  auto server = StartServer(MakeConfig(dir));
  ASSERT_NE(server, nullptr);
  grpc::GenericStub stub(Plaintext(server->port()));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::CompletionQueue cq;
  auto call = stub.PrepareCall(&context, "/streamdistill.v1.EdgeLink/Connect", &cq);
  void* tag;
  bool ok;
  call->StartCall(reinterpret_cast<void*>(1));
  ASSERT_TRUE(cq.Next(&tag, &ok) && ok);
  auto send = [&](const std::string& bytes) {
    grpc::Slice slice(bytes);
    grpc::ByteBuffer buffer(&slice, 1);
    call->Write(buffer, reinterpret_cast<void*>(2));
    return cq.Next(&tag, &ok) && ok;
  };
  std::string hello;
  ASSERT_TRUE(HelloMessage(Arch(*server), "cam1", kToken).SerializeToString(&hello));
  ASSERT_TRUE(send(hello));
  ASSERT_TRUE(send(std::string("\x12\xff\xff\xff\xff\x0f garbage", 12)));  // a length past the end
  grpc::ByteBuffer reply;
  while (true) {  // the welcome, then the end
    call->Read(&reply, reinterpret_cast<void*>(3));
    if (!(cq.Next(&tag, &ok) && ok)) break;
  }
  grpc::Status status;
  call->Finish(&status, reinterpret_cast<void*>(4));
  ASSERT_TRUE(cq.Next(&tag, &ok));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
}

TEST(ServerHardeningTest, AuthenticationFailuresLookTheSameAndIdsCannotForgeLogLines) {
  const fs::path dir = UniqueDir("auth");
  auto server = StartServer(MakeConfig(dir));
  ASSERT_NE(server, nullptr);
  std::ostringstream log;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(log);
  spdlog::default_logger()->sinks().push_back(sink);
  auto refused = [&](const std::string& device, const std::string& token) {
    Stream s(Plaintext(server->port()));
    s.Send(HelloMessage(Arch(*server), device, token));
    ServerMessage m;
    EXPECT_FALSE(s.Next(&m));
    return s.rw->Finish();
  };
  const grpc::Status unknown = refused("nobody", kToken);
  const grpc::Status wrong = refused("cam1", "not-the-token");
  const std::string forged = "cam9\n[00:00:00.000] [server] [info] device cam1: serving version 99";
  const grpc::Status forging = refused(forged + std::string(200000, 'x'), kToken);
  spdlog::default_logger()->sinks().pop_back();
  EXPECT_EQ(unknown.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(wrong.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(unknown.error_message(), wrong.error_message());
  EXPECT_EQ(forging.error_message(), wrong.error_message());
  const std::string text = log.str();
  EXPECT_EQ(text.find("\n[00:00:00.000]"), std::string::npos) << "a device id forged a log line";
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) EXPECT_LT(line.size(), 1000u) << line.substr(0, 200);
}

}  // namespace
