// Pin, roll back and unpin over the real daemons: a streamdistill-server and a
// streamdistill-edge process on synthetic video, driven by the streamdistill-admin CLI the
// way an operator does. The edge must end up serving the pinned version 1, stay there while
// the server's rounds go on, and get the newest version back once unpinned. What the edge
// serves is read from the server's /api/devices (served_version: what the edge reported after
// applying an update).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>
#include <httplib.h>
#include <stdlib.h>

#include <sys/wait.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "tests/child_process.h"
#include "tests/daemon_test_util.h"

namespace sd {
namespace {

using namespace sd::testing;
using ::testing::HasSubstr;

constexpr char kAdminToken[] = "admin-e2e-test-admin-token";

class AdminEndToEndTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // ctest runs each test in its own process, at once: one folder each (the logs, the ports).
    dir_ = TempDir(std::string("admin_e2e_") + ::testing::UnitTest::GetInstance()->current_test_info()->name() + "_" +
                   std::to_string(::getpid()));
    grpc_port_ = FreePort();
    http_port_ = FreePort();
    std::string yaml = QuickOpenRounds(ServerYaml(dir_ + "/server"));
    yaml.replace(yaml.find("listen: 127.0.0.1:0"), 19, "listen: 127.0.0.1:" + std::to_string(grpc_port_));
    yaml.replace(yaml.find("http: {port: 0}"), 15,
                 "http: {port: " + std::to_string(http_port_) + ", admin_token: " + kAdminToken + "}");
    std::ofstream(dir_ + "/server.yaml") << yaml;
    std::ofstream(dir_ + "/edge.yaml") << EdgeYaml("cam1", "secret-token-1", grpc_port_, dir_ + "/cam1",
                                                   SyntheticUri(7));
    // The CLI reads the token from the environment, which the children inherit.
    ::setenv("STREAMDISTILL_ADMIN_TOKEN", kAdminToken, 1);
  }

  // cam1's row of GET /api/devices, or null while the server does not answer.
  nlohmann::json Cam1() {
    httplib::Client client("127.0.0.1", http_port_);
    client.set_connection_timeout(1);
    client.set_read_timeout(5);
    auto response = client.Get("/api/devices", {{"Authorization", std::string("Bearer ") + kAdminToken}});
    if (!response || response->status != 200) return nullptr;
    const auto body = nlohmann::json::parse(response->body);  // the loop's range must outlive it
    for (const auto& row : body["devices"])
      if (row["id"] == "cam1") return row;
    return nullptr;
  }
  int64_t Served(const nlohmann::json& row) {
    return row.is_null() || row["served_version"].is_null() ? -1 : row["served_version"].get<int64_t>();
  }

  // streamdistill-admin with `args` against the server; its exit code, its output in `output`.
  int Admin(const std::vector<std::string>& args, std::string* output = nullptr) {
    std::vector<std::string> argv = {std::string(SD_BINARY_DIR) + "/streamdistill-admin"};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.push_back("--server");
    argv.push_back("http://127.0.0.1:" + std::to_string(http_port_));
    const std::string log = dir_ + "/admin.log";
    std::filesystem::remove(log);
    ChildProcess admin(argv, log);
    EXPECT_TRUE(admin.started());
    const auto status = admin.WaitExit(std::chrono::seconds(30));
    if (output) *output = admin.Log();
    return status && WIFEXITED(*status) ? WEXITSTATUS(*status) : -1;
  }

  std::string dir_;
  int grpc_port_ = 0, http_port_ = 0;
};

TEST_F(AdminEndToEndTest, PinnedEdgeServesVersionOneThroughRoundsAndUnpinnedGetsTheNewest) {
  ChildProcess server({std::string(SD_BINARY_DIR) + "/streamdistill-server", "--config", dir_ + "/server.yaml"},
                      dir_ + "/server.log");
  ChildProcess edge({std::string(SD_BINARY_DIR) + "/streamdistill-edge", "--config", dir_ + "/edge.yaml"},
                    dir_ + "/edge.log");
  ASSERT_TRUE(server.started() && edge.started());
  // Rounds of 40 steps took up to 2 minutes under ASan on 2 loaded cores (CI: 74 and 117 s);
  // these are 10 steps (QuickOpenRounds), and the waits still allow for slow ones.
  ASSERT_TRUE(WaitFor([&] { return Served(Cam1()) >= 2; }, 150))
      << "the edge never served version 2\n" << server.Log();

  std::string output;
  ASSERT_EQ(Admin({"pin", "cam1", "1"}, &output), 0) << output;
  EXPECT_THAT(output, HasSubstr("pinned to v1"));
  ASSERT_TRUE(WaitFor([&] { return Served(Cam1()) == 1; }, 20)) << "the edge did not go back to version 1\n"
                                                                  << server.Log();
  // Rounds go on while pinned; their versions are stored but not sent.
  const int64_t newest_at_pin = Cam1()["version"].get<int64_t>();
  ASSERT_TRUE(WaitFor([&] { return Cam1()["version"].get<int64_t>() > newest_at_pin; }, 90))
      << "no round published while pinned\n" << server.Log();
  std::this_thread::sleep_for(std::chrono::seconds(1));  // an update in flight would land by now
  EXPECT_EQ(Served(Cam1()), 1);

  // Nothing is older than version 1: the CLI says why and fails.
  EXPECT_EQ(Admin({"rollback", "cam1"}, &output), 1);
  EXPECT_THAT(output, HasSubstr("HTTP 409"));
  EXPECT_THAT(output, HasSubstr("no earlier version"));

  ASSERT_EQ(Admin({"unpin", "cam1"}, &output), 0) << output;
  ASSERT_TRUE(WaitFor(
      [&] {
        const auto row = Cam1();
        return Served(row) > 1 && Served(row) >= row["version"].get<int64_t>() - 1;
      },
      30))
      << "the unpinned edge did not get the newest version\n" << server.Log();
  ASSERT_EQ(Admin({"list"}, &output), 0) << output;
  EXPECT_THAT(output, HasSubstr("cam1  serves v"));
  EXPECT_THAT(output, ::testing::Not(HasSubstr("pinned")));
  EXPECT_THAT(server.Log(), HasSubstr("admin action by admin via HTTP: pin device cam1 to version 1: done"));

  // The token from a file instead of the environment; without either, a clear error.
  ::unsetenv("STREAMDISTILL_ADMIN_TOKEN");
  EXPECT_EQ(Admin({"list"}, &output), 1);
  EXPECT_THAT(output, HasSubstr("no admin token"));
  std::ofstream(dir_ + "/admin_token") << kAdminToken << "\n";
  EXPECT_EQ(Admin({"list", "--admin-token-file", dir_ + "/admin_token"}, &output), 0) << output;
  std::ofstream(dir_ + "/wrong_token") << "admin-e2e-test-admin-tokeX\n";
  EXPECT_EQ(Admin({"list", "--admin-token-file", dir_ + "/wrong_token"}, &output), 1);
  EXPECT_THAT(output, HasSubstr("HTTP 401"));
}

TEST_F(AdminEndToEndTest, APausedEdgeGetsNoRoundWhileItsFramesArriveAndResumeTrainsItAgain) {
  ChildProcess server({std::string(SD_BINARY_DIR) + "/streamdistill-server", "--config", dir_ + "/server.yaml"},
                      dir_ + "/server.log");
  ChildProcess edge({std::string(SD_BINARY_DIR) + "/streamdistill-edge", "--config", dir_ + "/edge.yaml"},
                    dir_ + "/edge.log");
  ASSERT_TRUE(server.started() && edge.started());
  ASSERT_TRUE(WaitFor([&] { return Served(Cam1()) >= 1; }, 90)) << "the edge never served version 1\n"
                                                                 << server.Log();
  std::string output;
  ASSERT_EQ(Admin({"pause", "cam1"}, &output), 0) << output;
  // A round that had begun before the pause may still publish; none begins after it.
  std::this_thread::sleep_for(std::chrono::seconds(2));
  ASSERT_TRUE(WaitFor([&] { return Cam1()["round_running"].is_null() || !Cam1()["round_running"].get<bool>(); }, 60));
  const nlohmann::json paused = Cam1();
  ASSERT_TRUE(paused["paused"].get<bool>());
  const int64_t version = paused["version"].get<int64_t>();
  const int64_t frames = paused["frames"].get<int64_t>();
  ASSERT_TRUE(WaitFor([&] { return Cam1()["frames"].get<int64_t>() >= frames + 10; }, 60))
      << "the paused device's frames stopped arriving\n" << server.Log();
  EXPECT_EQ(Cam1()["version"].get<int64_t>(), version) << "a paused device was trained\n" << server.Log();
  // Train now is refused while paused, with the reason.
  EXPECT_EQ(Admin({"train", "cam1"}, &output), 1);
  EXPECT_THAT(output, HasSubstr("paused"));

  ASSERT_EQ(Admin({"resume", "cam1"}, &output), 0) << output;
  ASSERT_EQ(Admin({"train", "cam1"}, &output), 0) << output;
  ASSERT_TRUE(WaitFor([&] { return Cam1()["version"].get<int64_t>() > version; }, 90))
      << "no round after resume\n" << server.Log();
  EXPECT_FALSE(Cam1()["paused"].get<bool>());
  EXPECT_THAT(server.Log(), HasSubstr("admin action by admin via HTTP: pause training of device cam1: done"));
  EXPECT_THAT(server.Log(), HasSubstr("admin action by admin via HTTP: resume training of device cam1: done"));
}

}  // namespace
}  // namespace sd
