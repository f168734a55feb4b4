// The admin actions (server/dashboard.h: pin, rollback, unpin, train, pause, resume) on a real
// Server over its HTTP port: what each does to the device's deployment and to the scheduler,
// their errors, /metrics, and that the state survives a restart. Rounds are run by hand
// (training.background false), so each step's state is fixed when the test reads it; the
// daemons themselves are driven in admin_e2e_test.cc.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "server/server.h"
#include "tests/daemon_test_util.h"
#include "tests/server_core_test_util.h"

namespace sd {
namespace {

using namespace sd::testing;
using ::testing::HasSubstr;

constexpr char kAdminToken[] = "admin-actions-test-admin-token";

class AdminActionsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // ctest runs each test in its own process, several at once: one folder each.
    dir_ = TempDir(std::string("admin_") + ::testing::UnitTest::GetInstance()->current_test_info()->name() + "_" +
                   std::to_string(::getpid()));
    Start();
  }
  void TearDown() override {
    server_.reset();
    std::filesystem::remove_all(dir_);
  }

  void Start() {
    auto config = ParseServerConfig(QuickOpenRounds(ServerYaml(dir_ + "/server")), "admin_actions.yaml");
    ASSERT_TRUE(config.ok()) << config.status().ToString();
    config->admin_token = kAdminToken;
    config->train_in_background = false;
    config->round.iterations = 3;
    auto server = Server::Start(*config, Oracle(scene_));
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(server).value();
  }

  // cam1 with `frames` stored frames and `versions` published versions.
  void Publish(int versions, int frames = 16) {
    SendFrames(core(), scene_, {"cam1"}, frames);
    for (int i = 0; i < versions; ++i) ASSERT_TRUE(core().RunRound("cam1").ok());
    ASSERT_EQ(core().Counters("cam1").published, versions);
  }

  httplib::Result Post(const std::string& path, const std::string& body = "", const std::string& token = kAdminToken) {
    httplib::Client client("127.0.0.1", server_->http_port());
    client.set_read_timeout(10);
    return client.Post(path, {{"Authorization", "Bearer " + token}}, body, "application/json");
  }
  nlohmann::json Row(const std::string& device) {
    httplib::Client client("127.0.0.1", server_->http_port());
    auto response = client.Get("/api/devices", {{"Authorization", std::string("Bearer ") + kAdminToken}});
    EXPECT_TRUE(response && response->status == 200);
    if (!response) return nullptr;
    const auto body = nlohmann::json::parse(response->body);  // the loop's range must outlive it
    for (const auto& row : body["devices"])
      if (row["id"] == device) return row;
    return nullptr;
  }
  std::shared_ptr<const ModelUpdate> Deployed(const std::string& device) {
    auto latest = core().LatestUpdate(device);
    EXPECT_TRUE(latest.ok()) << latest.status().ToString();
    return latest.ok() ? *latest : nullptr;
  }

  ServerCore& core() { return server_->core(); }

  const SyntheticScene scene_ = TestScene(31);
  std::string dir_;
  std::unique_ptr<Server> server_;
};

TEST_F(AdminActionsTest, APinDeploysTheStoredVersionAndKeepsItWhileRoundsGoOn) {
  Publish(2);
  auto pinned = Post("/api/devices/cam1/pin", R"({"version": 1})");
  ASSERT_TRUE(pinned);
  ASSERT_EQ(pinned->status, 200) << pinned->body;
  EXPECT_EQ(nlohmann::json::parse(pinned->body)["pinned_version"], 1);
  auto deployed = Deployed("cam1");
  ASSERT_TRUE(deployed);
  EXPECT_EQ(deployed->new_version, 1u);
  EXPECT_TRUE(deployed->pinned);
  EXPECT_EQ(deployed->base_version, 0u) << "a pin is a full model";

  // Rounds go on and are stored; the device is still given version 1.
  ASSERT_TRUE(core().RunRound("cam1").ok());
  EXPECT_EQ(core().Counters("cam1").published, 3);
  EXPECT_EQ(Deployed("cam1")->new_version, 1u);
  const auto row = Row("cam1");
  EXPECT_EQ(row["version"], 3);
  EXPECT_EQ(row["pinned_version"], 1);

  auto unpinned = Post("/api/devices/cam1/unpin");
  ASSERT_TRUE(unpinned);
  ASSERT_EQ(unpinned->status, 200) << unpinned->body;
  EXPECT_TRUE(nlohmann::json::parse(unpinned->body)["pinned_version"].is_null());
  EXPECT_EQ(Deployed("cam1")->new_version, 3u);
  EXPECT_FALSE(Deployed("cam1")->pinned);
}

TEST_F(AdminActionsTest, RollbackPinsTheVersionBeforeTheNewest) {
  Publish(3);
  auto rolled = Post("/api/devices/cam1/rollback");
  ASSERT_TRUE(rolled);
  ASSERT_EQ(rolled->status, 200) << rolled->body;
  EXPECT_EQ(nlohmann::json::parse(rolled->body)["pinned_version"], 2);
  EXPECT_EQ(Deployed("cam1")->new_version, 2u);
  // The device says it serves version 2 now: the next rollback goes to 1, then nowhere.
  core().SetServedVersion("cam1", 2);
  rolled = Post("/api/devices/cam1/rollback");
  ASSERT_TRUE(rolled);
  EXPECT_EQ(nlohmann::json::parse(rolled->body)["pinned_version"], 1);
  core().SetServedVersion("cam1", 1);
  rolled = Post("/api/devices/cam1/rollback");
  ASSERT_TRUE(rolled);
  EXPECT_EQ(rolled->status, 409) << rolled->body;
  EXPECT_THAT(rolled->body, HasSubstr("no earlier version"));
}

TEST_F(AdminActionsTest, ErrorsAreMappedToHttpStatuses) {
  Publish(1);
  auto no_token = Post("/api/devices/cam1/pause", "", "");
  ASSERT_TRUE(no_token);
  EXPECT_EQ(no_token->status, 401);
  auto wrong_token = Post("/api/devices/cam1/pause", "", "admin-actions-test-admin-tokeX");
  ASSERT_TRUE(wrong_token);
  EXPECT_EQ(wrong_token->status, 401);
  EXPECT_FALSE(core().State("cam1")->admin.paused);

  auto unknown_device = Post("/api/devices/cam9/pin", R"({"version": 1})");
  ASSERT_TRUE(unknown_device);
  EXPECT_EQ(unknown_device->status, 404);
  auto unknown_version = Post("/api/devices/cam1/pin", R"({"version": 7})");
  ASSERT_TRUE(unknown_version);
  EXPECT_EQ(unknown_version->status, 404);
  EXPECT_THAT(unknown_version->body, HasSubstr("no stored version 7"));
  for (const std::string body : {"", "{", R"({"version": 0})", R"({"version": "1"})", R"([1])"}) {
    auto bad = Post("/api/devices/cam1/pin", body);
    ASSERT_TRUE(bad) << body;
    EXPECT_EQ(bad->status, 400) << body;
  }
  auto no_frames = Post("/api/devices/cam2/train");
  ASSERT_TRUE(no_frames);
  EXPECT_EQ(no_frames->status, 409);
  EXPECT_THAT(no_frames->body, HasSubstr("no training frames"));
  EXPECT_FALSE(core().State("cam1")->admin.pinned_version);
}

TEST_F(AdminActionsTest, PausedDeviceIsNotScheduledAndTrainRunsItBelowItsThresholds) {
  auto paused = Post("/api/devices/cam1/pause");
  ASSERT_TRUE(paused);
  ASSERT_EQ(paused->status, 200) << paused->body;
  EXPECT_EQ(nlohmann::json::parse(paused->body)["paused"], true);
  // Past its trigger (8 frames): still received and stored, never scheduled.
  SendFrames(core(), scene_, {"cam1"}, 16);
  EXPECT_EQ(core().Counters("cam1").frames_stored, 16);
  auto round = core().RunScheduledRound();
  ASSERT_TRUE(round.ok());
  EXPECT_FALSE(round->has_value());
  auto refused = Post("/api/devices/cam1/train");
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 409);
  EXPECT_THAT(refused->body, HasSubstr("paused"));

  auto resumed = Post("/api/devices/cam1/resume");
  ASSERT_TRUE(resumed);
  ASSERT_EQ(resumed->status, 200);
  round = core().RunScheduledRound();
  ASSERT_TRUE(round.ok()) << round.status().ToString();
  EXPECT_TRUE(round->has_value());
  // No new frame since that round: nothing due, until an admin asks.
  round = core().RunScheduledRound();
  ASSERT_TRUE(round.ok());
  EXPECT_FALSE(round->has_value());
  auto train = Post("/api/devices/cam1/train");
  ASSERT_TRUE(train);
  ASSERT_EQ(train->status, 200) << train->body;
  round = core().RunScheduledRound();
  ASSERT_TRUE(round.ok()) << round.status().ToString();
  EXPECT_TRUE(round->has_value());
}

TEST_F(AdminActionsTest, PinAndPauseSurviveARestartAndShowInMetrics) {
  Publish(2);
  ASSERT_EQ(Post("/api/devices/cam1/pin", R"({"version": 1})")->status, 200);
  ASSERT_EQ(Post("/api/devices/cam1/pause")->status, 200);
  server_.reset();
  Start();
  ASSERT_NE(server_, nullptr);
  const DeviceState state = *core().State("cam1");
  EXPECT_EQ(state.admin.pinned_version, 1u);
  EXPECT_TRUE(state.admin.paused);
  EXPECT_EQ(state.version, 2u);
  EXPECT_EQ(Deployed("cam1")->new_version, 1u);
  EXPECT_TRUE(Deployed("cam1")->pinned);
  auto train = Post("/api/devices/cam1/train");
  ASSERT_TRUE(train);
  EXPECT_EQ(train->status, 409) << "still paused after the restart: " << train->body;

  httplib::Client client("127.0.0.1", server_->http_port());
  auto metrics = client.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_THAT(metrics->body, HasSubstr("streamdistill_server_device_pinned_version{device=\"cam1\"} 1"));
  EXPECT_THAT(metrics->body, HasSubstr("streamdistill_server_device_paused{device=\"cam1\"} 1"));
  EXPECT_THAT(metrics->body, HasSubstr("streamdistill_server_device_paused{device=\"cam2\"} 0"));
}

}  // namespace
}  // namespace sd
