// Detection zones and ignore regions (issue 27, item 2): detections whose box's bottom centre
// lies in an ignore zone are dropped, others are tagged with their zones in the edge's
// detections file; bad zones are config errors naming their key.
#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "edge/detection_sink.h"
#include "edge/detection_zones.h"
#include "edge/edge_agent.h"
#include "tests/daemon_test_util.h"

namespace sd {
namespace {

using namespace sd::testing;
using nlohmann::json;

Detection At(float x1, float y1, float x2, float y2) {
  Detection d;
  d.box = {x1, y1, x2, y2};
  d.score = 0.8f;
  return d;
}

TEST(DetectionZonesTest, DropsIgnoredAndTagsZonedByTheBottomCentre) {
  std::vector<DetectionZone> zones(2);
  zones[0].name = "tv";
  zones[0].ignore = true;
  zones[0].polygon.points = {{0, 0}, {0.5, 0}, {0.5, 0.5}, {0, 0.5}};  // top left quarter
  zones[1].name = "door";
  zones[1].polygon.normalized = false;
  zones[1].polygon.points = {{100, 100}, {200, 100}, {200, 200}, {100, 200}};  // bottom right quarter
  Detections detections = {
      At(10, 10, 50, 80),     // foot (30, 80): on the TV
      At(20, 10, 60, 120),    // foot (40, 120): its head is on the TV, it stands below: kept, no zone
      At(140, 60, 180, 150),  // foot (160, 150): in the door
  };
  ZoneTags tags;
  ApplyZones(zones, cv::Size(200, 200), &detections, &tags);
  ASSERT_EQ(detections.size(), 2u);
  ASSERT_EQ(tags.size(), 2u);
  EXPECT_FLOAT_EQ(detections[0].box.x1, 20);
  EXPECT_TRUE(tags[0].empty());
  EXPECT_EQ(tags[1], std::vector<std::string>{"door"});
  const json line = json::parse(DetectionJsonLine(7, 0.7, 1, detections, &tags));
  EXPECT_FALSE(line["detections"][0].contains("zones"));
  EXPECT_EQ(line["detections"][1]["zones"], json::array({"door"}));
}

TEST(DetectionZonesTest, BadZonesAreRefusedWithTheirKey) {
  const std::string base = EdgeYaml("cam1", "secret-token-1", 1, "/tmp/unused", "synthetic:seed=1");
  const struct {
    std::string zones, key, problem;
  } cases[] = {
      {"  - {name: tv, polygon: [[0.1, 0.1], [0.2, 0.2]]}\n", "zones[0].polygon", "at least 3 corners"},
      {"  - {name: tv, polygon: [[0.1, 0.1], [0.5, 0.5], [0.5, 0.1], [0.1, 0.5]]}\n", "zones[0].polygon",
       "self-intersecting"},
      {"  - {name: tv, polygon: [[0.1, 0.1], [2, 0.1], [0.5, 0.5]]}\n", "zones[0].polygon", "outside the frame"},
      {"  - {name: a, polygon: [[0, 0], [1, 0], [1, 1]]}\n  - {name: a, polygon: [[0, 0], [1, 0], [0, 1]]}\n",
       "zones[1].name", "another zone"},
      {"  - {name: a, polygon: [[0, 0], [1, 0], [1, 1]], units: inches}\n", "zones[0].units", "normalized or pixels"},
  };
  for (const auto& c : cases) {
    auto config = ParseEdgeConfig(base + "zones:\n" + c.zones, "edge.yaml");
    ASSERT_FALSE(config.ok()) << c.zones;
    EXPECT_NE(config.status().message().find(c.key), std::string::npos) << config.status().message();
    EXPECT_NE(config.status().message().find(c.problem), std::string::npos) << config.status().message();
  }
}

// The edge's own detections file from a short run of a random student that sees boxes
// everywhere (score threshold 0), with `zones` added to its config.
std::vector<json> RunEdge(const std::string& dir, const std::string& zones) {
  const std::string yaml = EdgeYaml("cam1", "secret-token-1", 1, dir, "synthetic:seed=4,frames=12,width=256,height=192") +
                           "inference: {score_threshold: 0.0}\n" + zones;
  auto config = ParseEdgeConfig(yaml, "edge.yaml");
  EXPECT_TRUE(config.ok()) << config.status().ToString();
  if (!config.ok()) return {};
  config->source.loop = false;
  config->source.realtime = false;
  auto agent = EdgeAgent::Create(*config);
  EXPECT_TRUE(agent.ok()) << agent.status().ToString();
  if (!agent.ok()) return {};
  EXPECT_TRUE((*agent)->Run().ok());
  std::vector<json> detections;
  std::ifstream in(dir + "/detections.jsonl");
  for (std::string line; std::getline(in, line);) {
    const json parsed = json::parse(line);
    for (const json& d : parsed["detections"]) detections.push_back(d);
  }
  return detections;
}

bool FootInFrame(const json& d) {
  const double x = (d["box"][0].get<double>() + d["box"][2].get<double>()) / 2, y = d["box"][3].get<double>();
  return x >= 0 && x <= 256 && y >= 0 && y <= 192;
}

TEST(DetectionZonesTest, TheEdgesOutputDropsAndTagsByZone) {
  const std::vector<json> plain = RunEdge(TempDir("plain"), "");
  int inside = 0;
  for (const json& d : plain) {
    EXPECT_FALSE(d.contains("zones"));
    inside += FootInFrame(d);
  }
  ASSERT_GT(inside, 0) << "the random student found nothing to test zones with";

  // An ignore zone over the whole frame leaves only boxes whose foot lies beyond it.
  for (const json& d : RunEdge(TempDir("ignored"), "zones:\n  - {name: all, polygon: [[0, 0], [1, 0], [1, 1], [0, 1]], "
                                                   "ignore: true}\n"))
    EXPECT_FALSE(FootInFrame(d)) << d.dump();

  // A pixel zone beyond the frame (warned about at run time) tags everything inside it.
  int tagged = 0;
  for (const json& d : RunEdge(TempDir("tagged"), "zones:\n  - {name: everywhere, units: pixels, polygon: [[0, 0], "
                                                  "[5000, 0], [5000, 5000], [0, 5000]]}\n")) {
    if (!FootInFrame(d)) continue;
    EXPECT_EQ(d["zones"], json::array({"everywhere"})) << d.dump();
    ++tagged;
  }
  EXPECT_EQ(tagged, inside) << "the same student on the same frames";
}

}  // namespace
}  // namespace sd
