// Enrolment without restarts (issue 11, part 4): token hashing, the devices file, and a real
// server on loopback that takes in, refuses and re-keys devices while it runs. Reloads are
// stepped by hand (ServerCore::ReloadDevices) except in the test of the file watcher.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "common/base/token_hash.h"
#include "server/device_registry.h"
#include "server/devices_file.h"
#include "server/server.h"
#include "server/server_config.h"
#include "tests/daemon_test_util.h"
#include "tests/protocol_client.h"
#include "tests/run_binary.h"

namespace sd {
namespace {

using sd::testing::ExpectWelcome;
using sd::testing::HelloMessage;
using sd::testing::Plaintext;
using sd::testing::RealJpeg;
using sd::testing::SendFrame;
using sd::testing::Stream;
using streamdistill::v1::FrameAck;
using streamdistill::v1::ServerMessage;

namespace fs = std::filesystem;

TEST(TokenHashTest, Sha256MatchesTheStandardVectors) {  // FIPS 180-2 examples
  EXPECT_EQ(HexEncode(Sha256("")), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(HexEncode(Sha256("abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(HexEncode(Sha256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

TEST(TokenHashTest, AHashMatchesOnlyItsTokenAndSurvivesItsText) {
  auto hash = HashToken("secret-token-1");
  ASSERT_TRUE(hash.ok()) << hash.status().ToString();
  auto parsed = ParseTokenHash(FormatTokenHash(*hash));
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_TRUE(TokenMatches(*parsed, "secret-token-1"));
  EXPECT_FALSE(TokenMatches(*parsed, "secret-token-2"));
  EXPECT_FALSE(TokenMatches(*parsed, "secret-token-1 "));
  EXPECT_FALSE(TokenMatches(*parsed, ""));
  // Salted: the same token never gives the same text twice.
  EXPECT_NE(FormatTokenHash(*hash), FormatTokenHash(*HashToken("secret-token-1")));
  EXPECT_EQ(FormatTokenHash(HashTokenWithSalt("abc", "")).substr(0, 8), "sha256$$");
  for (const char* bad : {"", "md5$00$00", "sha256$$" "00", "sha256$zz$00", "sha256$0011$abcd", "sha256$0011"})
    EXPECT_FALSE(ParseTokenHash(bad).ok()) << bad;
}

TEST(DevicesFileTest, BadEntriesAreRefusedWithTheirLine) {
  const std::string hash = "\"" + FormatTokenHash(*HashToken("secret-token-7")) + "\"";
  auto error = [](const std::string& text) {
    auto parsed = ParseDevicesFile(text, "devices.yaml");
    return parsed.ok() ? std::string("parsed") : parsed.status().message();
  };
  const std::string plaintext = error("devices:\n  cam7:\n    token: secret-token-7\n");
  EXPECT_NE(plaintext.find("line 3"), std::string::npos) << plaintext;
  EXPECT_NE(plaintext.find("plaintext"), std::string::npos) << plaintext;
  EXPECT_NE(error("devices:\n  cam7: {enabled: true}\n").find("token_hash"), std::string::npos);
  EXPECT_NE(error("devices:\n  cam7: {token_hash: \"sha256$00$00\"}\n").find("line 2"), std::string::npos);
  EXPECT_NE(error("devices:\n  ../x: {token_hash: " + hash + "}\n").find("device ids"), std::string::npos);
  EXPECT_NE(error("devices:\n  cam7: {token_hash: " + hash + ", enabeld: false}\n").find("unknown key"),
            std::string::npos);
  EXPECT_NE(error("devices: [\n").find("invalid YAML"), std::string::npos);

  EnrolledDevices devices;
  devices["cam7"].token = *HashToken("secret-token-7");
  devices["cam8"].token = *HashToken("secret-token-8");
  devices["cam8"].enabled = false;
  auto again = ParseDevicesFile(FormatDevicesFile(devices), "devices.yaml");
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  ASSERT_EQ(again->size(), 2u);
  EXPECT_TRUE(again->at("cam7").enabled);
  EXPECT_FALSE(again->at("cam8").enabled);
  EXPECT_TRUE(TokenMatches(again->at("cam8").token, "secret-token-8"));
  auto none = ParseDevicesFile(FormatDevicesFile({}), "devices.yaml");
  ASSERT_TRUE(none.ok()) << none.status().ToString();
  EXPECT_TRUE(none->empty());
}

class EnrolmentTest : public ::testing::Test {
 protected:
  // cam1 inline in server.yaml; everything else comes from the devices file.
  void StartServer(double poll_s = 0) {
    dir_ = sd::testing::TempDir(std::string("enrolment_") +
                                ::testing::UnitTest::GetInstance()->current_test_info()->name());
    devices_file_ = dir_ + "/devices.yaml";
    std::ostringstream y;
    y << "listen: \"127.0.0.1:0\"\nhttp: {port: 0}\nstorage_dir: \"" << dir_ << "/store\"\nthreads: 1\n"
      << "update_chunk_bytes: 16384\n"
      << "devices: {cam1: {token: secret-token-1}}\n"
      << "devices_file: \"" << devices_file_ << "\"\ndevices_file_poll_s: " << poll_s << "\n"
      << "labeler: {workers: 1, queue: 4}\n"
      << "training: {background: false, iterations: 3, validation_every: 4, min_validation_frames: 4,\n"
      << "           optimizer: {batch_size: 2, warmup_steps: 1}}\n"
      << sd::testing::kTinyStudent;
    auto config = ParseServerConfig(y.str(), "enrolment_test.yaml");
    ASSERT_TRUE(config.ok()) << config.status().ToString();
    auto server = Server::Start(*config, []() -> StatusOr<std::unique_ptr<Teacher>> {
      return std::unique_ptr<Teacher>(std::make_unique<sd::testing::OneBoxTeacher>());
    });
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(server).value();
  }

  // Runs streamdistill-admin on the devices file; returns the token it printed (enrol).
  std::string Admin(const std::string& args) {
    auto run = sd::testing::RunBinary("streamdistill-admin", args + " --devices-file " + devices_file_);
    EXPECT_EQ(run.exit_code, 0) << run.output;
    std::istringstream lines(run.output);
    std::string line, last;
    while (std::getline(lines, line))
      if (!line.empty()) last = line;
    return last;
  }

  // Enrols the device with the admin tool and has the server reload; returns its token.
  std::string Enrol(const std::string& device) {
    const std::string token = Admin("enrol --device " + device);
    EXPECT_TRUE(server_->core().ReloadDevices().ok());
    return token;
  }

  std::unique_ptr<Stream> Open(const std::string& device, const std::string& token) {
    auto s = std::make_unique<Stream>(Plaintext(server_->port()), std::chrono::seconds(30));
    EXPECT_TRUE(s->Send(HelloMessage(server_->core().config().student.Fingerprint(), device, token)));
    return s;
  }

  // The stream must be refused as an unknown device would be.
  void ExpectRefused(const std::string& device, const std::string& token) {
    auto s = Open(device, token);
    ServerMessage m;
    EXPECT_FALSE(s->Next(&m)) << device << " was answered: " << m.ShortDebugString();
    const grpc::Status status = s->rw->Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED) << device << ": " << status.error_message();
    EXPECT_EQ(status.error_message(), "unknown device or wrong token");
  }

  std::unique_ptr<Stream> ExpectAccepted(const std::string& device, const std::string& token,
                                         streamdistill::v1::Welcome* welcome = nullptr) {
    auto s = Open(device, token);
    EXPECT_TRUE(ExpectWelcome(*s, welcome)) << device;
    return s;
  }

  std::string dir_, devices_file_;
  std::unique_ptr<Server> server_;
};

TEST_F(EnrolmentTest, ACameraEnrolledWhileTheServerRunsGetsItsFirstUpdate) {
  StartServer();
  ExpectRefused("cam7", "no-token-yet");
  const std::string token = Admin("enrol --device cam7");
  ASSERT_EQ(token.size(), 48u) << token;
  ASSERT_TRUE(server_->core().ReloadDevices().ok());
  auto s = ExpectAccepted("cam7", token);
  const std::string jpeg = RealJpeg();
  for (uint64_t sequence = 1; sequence <= 8; ++sequence) {
    FrameAck ack;
    ASSERT_TRUE(SendFrame(*s, sequence, jpeg, &ack));
    EXPECT_EQ(ack.code(), 0) << ack.message();
  }
  auto round = server_->core().RunRound("cam7");
  ASSERT_TRUE(round.ok()) << round.status().ToString();
  ASSERT_TRUE(round->published) << round->reason;
  // Version 1 reaches the open stream, chunk by chunk, with no restart of anything.
  ServerMessage m;
  bool complete = false;
  while (!complete && s->Next(&m))
    if (m.kind_case() == ServerMessage::kUpdate)
      complete = m.update().new_version() == 1 && m.update().chunk_index() + 1 == m.update().chunk_count();
  EXPECT_TRUE(complete) << "no version 1 for the enrolled camera";
  EXPECT_TRUE(s->Close().ok());
  // The inline device is untouched by the file.
  ExpectAccepted("cam1", "secret-token-1")->Close();
}

TEST_F(EnrolmentTest, ADisabledDeviceIsRefusedAndItsOpenStreamClosed) {
  StartServer();
  const std::string token = Enrol("cam7");
  auto s = ExpectAccepted("cam7", token);
  FrameAck ack;
  ASSERT_TRUE(SendFrame(*s, 1, RealJpeg(), &ack));
  EXPECT_EQ(ack.code(), 0) << ack.message();

  Admin("disable --device cam7");
  ASSERT_TRUE(server_->core().ReloadDevices().ok());
  const grpc::Status ended = s->End();
  EXPECT_EQ(ended.error_code(), grpc::StatusCode::UNAUTHENTICATED) << ended.error_message();
  ExpectRefused("cam7", token);
  EXPECT_EQ(server_->core().store().LastSequence("cam7"), 1u) << "a disabled device's frames stay";

  // Re-enabled, it continues where it was.
  Admin("enable --device cam7");
  ASSERT_TRUE(server_->core().ReloadDevices().ok());
  streamdistill::v1::Welcome welcome;
  auto again = ExpectAccepted("cam7", token, &welcome);
  EXPECT_EQ(welcome.last_stored_sequence(), 1u);
  // Removed from the file, it is refused like a disabled one and its stream closed too.
  EnrolledDevices none;
  ASSERT_TRUE(WriteDevicesFile(Env::Default(), devices_file_, none).ok());
  ASSERT_TRUE(server_->core().ReloadDevices().ok());
  EXPECT_EQ(again->End().error_code(), grpc::StatusCode::UNAUTHENTICATED);
  ExpectRefused("cam7", token);
}

TEST_F(EnrolmentTest, ABrokenDevicesFileKeepsTheDevicesAsTheyWere) {
  StartServer();
  const std::string token = Enrol("cam7");
  const std::string good = *Env::Default()->ReadFile(devices_file_);
  auto write = [&](const std::string& text) { ASSERT_TRUE(WriteFileDurably(Env::Default(), devices_file_, text).ok()); };

  // A new device next to a broken entry: neither applies.
  const std::string cam8 = "  cam8: {token_hash: \"" + FormatTokenHash(*HashToken("secret-token-8")) + "\"}\n";
  write(good + cam8 + "  cam9: {token: secret-token-9}\n");
  Status broken = server_->core().ReloadDevices();
  EXPECT_EQ(broken.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(broken.message().find("line 6"), std::string::npos) << broken.message();
  ExpectRefused("cam8", "secret-token-8");
  ExpectAccepted("cam7", token)->Close();

  write("devices: {cam7: [\n");  // not YAML
  EXPECT_FALSE(server_->core().ReloadDevices().ok());
  ExpectAccepted("cam7", token)->Close();

  write(good + "  cam1: {token_hash: \"" + FormatTokenHash(*HashToken("secret-token-x")) + "\"}\n");
  EXPECT_FALSE(server_->core().ReloadDevices().ok()) << "server.yaml's device must not be redefined";
  ExpectAccepted("cam1", "secret-token-1")->Close();

  fs::remove(devices_file_);  // gone by mistake: no device loses access
  EXPECT_FALSE(server_->core().ReloadDevices().ok());
  ExpectAccepted("cam7", token)->Close();

  write(good + cam8);
  ASSERT_TRUE(server_->core().ReloadDevices().ok());
  ExpectAccepted("cam8", "secret-token-8")->Close();
}

TEST_F(EnrolmentTest, ANewTokenInvalidatesTheOldOne) {
  StartServer();
  const std::string old_token = Enrol("cam7");
  auto s = ExpectAccepted("cam7", old_token);
  const std::string new_token = Admin("enrol --rotate --device cam7");
  ASSERT_NE(new_token, old_token);
  ASSERT_TRUE(server_->core().ReloadDevices().ok());
  EXPECT_EQ(s->End().error_code(), grpc::StatusCode::UNAUTHENTICATED);
  ExpectRefused("cam7", old_token);
  ExpectAccepted("cam7", new_token)->Close();
}

TEST_F(EnrolmentTest, TheServerNoticesAChangedFileByItself) {
  StartServer(/*poll_s=*/0.2);
  const std::string token = Admin("enrol --device cam7");
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(static_cast<int>(10000 * sd::testing::TimeScale()));
  bool accepted = false;
  while (!accepted && std::chrono::steady_clock::now() < deadline) {
    auto s = Open("cam7", token);
    ServerMessage m;
    accepted = s->Next(&m);
    if (accepted) s->Close(); else s->rw->Finish();
    if (!accepted) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(accepted) << "the enrolment was not picked up";
}

// The registry's options are checked when it is made, naming the field at fault.
TEST(DeviceRegistryTest, OptionsValidateNamingTheFieldFirst) {
  DeviceRegistry::Options options;
  options.inline_tokens["cam1"] = "secret-token-1";
  EXPECT_TRUE(options.Validate().ok());
  options.poll_s = -1;
  EXPECT_EQ(options.Validate().message().rfind("poll_s: must be >= 0", 0), 0u) << options.Validate().message();
  options.poll_s = 0;
  options.inline_tokens["../up"] = "secret-token-2";
  EXPECT_EQ(options.Validate().message().rfind("inline_tokens: ", 0), 0u) << options.Validate().message();
  auto registry = DeviceRegistry::Create(std::move(options), [](const std::string&) -> StatusOr<std::unique_ptr<Device>> {
    return Status::Internal("no device is made for options that are not valid");
  });
  ASSERT_FALSE(registry.ok());
  EXPECT_EQ(registry.status().message().rfind("device registry: inline_tokens: ", 0), 0u) << registry.status().message();
}

}  // namespace
}  // namespace sd
