// Privacy masks (issue 27): polygons and faces are filled on the edge before a frame leaves the
// box; the server stores which masks a frame went through and refuses frames without the
// declaration from a device marked `privacy: required`. The checks are on decoded pixels of
// what the server stored, serves on its dashboard and exports.
#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>
#include <sqlite3.h>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "edge/edge_agent.h"
#include "edge/frame_polygon.h"
#include "edge/privacy_filter.h"
#include "server/dataset_export.h"
#include "server/server.h"
#include "tests/child_process.h"
#include "tests/daemon_test_util.h"

namespace sd {
namespace {

using namespace sd::testing;
using nlohmann::json;

constexpr char kAdminToken[] = "privacy-test-admin-token";
// A frame with a face: messi5.jpg (548x342) from opencv-doc; Messi's face is at this box.
const char kFaceImage[] = "/usr/share/doc/opencv-doc/examples/data/messi5.jpg";
const cv::Rect kFace(226, 94, 37, 37);
// The masked polygon (normalised) and, well inside it, the checkerboard painted there.
constexpr char kMaskYaml[] = "[[0.70, 0.05], [0.95, 0.05], [0.95, 0.40], [0.70, 0.40]]";
const cv::Rect kPattern(400, 30, 100, 90);

cv::Mat TestFrame() {
  cv::Mat frame = cv::imread(kFaceImage, cv::IMREAD_COLOR);
  EXPECT_FALSE(frame.empty()) << kFaceImage << " is missing (scripts/setup.sh installs opencv-doc)";
  if (frame.empty()) return frame;
  for (int y = kPattern.y; y < kPattern.br().y; ++y)
    for (int x = kPattern.x; x < kPattern.br().x; ++x)
      frame.at<cv::Vec3b>(y, x) = ((x / 8 + y / 8) % 2) ? cv::Vec3b(255, 255, 255) : cv::Vec3b(0, 0, 0);
  return frame;
}

// The grey levels of a region: mean, spread (standard deviation) and maximum.
cv::Vec3d GreyStats(const cv::Mat& bgr, const cv::Rect& region) {
  cv::Mat gray;
  cv::cvtColor(bgr(region), gray, cv::COLOR_BGR2GRAY);
  cv::Scalar mean, spread;
  cv::meanStdDev(gray, mean, spread);
  double max = 0;
  cv::minMaxLoc(gray, nullptr, &max);
  return {mean[0], spread[0], max};
}

// A region that was filled: dark and flat, whatever JPEG did to it. The checkerboard and the
// face in the original have a spread of tens of grey levels (checked in PrivacyFilterTest).
void ExpectFilled(const cv::Mat& bgr, const cv::Rect& region, const std::string& what) {
  ASSERT_TRUE(cv::Rect(0, 0, bgr.cols, bgr.rows).contains(region.br() - cv::Point(1, 1))) << what;
  const cv::Vec3d stats = GreyStats(bgr, region);
  EXPECT_LT(stats[0], 8) << what;
  EXPECT_LT(stats[1], 4) << what;
  EXPECT_LT(stats[2], 48) << what;
}

cv::Mat Decode(const std::string& jpeg) {
  return cv::imdecode(std::vector<uchar>(jpeg.begin(), jpeg.end()), cv::IMREAD_COLOR);
}

std::string PrivacyYaml(const std::string& faces = "{enabled: true, redact: fill}") {
  return std::string("privacy:\n  masks:\n    - {name: neighbours-window, polygon: ") + kMaskYaml +
         "}\n  faces: " + faces + "\n";
}

std::string EdgeYamlFor(const std::string& device, int port, const std::string& dir, const std::string& folder,
                        const std::string& extra) {
  return EdgeYaml(device, "secret-token-" + device.substr(3), port, dir + "/" + device, folder, extra);
}

TEST(FramePolygonTest, BadPolygonsAreRefusedWithTheirKey) {
  const struct {
    std::string polygon, problem;
  } cases[] = {
      {"[[0.1, 0.1], [0.5, 0.1]]", "at least 3 corners"},
      {"[[0.1, 0.1], [1.5, 0.1], [0.5, 0.5]]", "outside the frame"},
      {"[[-3, 0], [10, 0], [10, 10]], units: pixels", "outside the frame"},
      {"[[0.1, 0.1], [0.5, 0.5], [0.5, 0.1], [0.1, 0.5]]", "self-intersecting"},  // a bow tie
      {"[[0.1, 0.1], [0.5, 0.1], [0.3, 0.1]]", "fold back"},
      {"[[0.1, 0.1, 0.2], [0.5, 0.1], [0.3, 0.4]]", "[x, y]"},
  };
  for (const auto& c : cases) {
    const std::string yaml = EdgeYaml("cam1", "secret-token-1", 1, "/tmp/unused", "synthetic:seed=1") +
                             "privacy:\n  masks:\n    - {name: a, polygon: " + c.polygon + "}\n";
    auto config = ParseEdgeConfig(yaml, "edge.yaml");
    ASSERT_FALSE(config.ok()) << c.polygon;
    EXPECT_NE(config.status().message().find("privacy.masks[0]"), std::string::npos) << "[" << config.status().message() << "]";
    EXPECT_NE(config.status().message().find(c.problem), std::string::npos) << config.status().message();
  }
  // A pixel polygon is checked against the frame when it comes: one beyond it fails that frame.
  FramePolygon pixels;
  pixels.normalized = false;
  pixels.points = {{10, 10}, {600, 10}, {300, 200}};
  ASSERT_TRUE(pixels.Validate().ok());
  EXPECT_EQ(pixels.Fits(cv::Size(548, 342)).code(), Status::Code::kFailedPrecondition);
  EXPECT_TRUE(pixels.Fits(cv::Size(640, 480)).ok());
}

TEST(FramePolygonTest, UnreadableCascadeAndBadNamesAreRefusedWithTheirKey) {
  const std::string base = EdgeYaml("cam1", "secret-token-1", 1, "/tmp/unused", "synthetic:seed=1");
  auto config = ParseEdgeConfig(base + "privacy:\n  faces: {enabled: true, cascade: /nonexistent/face.xml}\n", "e");
  ASSERT_FALSE(config.ok());
  EXPECT_NE(config.status().message().find("privacy.faces.cascade"), std::string::npos) << config.status().message();
  config = ParseEdgeConfig(base + "privacy:\n  faces: {enabled: true, cascade: " + kFaceImage + "}\n", "e");
  ASSERT_FALSE(config.ok()) << "an image is not a cascade";
  EXPECT_NE(config.status().message().find("privacy.faces.cascade"), std::string::npos) << config.status().message();
  config = ParseEdgeConfig(base + "privacy:\n  masks:\n    - {name: 'a b', polygon: " + kMaskYaml + "}\n", "e");
  ASSERT_FALSE(config.ok());
  EXPECT_NE(config.status().message().find("privacy.masks[0].name"), std::string::npos) << config.status().message();
}

TEST(PrivacyFilterTest, FillsThePolygonAndTheFaceAndSaysSo) {
  PrivacyOptions options;
  PrivacyMask mask;
  mask.name = "window";
  mask.polygon.points = {{0.70, 0.05}, {0.95, 0.05}, {0.95, 0.40}, {0.70, 0.40}};
  options.masks.push_back(mask);
  options.faces.enabled = true;
  auto filter = PrivacyFilter::Create(options);
  ASSERT_TRUE(filter.ok()) << filter.status().ToString();
  cv::Mat frame = TestFrame();
  ASSERT_FALSE(frame.empty());
  const cv::Mat original = frame.clone();
  // What the checks below must not find: the pattern and the face are far from flat.
  EXPECT_GT(GreyStats(original, kPattern)[1], 60);
  EXPECT_GT(GreyStats(original, kFace)[1], 20);
  auto applied = (*filter)->Apply(&frame);
  ASSERT_TRUE(applied.ok()) << applied.status().ToString();
  EXPECT_EQ(applied->masks, std::vector<std::string>{"window"});
  EXPECT_TRUE(applied->faces);
  EXPECT_GE(applied->faces_found, 1);
  EXPECT_EQ(cv::countNonZero(frame(kPattern).reshape(1)), 0);
  EXPECT_EQ(cv::countNonZero(frame(kFace).reshape(1)), 0);
  // The rest of the frame is untouched (the ball, bottom right).
  const cv::Rect ball(340, 290, 40, 40);
  EXPECT_EQ(cv::norm(frame(ball), original(ball), cv::NORM_INF), 0);
}

TEST(PrivacyStoreTest, TheServersPrivacyPolicyIsRequiredOrOptional) {
  auto config = ParseServerConfig(ServerYaml("/tmp/unused") + "privacy: required\n", "server.yaml");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_TRUE(config->PrivacyRequired("cam1"));
  EXPECT_TRUE(config->PrivacyRequired("enrolled-later"));  // the top level covers every device
  config = ParseServerConfig(ServerYaml("/tmp/unused") + "privacy: maybe\n", "server.yaml");
  ASSERT_FALSE(config.ok());
  EXPECT_NE(config.status().message().find("'privacy'"), std::string::npos) << config.status().message();
  config = ParseServerConfig(ServerYaml("/tmp/unused"), "server.yaml");
  ASSERT_TRUE(config.ok());
  EXPECT_FALSE(config->PrivacyRequired("cam1"));
}

TEST(PrivacyStoreTest, AStoreOfSchemaVersion2IsUpgradedAndKeepsItsFrames) {
  const std::string dir = TempDir("privacy_store_v2");
  auto frame = [](uint64_t sequence, const std::string& privacy) {
    FrameRecord f;
    f.device_id = "cam1";
    f.sequence = sequence;
    f.jpeg = "jpeg";
    f.privacy = privacy;
    return f;
  };
  {
    // A store with one frame, taken back to what version 2 made: no privacy column.
    auto fresh = FrameStore::Open(dir);
    ASSERT_TRUE(fresh.ok()) << fresh.status().ToString();
    ASSERT_TRUE((*fresh)->Put(frame(1, "")).ok());
  }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir + "/index.sqlite").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "ALTER TABLE frames DROP COLUMN privacy; PRAGMA user_version=2;", nullptr, nullptr, nullptr),
            SQLITE_OK)
      << sqlite3_errmsg(db);
  sqlite3_close(db);
  auto store = FrameStore::Open(dir);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  ASSERT_TRUE((*store)->Put(frame(2, "masks=window;faces=1")).ok());
  auto both = (*store)->Recent("cam1", false, 10);
  ASSERT_TRUE(both.ok()) << both.status().ToString();
  ASSERT_EQ(both->size(), 2u);
  EXPECT_EQ((*both)[0].privacy, "");  // stored before declarations existed
  EXPECT_EQ((*both)[1].privacy, "masks=window;faces=1");
  store->reset();
  auto read_only = FrameStore::OpenReadOnly(dir);  // the export reads the upgraded store
  ASSERT_TRUE(read_only.ok()) << read_only.status().ToString();
  EXPECT_EQ((*(*read_only)->Recent("cam1", false, 10))[1].privacy, "masks=window;faces=1");
}

// The whole path: edges with and without masks, a server that requires them.
TEST(PrivacyEndToEndTest, MaskedPixelsNeverReachTheStoreTheDashboardOrTheExport) {
  const std::string dir = TempDir("privacy");
  const std::string folder = dir + "/frames";
  std::filesystem::create_directories(folder);
  const cv::Mat frame = TestFrame();
  ASSERT_FALSE(frame.empty());
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(cv::imwrite(folder + "/" + std::to_string(i) + ".png", frame));

  std::string server_yaml = ServerYaml(dir + "/server");
  // Both cameras must declare their masks; cam1's edge masks, cam2's does not.
  server_yaml.replace(server_yaml.find("update_fraction: 0.1}"), 21, "update_fraction: 0.1, privacy: required}");
  server_yaml.replace(server_yaml.find("update_encoding: int8}"), 22, "update_encoding: int8, privacy: required}");
  server_yaml.replace(server_yaml.find("trigger_frames: 8"), 17, "trigger_frames: 100000");
  server_yaml.replace(server_yaml.find("trigger_seconds: 3"), 18, "trigger_seconds: 100000");
  auto server_config = ParseServerConfig(server_yaml, "server.yaml");
  ASSERT_TRUE(server_config.ok()) << server_config.status().ToString();
  server_config->admin_token = kAdminToken;
  auto server = Server::Start(*server_config, []() -> StatusOr<std::unique_ptr<Teacher>> {
    return std::unique_ptr<Teacher>(std::make_unique<OneBoxTeacher>());
  });
  ASSERT_TRUE(server.ok()) << server.status().ToString();

  struct Acks {
    std::mutex mu;
    std::vector<std::pair<int, std::string>> seen;  // code, device
  } acks;
  std::vector<std::unique_ptr<EdgeAgent>> edges;
  for (const std::string device : {"cam1", "cam2"}) {
    auto config = ParseEdgeConfig(
        EdgeYamlFor(device, (*server)->port(), dir, folder, device == "cam1" ? PrivacyYaml() : ""), device);
    ASSERT_TRUE(config.ok()) << config.status().ToString();
    auto agent = EdgeAgent::Create(*config);
    ASSERT_TRUE(agent.ok()) << agent.status().ToString();
    (*agent)->SetAckObserver([&acks, device](uint64_t, int code) {
      std::lock_guard<std::mutex> lock(acks.mu);
      acks.seen.emplace_back(code, device);
    });
    edges.push_back(std::move(agent).value());
  }
  std::vector<std::thread> runs;
  for (auto& edge : edges) runs.emplace_back([&edge] { EXPECT_TRUE(edge->Run().ok()); });
  const bool enough = WaitFor(
      [&] { return edges[0]->stats().uplink.frames_acked >= 4 && edges[1]->stats().uplink.frames_rejected >= 4; }, 30);
  for (auto& edge : edges) edge->Stop();
  for (auto& run : runs) run.join();
  ASSERT_TRUE(enough) << "cam1 acked " << edges[0]->stats().uplink.frames_acked << ", cam2 refused "
                      << edges[1]->stats().uplink.frames_rejected;

  // cam2: every frame refused as a precondition (9), none stored.
  {
    std::lock_guard<std::mutex> lock(acks.mu);
    for (const auto& [code, device] : acks.seen) EXPECT_EQ(code, device == "cam1" ? 0 : 9) << device;
  }
  EXPECT_EQ(edges[1]->stats().uplink.frames_acked, 0);
  FrameStore& store = (*server)->core().store();
  EXPECT_EQ(store.Usage("cam2").frames, 0);

  // cam1: every stored frame says what it went through, and shows none of it.
  auto stored = store.Since("cam1", 0, 1000);
  ASSERT_TRUE(stored.ok()) << stored.status().ToString();
  ASSERT_GE(stored->size(), 4u);
  for (FrameRecord& record : *stored) {
    EXPECT_EQ(record.privacy.rfind("masks=neighbours-window;faces=", 0), 0u) << record.privacy;
    auto jpeg = store.LoadImage(record);
    ASSERT_TRUE(jpeg.ok()) << jpeg.status().ToString();
    const cv::Mat image = Decode(*jpeg);
    ASSERT_EQ(image.size(), frame.size());
    ExpectFilled(image, kPattern, "stored frame " + std::to_string(record.sequence) + ", masked polygon");
    ExpectFilled(image, kFace, "stored frame " + std::to_string(record.sequence) + ", face");
  }

  // The dashboard lists the declaration and serves the masked image.
  httplib::Client client("127.0.0.1", (*server)->http_port());
  const httplib::Headers auth = {{"Authorization", std::string("Bearer ") + kAdminToken}};
  auto list = client.Get("/api/devices/cam1/frames", auth);
  ASSERT_TRUE(list && list->status == 200);
  const json frames = json::parse(list->body)["frames"];
  ASSERT_FALSE(frames.empty());
  for (const json& f : frames) {
    EXPECT_EQ(f["privacy"].get<std::string>().rfind("masks=neighbours-window;faces=", 0), 0u) << f.dump();
    auto image = client.Get(f["url"].get<std::string>(), auth);
    ASSERT_TRUE(image && image->status == 200);
    const cv::Mat decoded = Decode(image->body);
    ExpectFilled(decoded, kPattern, "dashboard image, masked polygon");
    ExpectFilled(decoded, kFace, "dashboard image, face");
  }

  // The export, beside the running server: its metadata says so, its images show nothing masked.
  auto read_only = FrameStore::OpenReadOnly(dir + "/server");
  ASSERT_TRUE(read_only.ok()) << read_only.status().ToString();
  ExportOptions options;
  options.out_dir = dir + "/export";
  options.yolo = false;
  auto summary = ExportDataset(**read_only, options);
  ASSERT_TRUE(summary.ok()) << summary.status().ToString();
  int exported = 0;
  for (const std::string split : {"train", "val"}) {
    std::ifstream in(options.out_dir + "/coco/" + split + ".json");
    ASSERT_TRUE(in.good()) << split;
    const json coco = json::parse(in);
    for (const json& image : coco["images"]) {
      EXPECT_EQ(image["device_id"], "cam1");
      EXPECT_EQ(image["privacy"].get<std::string>().rfind("masks=neighbours-window;faces=", 0), 0u) << image.dump();
      const cv::Mat decoded =
          cv::imread(options.out_dir + "/images/" + split + "/" + image["file_name"].get<std::string>());
      ASSERT_FALSE(decoded.empty());
      ExpectFilled(decoded, kPattern, "exported image, masked polygon");
      ExpectFilled(decoded, kFace, "exported image, face");
      ++exported;
    }
  }
  EXPECT_GE(exported, static_cast<int>(stored->size()));  // frames in flight when the edges stopped may land later
}

}  // namespace
}  // namespace sd
