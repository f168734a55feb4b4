// Runs the real streamdistill-server and streamdistill-edge binaries. A broken config must
// give exit code 2 and exactly one line "streamdistill-<name>: error: <file>: ..." that names
// the key (no usage text, no stack trace). The server binary must also start on a given
// loopback port, answer an EdgeLink stream, and stop in order on SIGTERM; the edge binary's
// --ack-log must list exactly the frames the server stored.
#include <gtest/gtest.h>

#include "tests/child_process.h"
#include "tests/run_binary.h"

#include <signal.h>
#include <unistd.h>

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "server/frame_store.h"
#include "streamdistill.grpc.pb.h"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

using Result = sd::testing::RunResult;
using sd::testing::FreePort;
using sd::testing::RunBinary;

int Lines(const std::string& s) { return static_cast<int>(std::count(s.begin(), s.end(), '\n')); }

fs::path UniqueDir(const std::string& what) {
  static std::atomic<int> counter{0};
  const fs::path dir = fs::path(SD_BINARY_DIR) / "test_tmp" /
                       ("daemon_cli_" + std::to_string(getpid()) + "_" + std::to_string(counter++) + "_" + what);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

std::string ServerYaml(const fs::path& storage_dir) {
  return "listen: \"127.0.0.1:0\"\n"
         "http: {port: 0}\n"
         "storage_dir: \"" + storage_dir.string() + "\"\n"
         "max_message_bytes: 1048576\n"
         "update_chunk_bytes: 65536\n"
         "threads: 1\n"
         "devices:\n  cam1: {token: \"secret-token-1\"}\n"
         "teacher:\n  kind: onnx\n  model: \"" SD_SOURCE_DIR "/tests/data/tiny_yolo.onnx\"\n"
         "student:\n  input_width: 128\n  input_height: 96\n  classes: 1\n"
         "  channels: [8, 8, 16, 16, 32]\n  block: separable\n"
         "training: {background: false}\n";
}

std::string EdgeYaml(const fs::path& state_dir) {
  return "device_id: cam1\n"
         "token: secret-token-1\n"
         "server: 127.0.0.1:1\n"
         "source:\n  uri: /usr/share/doc/opencv-doc/examples/data/vtest.avi\n"
         "student:\n  input_width: 128\n  input_height: 96\n  classes: 1\n"
         "  channels: [8, 8, 16, 16, 32]\n  block: separable\n"
         "state_dir: \"" + state_dir.string() + "\"\n";
}

class DaemonCliTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = UniqueDir("cfg"); }
  void TearDown() override {
    if (!HasFailure()) fs::remove_all(dir_);
  }
  std::string Write(const std::string& name, const std::string& text) {
    const fs::path path = dir_ / name;
    std::ofstream(path) << text;
    return path.string();
  }
  // Exit code 2 and exactly "streamdistill-<daemon>: error: <file>: ...<fragment>...\n".
  void ExpectConfigError(const std::string& daemon, const std::string& file, const std::string& fragment) {
    SCOPED_TRACE(daemon + " --config " + file);
    Result r = RunBinary("streamdistill-" + daemon, "--config " + file);
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_EQ(Lines(r.output), 1) << r.output;
    const std::string prefix = "streamdistill-" + daemon + ": error: " + file + ": ";
    EXPECT_EQ(r.output.rfind(prefix, 0), 0u) << r.output;
    EXPECT_NE(r.output.find(fragment), std::string::npos) << "expected '" << fragment << "' in: " << r.output;
    EXPECT_EQ(r.output.find("terminate"), std::string::npos) << r.output;
  }
  fs::path dir_;
};

// ---- streamdistill-server: broken configs ---------------------------------------------------

TEST_F(DaemonCliTest, ServerWrongType) {
  const std::string base = ServerYaml(dir_ / "store");
  const std::string line = std::to_string(Lines(base) + 2);
  ExpectConfigError("server", Write("server_wrong_type.yaml", base + "labeler:\n  workers: lots\n"),
                    "key 'labeler.workers' (line " + line + "): expected an integer, got 'lots'");
}

TEST_F(DaemonCliTest, ServerUnknownKey) {
  const std::string base = ServerYaml(dir_ / "store");
  const std::string line = std::to_string(Lines(base) + 2);
  ExpectConfigError("server", Write("server_unknown_key.yaml", base + "labeler:\n  wokers: 2\n"),
                    "unknown key 'labeler.wokers' (line " + line + ")");
}

TEST_F(DaemonCliTest, ServerMissingRequiredKey) {
  std::string yaml = ServerYaml(dir_ / "store");
  const std::string devices = "devices:\n  cam1: {token: \"secret-token-1\"}\n";
  yaml.replace(yaml.find(devices), devices.size(), "devices:\n  cam1: {}\n");
  ExpectConfigError("server", Write("server_missing_token.yaml", yaml),
                    "key 'devices.cam1.token': missing required key");

  yaml = ServerYaml(dir_ / "store");
  yaml.erase(yaml.find(devices), devices.size());
  ExpectConfigError("server", Write("server_no_devices.yaml", yaml), "key 'devices'");
}

TEST_F(DaemonCliTest, ServerUnreadableTlsFile) {
  const std::string missing = (dir_ / "no_such_cert.pem").string();
  const std::string yaml =
      ServerYaml(dir_ / "store") + "tls:\n  cert: \"" + missing + "\"\n  key: \"" + missing + "\"\n";
  ExpectConfigError("server", Write("server_tls.yaml", yaml), "key 'tls.cert'");
}

TEST_F(DaemonCliTest, ServerBadHttpPort) {
  std::string yaml = ServerYaml(dir_ / "store");
  yaml.replace(yaml.find("http: {port: 0}"), 15, "http: {port: 70000}");
  ExpectConfigError("server", Write("server_http_port.yaml", yaml), "key 'http.port'");
}

TEST_F(DaemonCliTest, ServerInvalidYaml) {
  ExpectConfigError("server", Write("server_syntax.yaml", "listen: [127.0.0.1:0\nthreads: 1\n"), "invalid YAML");
}

TEST_F(DaemonCliTest, ServerMissingFile) {
  const std::string missing = (dir_ / "no_such_server.yaml").string();
  Result r = RunBinary("streamdistill-server", "--config " + missing);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.output, "streamdistill-server: error: " + missing + ": config file not found\n");
}

TEST_F(DaemonCliTest, ServerBadCommandLineExits2) {
  Result r = RunBinary("streamdistill-server", "--no-such-flag");
  EXPECT_EQ(r.exit_code, 2) << r.output;
}

// ---- streamdistill-edge: broken configs -----------------------------------------------------

TEST_F(DaemonCliTest, EdgeWrongType) {
  const std::string base = EdgeYaml(dir_ / "edge");
  const std::string line = std::to_string(Lines(base) + 2);
  ExpectConfigError("edge", Write("edge_wrong_type.yaml", base + "sampling:\n  budget_per_minute: many\n"),
                    "key 'sampling.budget_per_minute' (line " + line + "): expected a number, got 'many'");
}

TEST_F(DaemonCliTest, EdgeUnknownKey) {
  const std::string base = EdgeYaml(dir_ / "edge");
  const std::string line = std::to_string(Lines(base) + 2);
  ExpectConfigError("edge", Write("edge_unknown_key.yaml", base + "upload:\n  jpeg_qualty: 80\n"),
                    "unknown key 'upload.jpeg_qualty' (line " + line + ")");
}

TEST_F(DaemonCliTest, EdgeMissingDeviceId) {
  std::string yaml = EdgeYaml(dir_ / "edge");
  yaml.erase(0, yaml.find('\n') + 1);  // drop "device_id: cam1"
  ExpectConfigError("edge", Write("edge_no_device.yaml", yaml), "key 'device_id': missing required key");
}

TEST_F(DaemonCliTest, EdgeBadHttpSettings) {
  ExpectConfigError("edge", Write("edge_http_port.yaml", EdgeYaml(dir_ / "edge") + "http: {enabled: true, port: -1}\n"),
                    "key 'http.port'");
  ExpectConfigError("edge", Write("edge_http_bind.yaml", EdgeYaml(dir_ / "edge") + "http: {bind: \"\"}\n"),
                    "key 'http.bind'");
}

TEST_F(DaemonCliTest, EdgeInvalidYaml) {
  ExpectConfigError("edge", Write("edge_syntax.yaml", "device_id: cam1\nsource: {uri: x\n"), "invalid YAML");
}

TEST_F(DaemonCliTest, EdgeUnwritableAckLogExits2) {
  const std::string config = Write("edge.yaml", EdgeYaml(dir_ / "edge"));
  const std::string log = (dir_ / "no_such_dir" / "acks.txt").string();
  Result r = RunBinary("streamdistill-edge", "--config " + config + " --ack-log " + log);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_EQ(r.output, "streamdistill-edge: error: " + log + ": cannot open the ack log: No such file or directory\n");
}

TEST_F(DaemonCliTest, EdgeMissingFile) {
  const std::string missing = (dir_ / "no_such_edge.yaml").string();
  Result r = RunBinary("streamdistill-edge", "--config " + missing);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.output, "streamdistill-edge: error: " + missing + ": config file not found\n");
}

// ---- the real server binary ----------------------------------------------------------------

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The server binary as a child process on a given loopback port, its output in `log`.
class ServerProcess : public sd::testing::ChildProcess {
 public:
  ServerProcess(const std::string& config, int port, const fs::path& log)
      : ChildProcess({std::string(SD_BINARY_DIR) + "/streamdistill-server", "--config", config, "--listen",
                      "127.0.0.1:" + std::to_string(port)},
                     log.string()) {}
};

// One EdgeLink stream with a deadline; sends a valid hello and expects the Welcome.
struct EdgeStream {
  explicit EdgeStream(int port)
      : stub(streamdistill::v1::EdgeLink::NewStub(
            grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials()))) {
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(15));
    rw = stub->Connect(&context);
  }
  ::testing::AssertionResult HelloWelcome(const std::string& architecture) {
    streamdistill::v1::EdgeMessage hello;
    hello.mutable_hello()->set_device_id("cam1");
    hello.mutable_hello()->set_token("secret-token-1");
    hello.mutable_hello()->set_architecture(architecture);
    if (!rw->Write(hello)) return ::testing::AssertionFailure() << "hello write failed";
    streamdistill::v1::ServerMessage m;
    if (!rw->Read(&m)) {
      grpc::Status s = rw->Finish();
      return ::testing::AssertionFailure() << "no welcome: " << s.error_code() << " " << s.error_message();
    }
    if (m.kind_case() != streamdistill::v1::ServerMessage::kWelcome)
      return ::testing::AssertionFailure() << "not a welcome: " << m.ShortDebugString();
    return ::testing::AssertionSuccess();
  }
  std::unique_ptr<streamdistill::v1::EdgeLink::Stub> stub;
  grpc::ClientContext context;
  std::unique_ptr<grpc::ClientReaderWriter<streamdistill::v1::EdgeMessage, streamdistill::v1::ServerMessage>> rw;
};

constexpr char kArchitecture[] = "centernet-v1 128x96 c1 8-8-16-16-32 separable";

// Waits for the server binary to accept connections. A sanitizer build on a loaded CI machine can
// take many seconds to start (CI once saw the server listen about 10 s after launch), so the wait is
// generous, and the probe channel retries every 100-250 ms: gRPC's default reconnect backoff grows
// to 16 s after five refused attempts and would miss a server that came up in between.
::testing::AssertionResult StartAndConnect(ServerProcess& server, int port) {
  constexpr int kStartSeconds = 60;
  if (!server.started()) return ::testing::AssertionFailure() << "the server binary could not be started";
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 250);
  auto channel =
      grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials(), args);
  const auto deadline = std::chrono::system_clock::now() + std::chrono::seconds(kStartSeconds);
  while (!channel->WaitForConnected(std::min(deadline, std::chrono::system_clock::now() + std::chrono::milliseconds(200)))) {
    if (server.WaitExit(std::chrono::milliseconds(0)))
      return ::testing::AssertionFailure() << "the server exited early:\n" << server.Log();
    if (std::chrono::system_clock::now() >= deadline)
      return ::testing::AssertionFailure() << "the server did not accept connections within " << kStartSeconds
                                           << " s:\n" << server.Log();
  }
  return ::testing::AssertionSuccess();
}

TEST_F(DaemonCliTest, ServerServesAStreamAndStopsOnSigterm) {
  const int port = FreePort();
  ASSERT_GT(port, 0);
  const std::string config = Write("server_run.yaml", ServerYaml(dir_ / "store"));
  ServerProcess server(config, port, dir_ / "server.log");
  ASSERT_TRUE(StartAndConnect(server, port));

  EdgeStream stream(port);
  ASSERT_TRUE(stream.HelloWelcome(kArchitecture)) << server.Log();
  EXPECT_NE(server.Log().find("listening on 127.0.0.1:" + std::to_string(port)), std::string::npos) << server.Log();

  // The stream stays open: shutdown must end it by itself.
  const auto signalled = Clock::now();
  server.Signal(SIGTERM);
  auto status = server.WaitExit(std::chrono::seconds(10));
  ASSERT_TRUE(status.has_value()) << "no exit within 10 s of SIGTERM:\n" << server.Log();
  const double seconds = std::chrono::duration<double>(Clock::now() - signalled).count();
  EXPECT_TRUE(WIFEXITED(*status)) << "status " << *status << "\n" << server.Log();
  EXPECT_EQ(WEXITSTATUS(*status), 0) << server.Log();
  EXPECT_LT(seconds, 10.0);
  const std::string log = server.Log();
  EXPECT_NE(log.find("shutting down"), std::string::npos) << log;
  EXPECT_NE(log.find("stopped"), std::string::npos) << log;

  streamdistill::v1::ServerMessage m;
  while (stream.rw->Read(&m)) {
  }
  grpc::Status end = stream.rw->Finish();
  // The shutdown itself ended the open stream (not our 15 s client deadline).
  EXPECT_NE(end.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << "the stream was not ended by the shutdown";
}

TEST_F(DaemonCliTest, ServerSecondSignalExitsAtOnce) {
  const int port = FreePort();
  ASSERT_GT(port, 0);
  ServerProcess server(Write("server_run.yaml", ServerYaml(dir_ / "store")), port, dir_ / "server.log");
  ASSERT_TRUE(StartAndConnect(server, port));
  // An open stream keeps the orderly shutdown busy for its grace period (2 s).
  EdgeStream stream(port);
  ASSERT_TRUE(stream.HelloWelcome(kArchitecture)) << server.Log();

  server.Signal(SIGTERM);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  if (auto early = server.WaitExit(std::chrono::milliseconds(0))) {
    GTEST_SKIP() << "the orderly shutdown finished within 300 ms (status " << *early
                 << "); nothing left for a second signal to cut short";
  }
  const auto signalled = Clock::now();
  server.Signal(SIGINT);
  auto status = server.WaitExit(std::chrono::seconds(5));
  ASSERT_TRUE(status.has_value()) << "no exit after the second signal:\n" << server.Log();
  const double seconds = std::chrono::duration<double>(Clock::now() - signalled).count();
  EXPECT_TRUE(WIFEXITED(*status)) << "status " << *status;
  EXPECT_EQ(WEXITSTATUS(*status), 130) << server.Log();
  EXPECT_LT(seconds, 1.0);
}

// --ack-log: the edge binary appends one "<sequence> <code>" line per ack, and every sequence it
// logged as stored (code 0) is in the server's store.
TEST_F(DaemonCliTest, EdgeAckLogListsEveryAckedFrame) {
  const int port = FreePort();
  ASSERT_GT(port, 0);
  ServerProcess server(Write("server_run.yaml", ServerYaml(dir_ / "store")), port, dir_ / "server.log");
  ASSERT_TRUE(StartAndConnect(server, port));
  const std::string edge_yaml =
      "device_id: cam1\n"
      "token: secret-token-1\n"
      "server: 127.0.0.1:" + std::to_string(port) + "\n"
      "source:\n  uri: /usr/share/doc/opencv-doc/examples/data/vtest.avi\n  end_frame: 20\n"
      "student:\n  input_width: 128\n  input_height: 96\n  classes: 1\n"
      "  channels: [8, 8, 16, 16, 32]\n  block: separable\n"
      "sampling: {strategy: uniform, uniform_every: 5, budget_per_minute: 0}\n"
      "detections: {path: \"" + (dir_ / "detections.jsonl").string() + "\"}\n"
      "linger_s: 8\n"
      "state_dir: \"" + (dir_ / "edge").string() + "\"\n";
  const fs::path acks = dir_ / "acks.txt";
  Result r = RunBinary("streamdistill-edge", "--config " + Write("edge_run.yaml", edge_yaml) + " --ack-log " +
                                                 acks.string() + " --log-level warn", 60);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("\"acked\":4,"), std::string::npos) << r.output;  // frames 0, 5, 10, 15

  std::istringstream lines(ReadFile(acks));
  std::vector<uint64_t> logged;
  uint64_t sequence = 0;
  int code = -1;
  while (lines >> sequence >> code) {
    EXPECT_EQ(code, 0) << "sequence " << sequence;
    logged.push_back(sequence);
  }
  EXPECT_EQ(logged, (std::vector<uint64_t>{1, 2, 3, 4})) << ReadFile(acks);

  server.Signal(SIGTERM);
  ASSERT_TRUE(server.WaitExit(std::chrono::seconds(10)).has_value()) << server.Log();
  auto store = sd::FrameStore::Open((dir_ / "store").string());
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  auto frames = (*store)->Since("cam1", 0, 100);
  ASSERT_TRUE(frames.ok()) << frames.status().ToString();
  std::vector<uint64_t> stored;
  for (const sd::FrameRecord& f : *frames) stored.push_back(f.sequence);
  EXPECT_EQ(stored, logged);
}

}  // namespace
