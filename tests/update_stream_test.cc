// Model updates over a real gRPC stream to a real edge: a scripted server sends a good full
// model, then a damaged sparse delta (truncated, reordered, duplicated or corrupted chunks).
// The edge must keep serving exactly the weights it had, ask for a full model, apply it and
// go on.
#include <gtest/gtest.h>
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <random>
#include <thread>

#include "common/link/update_codec.h"
#include "edge/edge_agent.h"
#include "streamdistill.grpc.pb.h"
#include "tests/daemon_test_util.h"

namespace sd {
namespace {

using namespace sd::testing;
using streamdistill::v1::EdgeMessage;
using streamdistill::v1::ServerMessage;

enum class Damage { kTruncated, kReordered, kDuplicated, kCorrupted };

ModelUpdate Update(uint64_t base, uint64_t version, UpdateEncoding encoding, std::string payload,
                   std::string checksum) {
  ModelUpdate u;
  u.base_version = base;
  u.new_version = version;
  u.encoding = encoding;
  u.payload = std::move(payload);
  u.weights_checksum = std::move(checksum);
  return u;
}

// The chunks as the server's stream sends them.
std::vector<ServerMessage> Chunks(const ModelUpdate& u, size_t chunk_bytes = 4096) {
  std::vector<ServerMessage> out;
  for (uint32_t i = 0; i < UpdateChunkCount(u, chunk_bytes); ++i) {
    ServerMessage m;
    *m.mutable_update() = MakeUpdateChunk(u, i, chunk_bytes);
    out.push_back(std::move(m));
  }
  return out;
}

// What the scripted server saw and did, for the test to check.
struct Script {
  std::vector<ServerMessage> full_v1, damaged_v2, full_v2;
  std::function<void()> on_full_request;  // runs on the server thread when the edge asks
  std::atomic<int> full_requests{0};
};

class ScriptedLink final : public streamdistill::v1::EdgeLink::Service {
 public:
  explicit ScriptedLink(Script* script) : script_(script) {}

  grpc::Status Connect(grpc::ServerContext*, grpc::ServerReaderWriter<ServerMessage, EdgeMessage>* stream) override {
    EdgeMessage in;
    if (!stream->Read(&in) || !in.has_hello()) return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "no hello");
    ServerMessage welcome;
    welcome.mutable_welcome()->set_latest_version(2);
    welcome.mutable_welcome()->set_max_message_bytes(8 << 20);
    stream->Write(welcome);
    for (const auto& m : script_->full_v1) stream->Write(m);
    bool damaged_sent = false;
    while (stream->Read(&in)) {
      if (in.has_update_result() && in.update_result().applied() && in.update_result().version() == 1 &&
          !damaged_sent) {
        damaged_sent = true;
        for (const auto& m : script_->damaged_v2) stream->Write(m);
      }
      if (in.has_model_request() && in.model_request().full() && damaged_sent && script_->full_requests++ == 0) {
        script_->on_full_request();
        for (const auto& m : script_->full_v2) stream->Write(m);
      }
    }
    return grpc::Status::OK;
  }

 private:
  Script* script_;
};

class UpdateStreamTest : public ::testing::TestWithParam<Damage> {};

TEST_P(UpdateStreamTest, DamagedDeltaNeverTouchesServingWeightsAndAFullModelRecovers) {
  const std::string dir = TempDir("update_stream");
  Script script;
  ScriptedLink service(&script);
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_TRUE(server && port > 0);

  auto config = ParseEdgeConfig(EdgeYaml("cam1", "secret-token-1", port, dir, SyntheticUri(4)), "edge.yaml");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  auto model = StudentModel::Create(config->student, 99);
  ASSERT_TRUE(model.ok());
  const std::vector<size_t> layout = (*model)->TensorSizes();

  // v1: a full model. v2: 5% of the weights moved, as a sparse delta; and as a full model.
  const std::vector<float> v1 = (*model)->FlatWeights();
  std::vector<float> v2_target = v1;
  std::mt19937 rng(7);
  std::normal_distribution<float> noise(0.0f, 0.01f);
  for (size_t k = 0; k < v2_target.size(); k += 20) v2_target[k] += noise(rng);
  const ModelUpdate full1 =
      Update(0, 1, UpdateEncoding::kFullFp32, *EncodeUpdate(UpdateEncoding::kFullFp32, {}, v1, {}), WeightsChecksum(v1));
  ModelUpdate delta2 =
      Update(1, 2, UpdateEncoding::kSparse, *EncodeUpdate(UpdateEncoding::kSparse, v1, v2_target, layout, /*allow_zstd=*/false), "");
  const std::vector<float> v2 = *DecodeUpdate(UpdateEncoding::kSparse, v1, delta2.payload, v1.size());
  delta2.weights_checksum = WeightsChecksum(v2);
  const ModelUpdate full2 =
      Update(0, 2, UpdateEncoding::kFullFp32, *EncodeUpdate(UpdateEncoding::kFullFp32, {}, v2, {}), delta2.weights_checksum);
  ASSERT_GT(delta2.payload.size(), 3 * 1024u);  // at least three chunks of 1 KiB below

  script.full_v1 = Chunks(full1);
  script.full_v2 = Chunks(full2);
  ModelUpdate damaged = delta2;
  switch (GetParam()) {
    case Damage::kTruncated:  // sizes agree with the shortened payload: only decoding can tell
      damaged.payload.resize(damaged.payload.size() - 7);
      script.damaged_v2 = Chunks(damaged, 1024);
      break;
    case Damage::kReordered:
      script.damaged_v2 = Chunks(damaged, 1024);
      std::swap(script.damaged_v2[1], script.damaged_v2[2]);
      break;
    case Damage::kDuplicated:
      script.damaged_v2 = Chunks(damaged, 1024);
      script.damaged_v2.insert(script.damaged_v2.begin() + 2, script.damaged_v2[1]);
      break;
    case Damage::kCorrupted:
      damaged.payload[damaged.payload.size() / 2] ^= 0x5a;
      script.damaged_v2 = Chunks(damaged, 1024);
      break;
  }

  auto agent = EdgeAgent::Create(*config);
  ASSERT_TRUE(agent.ok()) << agent.status().ToString();
  std::shared_ptr<const ServedModel> at_request;
  std::mutex mu;
  script.on_full_request = [&] {
    std::lock_guard<std::mutex> lock(mu);
    at_request = (*agent)->serving();
  };
  std::thread run([&] { EXPECT_TRUE((*agent)->Run().ok()); });
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while ((*agent)->ServingVersion() < 2 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  (*agent)->Stop();
  run.join();
  server->Shutdown();

  // When the edge asked for the full model it still served v1, bit for bit.
  {
    std::lock_guard<std::mutex> lock(mu);
    ASSERT_TRUE(at_request) << "the edge never asked for a full model";
    EXPECT_EQ(at_request->version, 1u);
    EXPECT_EQ(at_request->weights_checksum, full1.weights_checksum);
    EXPECT_EQ(WeightsChecksum(at_request->flat), full1.weights_checksum);
  }
  // Then it took the full v2 and serves exactly the server's weights.
  EXPECT_EQ((*agent)->ServingVersion(), 2u);
  EXPECT_EQ((*agent)->ServingChecksum(), delta2.weights_checksum);
  const EdgeStats stats = (*agent)->stats();
  EXPECT_EQ(stats.uplink.updates_refused, 1);  // the damaged update's other chunks add no noise
  EXPECT_EQ(script.full_requests.load(), 1);
  EXPECT_EQ(stats.uplink.updates_applied, 2);
}

INSTANTIATE_TEST_SUITE_P(Damages, UpdateStreamTest,
                         ::testing::Values(Damage::kTruncated, Damage::kReordered, Damage::kDuplicated,
                                           Damage::kCorrupted),
                         [](const ::testing::TestParamInfo<Damage>& info) {
                           switch (info.param) {
                             case Damage::kTruncated: return "Truncated";
                             case Damage::kReordered: return "Reordered";
                             case Damage::kDuplicated: return "Duplicated";
                             case Damage::kCorrupted: return "Corrupted";
                           }
                           return "Unknown";
                         });

}  // namespace
}  // namespace sd
