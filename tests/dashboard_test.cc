// The server's dashboard (server/dashboard.h) as an operator meets it: a real Server with a
// device that has stored frames and published versions, its JSON and images read over HTTP,
// and the page rendered by Debian's headless Chromium (scripts/setup.sh installs it), whose
// DOM after the scripts ran must list the devices, chart the versions, show the frames and
// carry no script error.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>
#include <httplib.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>

#include "common/base/env.h"
#include "server/server.h"
#include "tests/child_process.h"
#include "tests/daemon_test_util.h"
#include "tests/server_core_test_util.h"

namespace sd {
namespace {

using namespace sd::testing;
using ::testing::HasSubstr;

constexpr char kAdminToken[] = "dashboard-test-admin-token";
constexpr char kChromium[] = "/usr/bin/chromium";

// A server whose cam1 has 16 stored frames (4 held out) and at least one published version;
// cam2 has neither. Rounds are run by hand (training.background false), so the state is fixed
// by the time a test reads it.
class DashboardTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // ctest runs each test of the suite in its own process, several at once: one folder each.
    dir_ = new std::string(TempDir("dashboard_" + std::to_string(::getpid())));
    const std::string& dir = *dir_;
    auto config = ParseServerConfig(ServerYaml(dir + "/server"), "dashboard.yaml");
    ASSERT_TRUE(config.ok()) << config.status().ToString();
    config->admin_token = kAdminToken;  // http.admin_token: server_config_test reads it from YAML
    config->train_in_background = false;
    config->round.iterations = 5;  // a version is what the page needs, not a good one
    const SyntheticScene scene = TestScene(21);
    auto server = Server::Start(*config, Oracle(scene));
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(server).value().release();
    SendFrames(server_->core(), scene, {"cam1"}, 16);
    for (int i = 0; i < 2; ++i) {
      auto round = server_->core().RunRound("cam1");
      ASSERT_TRUE(round.ok()) << round.status().ToString();
    }
    ASSERT_GE(server_->core().Counters("cam1").published, 1) << "no round published; the charts would be empty";
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
    if (dir_) std::filesystem::remove_all(*dir_);
    delete dir_;
    dir_ = nullptr;
  }

  void SetUp() override { ASSERT_NE(server_, nullptr) << "the server did not start"; }

  httplib::Result Post(const std::string& path, const std::string& body = "") {
    httplib::Client client("127.0.0.1", server_->http_port());
    client.set_read_timeout(10);
    return client.Post(path, {{"Authorization", std::string("Bearer ") + kAdminToken}}, body, "application/json");
  }

  httplib::Result Get(const std::string& path, bool with_token = true) {
    httplib::Client client("127.0.0.1", server_->http_port());
    client.set_read_timeout(10);
    httplib::Headers headers;
    if (with_token) headers.emplace("Authorization", std::string("Bearer ") + kAdminToken);
    return client.Get(path, headers);
  }

  static Server* server_;
  static std::string* dir_;
};

Server* DashboardTest::server_ = nullptr;
std::string* DashboardTest::dir_ = nullptr;

TEST_F(DashboardTest, EveryDashboardRouteRefusesAMissingOrWrongToken) {
  for (const std::string path : {"/dashboard", "/api/devices", "/api/devices/cam1", "/api/devices/cam1/frames",
                                 "/api/devices/cam1/frames/1.jpg"}) {
    auto response = Get(path, /*with_token=*/false);
    ASSERT_TRUE(response) << path;
    EXPECT_EQ(response->status, 401) << path;
    EXPECT_THAT(response->body, ::testing::Not(HasSubstr("cam1"))) << path;
    httplib::Client client("127.0.0.1", server_->http_port());
    auto wrong = client.Get(path, {{"Authorization", "Bearer dashboard-test-admin-tokeX"}});
    ASSERT_TRUE(wrong) << path;
    EXPECT_EQ(wrong->status, 401) << path;
    auto wrong_query = client.Get(path + "?token=dashboard-test-admin-tokeX");
    ASSERT_TRUE(wrong_query) << path;
    EXPECT_EQ(wrong_query->status, 401) << path;
  }
  // Prometheus scrapes without a token.
  auto metrics = Get("/metrics", /*with_token=*/false);
  ASSERT_TRUE(metrics);
  EXPECT_EQ(metrics->status, 200);
}

TEST_F(DashboardTest, ThePageOpensWithTheTokenInItsQuery) {
  httplib::Client client("127.0.0.1", server_->http_port());
  auto page = client.Get(std::string("/dashboard?token=") + kAdminToken);
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200);
  EXPECT_THAT(page->get_header_value("Content-Type"), HasSubstr("text/html"));
  EXPECT_THAT(page->body, HasSubstr("<table id=\"fleet\">"));
}

TEST_F(DashboardTest, TheDeviceListHasEveryDeviceWithItsVersionAndFrames) {
  auto response = Get("/api/devices");
  ASSERT_TRUE(response);
  ASSERT_EQ(response->status, 200) << response->body;
  EXPECT_EQ(response->get_header_value("Content-Type"), "application/json");
  const auto body = nlohmann::json::parse(response->body);
  ASSERT_EQ(body["devices"].size(), 2u) << body.dump();
  const auto& cam1 = body["devices"][0];
  const auto& cam2 = body["devices"][1];
  EXPECT_EQ(cam1["id"], "cam1");
  EXPECT_EQ(cam2["id"], "cam2");
  EXPECT_EQ(cam1["frames"], 16);
  EXPECT_EQ(cam1["version"], server_->core().Counters("cam1").published);
  EXPECT_EQ(cam1["connected"], false);
  EXPECT_TRUE(cam1["served_version"].is_null());  // no stream has said what it runs
  EXPECT_TRUE(cam1["map50"].is_number()) << cam1.dump();
  EXPECT_EQ(cam1["rounds"], 2);
  EXPECT_TRUE(cam1["last_round"]["reason"].is_string());
  EXPECT_EQ(cam2["frames"], 0);
  EXPECT_EQ(cam2["version"], 0);
  EXPECT_TRUE(cam2["map50"].is_null());
  EXPECT_TRUE(cam2["last_round"].is_null());
}

TEST_F(DashboardTest, ADevicesDetailHasItsVersionsAndRecentRounds) {
  auto response = Get("/api/devices/cam1");
  ASSERT_TRUE(response);
  ASSERT_EQ(response->status, 200) << response->body;
  const auto body = nlohmann::json::parse(response->body);
  const int64_t published = server_->core().Counters("cam1").published;
  ASSERT_EQ(static_cast<int64_t>(body["versions"].size()), published);
  EXPECT_EQ(body["versions"][0]["version"], 1);
  EXPECT_GT(body["versions"][0]["created_ms"].get<int64_t>(), 0);
  ASSERT_EQ(body["recent_rounds"].size(), 2u);
  for (const auto& round : body["recent_rounds"]) EXPECT_FALSE(round["reason"].get<std::string>().empty());
  auto unknown = Get("/api/devices/cam9");
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->status, 404);
}

TEST_F(DashboardTest, FramesListTheTeachersBoxesAndServeTheStoredJpeg) {
  auto response = Get("/api/devices/cam1/frames?n=5");
  ASSERT_TRUE(response);
  ASSERT_EQ(response->status, 200) << response->body;
  const auto body = nlohmann::json::parse(response->body);
  ASSERT_EQ(body["frames"].size(), 5u);
  EXPECT_EQ(body["frames"][0]["sequence"], 16);  // newest first
  EXPECT_EQ(body["frames"][4]["sequence"], 12);
  bool any_box = false;
  for (const auto& frame : body["frames"]) any_box = any_box || !frame["labels"].empty();
  EXPECT_TRUE(any_box) << "the oracle labels every object of the scene";
  auto image = Get(body["frames"][0]["url"].get<std::string>());
  ASSERT_TRUE(image);
  ASSERT_EQ(image->status, 200);
  EXPECT_EQ(image->get_header_value("Content-Type"), "image/jpeg");
  ASSERT_GT(image->body.size(), 2u);
  EXPECT_EQ(image->body.substr(0, 2), "\xFF\xD8");  // the JPEG start-of-image marker
  auto missing = Get("/api/devices/cam1/frames/999.jpg");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
  auto too_many = Get("/api/devices/cam1/frames?n=51");
  ASSERT_TRUE(too_many);
  EXPECT_EQ(too_many->status, 400);
}

// Headless Chromium on the page in a window of `size` ("1280,900"): `extra` are its output
// flags (--dump-dom, --screenshot); returns what it wrote to stdout and stderr.
std::string RunChromium(const std::string& dir, int port, const std::string& size, const std::vector<std::string>& extra) {
  std::vector<std::string> argv = {kChromium, "--headless=new", "--no-sandbox", "--disable-gpu",
                                   "--user-data-dir=" + dir + "/profile", "--virtual-time-budget=8000",
                                   "--window-size=" + size};
  argv.insert(argv.end(), extra.begin(), extra.end());
  argv.push_back("http://127.0.0.1:" + std::to_string(port) + "/dashboard?token=" + kAdminToken);
  const std::string log = dir + "/chromium.log";
  std::filesystem::remove(log);
  ChildProcess chromium(argv, log);
  EXPECT_TRUE(chromium.started());
  const auto status = chromium.WaitExit(std::chrono::seconds(static_cast<int>(60 * TimeScale())));
  EXPECT_TRUE(status.has_value()) << "chromium did not finish within 60 s";
  return chromium.Log();
}

int Count(const std::string& text, const std::string& what) {
  int n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + what.size())) ++n;
  return n;
}

TEST_F(DashboardTest, ChromiumRendersTheFleetChartsAndFramesWithoutScriptErrors) {
  ASSERT_TRUE(std::filesystem::exists(kChromium))
      << kChromium << " is missing: scripts/setup.sh installs the chromium package this test needs";
  const std::string dir = TempDir("dashboard_browser");
  // The table shows an admin's overrides (restored below, for the tests after this one).
  ASSERT_EQ(Post("/api/devices/cam1/pin", R"({"version": 1})")->status, 200);
  ASSERT_EQ(Post("/api/devices/cam2/pause")->status, 200);
  const std::string dom = RunChromium(dir, server_->http_port(), "1280,900", {"--dump-dom"});
  ASSERT_EQ(Post("/api/devices/cam1/unpin")->status, 200);
  ASSERT_EQ(Post("/api/devices/cam2/resume")->status, 200);
  EXPECT_THAT(dom, HasSubstr("<span class=\"pinned\">pinned v1 </span>")) << dom;
  EXPECT_THAT(dom, HasSubstr("<span class=\"paused\">paused</span>")) << dom;
  EXPECT_THAT(dom, HasSubstr("<button data-action=\"pause\">"));
  ASSERT_THAT(dom, HasSubstr("</html>")) << dom;
  EXPECT_THAT(dom, HasSubstr("data-device=\"cam1\""));
  EXPECT_THAT(dom, HasSubstr("data-device=\"cam2\""));
  // The page fills #errors from window.onerror and failed requests; empty means none.
  EXPECT_THAT(dom, HasSubstr("<section id=\"errors\"></section>")) << dom;
  EXPECT_THAT(dom, HasSubstr("<span id=\"status\">updated "));
  EXPECT_EQ(Count(dom, "class=\"point\""), server_->core().Counters("cam1").published) << dom;
  EXPECT_EQ(Count(dom, "<figure data-sequence="), 8);  // the page asks for the default 8
  EXPECT_GT(Count(dom, "<rect "), 0) << "no teacher box drawn over a frame";

  // The screenshot docs/operations.md shows (copied to docs/img/dashboard.png by hand), and
  // one at a phone's size, to look at after a change of the page's layout.
  for (const auto& [name, size] : {std::pair<std::string, std::string>{"dashboard.png", "1280,900"},
                                   {"dashboard_phone.png", "390,844"}}) {
    const std::string png = dir + "/" + name;
    RunChromium(dir, server_->http_port(), size, {"--screenshot=" + png});
    ASSERT_TRUE(std::filesystem::exists(png)) << png;
    EXPECT_GT(std::filesystem::file_size(png), 10000u) << png;
  }
}

}  // namespace
}  // namespace sd

namespace sd {
namespace {

using namespace sd::testing;

// http.admin_token_file: a fresh install gets a dashboard without a secret in its config. The
// first start makes the token (random, mode 0600); later starts keep it, so bookmarks and
// streamdistill-admin keep working across restarts.
TEST(AdminTokenFileTest, TheFirstStartMakesATokenOnlyItsOwnerCanReadAndLaterStartsKeepIt) {
  const std::string dir = TempDir("admin_token_file_" + std::to_string(::getpid()));
  auto config = ParseServerConfig(ServerYaml(dir + "/server"), "admin_token_file.yaml");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  config->admin_token_file = dir + "/secrets/admin_token";
  config->train_in_background = false;
  std::string token;
  for (int start = 0; start < 2; ++start) {
    SCOPED_TRACE("start " + std::to_string(start));
    auto server = Server::Start(*config, Oracle(TestScene(3)));
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    struct stat st {};
    ASSERT_EQ(::stat(config->admin_token_file.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    auto stored = Env::Default()->ReadFile(config->admin_token_file);
    ASSERT_TRUE(stored.ok());
    ASSERT_TRUE(std::regex_match(*stored, std::regex("[0-9a-f]{32}\n"))) << *stored;
    if (start == 0) token = stored->substr(0, 32);
    EXPECT_EQ(stored->substr(0, 32), token) << "a restart must keep the token";
    httplib::Client client("127.0.0.1", (*server)->http_port());
    client.set_read_timeout(10);
    auto with_token = client.Get("/api/devices", {{"Authorization", "Bearer " + token}});
    ASSERT_TRUE(with_token);
    EXPECT_EQ(with_token->status, 200);
    auto with_other = client.Get("/api/devices", {{"Authorization", "Bearer 0123456789abcdef0123456789abcdef"}});
    ASSERT_TRUE(with_other);
    EXPECT_EQ(with_other->status, 401);
  }
  std::filesystem::remove_all(dir);
}

TEST(AdminTokenFileTest, AShortTokenInTheFileOrBothKeysSetAreRefused) {
  const std::string dir = TempDir("admin_token_short_" + std::to_string(::getpid()));
  auto config = ParseServerConfig(ServerYaml(dir + "/server"), "admin_token_file.yaml");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  config->admin_token_file = dir + "/admin_token";
  config->train_in_background = false;
  ASSERT_TRUE(WriteFileDurably(Env::Default(), config->admin_token_file, "short\n").ok());
  auto server = Server::Start(*config, Oracle(TestScene(3)));
  ASSERT_FALSE(server.ok());
  EXPECT_THAT(server.status().message(), ::testing::HasSubstr("at least 16 characters"));

  auto both = ParseServerConfig("http: {admin_token: 0123456789abcdef0123, admin_token_file: t}\n", "both.yaml");
  ASSERT_FALSE(both.ok());
  EXPECT_THAT(both.status().message(), ::testing::HasSubstr("not both"));
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace sd
