// Bad server settings stop the server at start, naming the key, instead of surfacing at a
// device's first frame.
#include <gtest/gtest.h>

#include <array>
#include <fstream>
#include <utility>

#include "server/server.h"
#include "tests/daemon_test_util.h"

namespace sd {
namespace {

using namespace sd::testing;

TEST(ServerConfigTest, ShippedConfigParses) {
  auto config = LoadServerConfig(std::string(SD_SOURCE_DIR) + "/configs/server.yaml");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->device_tokens.count("cam1"), 1u);
  EXPECT_EQ(config->teacher.kind, TeacherKind::kHog);
  EXPECT_EQ(config->class_names, std::vector<std::string>{"person"});
}

// ServerYaml(dir) with the first `from` replaced by `to`.
std::string ServerYamlWith(const std::string& dir, const std::string& from, const std::string& to) {
  std::string yaml = ServerYaml(dir);
  yaml.replace(yaml.find(from), from.size(), to);
  return yaml;
}

// student.class_names (for dataset exports) names every class of the student or none.
TEST(ServerConfigTest, ClassNamesNameEveryClass) {
  const std::string dir = TempDir("server_config_names");
  auto too_few = ParseServerConfig(ServerYamlWith(dir, "classes: 1", "classes: 2\n  class_names: [person]"), "s.yaml");
  ASSERT_FALSE(too_few.ok());
  EXPECT_NE(too_few.status().message().find("student.class_names"), std::string::npos) << too_few.status().message();
  auto named =
      ParseServerConfig(ServerYamlWith(dir, "classes: 1", "classes: 2\n  class_names: [person, car]"), "s.yaml");
  ASSERT_TRUE(named.ok()) << named.status().ToString();
  EXPECT_EQ(named->class_names, (std::vector<std::string>{"person", "car"}));
  auto unnamed = ParseServerConfig(ServerYaml(dir), "s.yaml");
  ASSERT_TRUE(unnamed.ok());
  EXPECT_TRUE(unnamed->class_names.empty());
}

TEST(ServerConfigTest, MetricsAreOnByDefaultOnLoopback) {
  auto shipped = LoadServerConfig(std::string(SD_SOURCE_DIR) + "/configs/server.yaml");
  ASSERT_TRUE(shipped.ok()) << shipped.status().ToString();
  EXPECT_TRUE(shipped->http.enabled);
  EXPECT_EQ(shipped->http.bind, "127.0.0.1");
  EXPECT_EQ(shipped->http.port, 9464);

  const std::string dir = TempDir("server_config_http");
  std::string yaml = ServerYaml(dir);
  yaml.replace(yaml.find("http: {port: 0}"), 15, "");
  auto absent = ParseServerConfig(yaml, "s.yaml");  // no http section: the defaults
  ASSERT_TRUE(absent.ok()) << absent.status().ToString();
  EXPECT_TRUE(absent->http.enabled);
  EXPECT_EQ(absent->http.bind, "127.0.0.1");
  EXPECT_EQ(absent->http.port, 9464);
}

// The dashboard is off unless http.admin_token is set, and a short token is refused.
TEST(ServerConfigTest, TheDashboardNeedsAnAdminTokenOfAtLeast16Characters) {
  const std::string dir = TempDir("server_config_admin_token");
  auto off = ParseServerConfig(ServerYaml(dir), "s.yaml");
  ASSERT_TRUE(off.ok()) << off.status().ToString();
  EXPECT_EQ(off->admin_token, "");
  auto on = ParseServerConfig(
      ServerYamlWith(dir, "http: {port: 0}", "http: {port: 0, admin_token: 0123456789abcdef}"), "s.yaml");
  ASSERT_TRUE(on.ok()) << on.status().ToString();
  EXPECT_EQ(on->admin_token, "0123456789abcdef");
  auto short_token = ParseServerConfig(
      ServerYamlWith(dir, "http: {port: 0}", "http: {port: 0, admin_token: 0123456789abcde}"), "s.yaml");
  ASSERT_FALSE(short_token.ok());
  EXPECT_NE(short_token.status().message().find("admin_token"), std::string::npos) << short_token.status().message();
  EXPECT_NE(short_token.status().message().find("16"), std::string::npos) << short_token.status().message();
}

// A second server on the same metrics port does not start, and says which port and key.
TEST(ServerConfigTest, MetricsPortInUseStopsTheStart) {
  const std::string dir = TempDir("server_config_http_in_use");
  auto config = ParseServerConfig(ServerYaml(dir + "/first"), "first.yaml");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  const TeacherFactory one_box = []() -> StatusOr<std::unique_ptr<Teacher>> {
    return std::unique_ptr<Teacher>(std::make_unique<OneBoxTeacher>());
  };
  auto first = Server::Start(*config, one_box);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  config->storage_dir = dir + "/second";
  config->http.port = (*first)->http_port();
  auto second = Server::Start(*config, one_box);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), Status::Code::kUnavailable);
  EXPECT_NE(second.status().message().find("127.0.0.1:" + std::to_string((*first)->http_port())), std::string::npos)
      << second.status().message();
  EXPECT_NE(second.status().message().find("http.port"), std::string::npos) << second.status().message();
}

TEST(ServerConfigTest, BadDeviceIdAndRoundOptionsAreRejected) {
  const std::string dir = TempDir("server_config");
  auto bad_id = ParseServerConfig(ServerYamlWith(dir, "cam2:", "../x:"), "s.yaml");
  ASSERT_FALSE(bad_id.ok());
  EXPECT_NE(bad_id.status().message().find("key 'devices.../x'"), std::string::npos) << bad_id.status().message();

  auto bad_drop = ParseServerConfig(ServerYamlWith(dir, "max_map50_drop: 0.05", "max_map50_drop: -1.0"), "s.yaml");
  ASSERT_FALSE(bad_drop.ok());
  EXPECT_NE(bad_drop.status().message().find("max_map50_drop"), std::string::npos) << bad_drop.status().message();
}

// training.workers x threads_per_worker size the training pool; the old top-level `threads`
// still means threads per worker; training.schedule picks the policy.
TEST(ServerConfigTest, TrainingPoolAndSchedule) {
  const std::string dir = TempDir("server_config_pool");
  auto old_style = ParseServerConfig(ServerYaml(dir), "s.yaml");  // `threads: 2`, no pool keys
  ASSERT_TRUE(old_style.ok()) << old_style.status().ToString();
  EXPECT_EQ(old_style->threads_per_worker, 2);
  EXPECT_GE(old_style->training_workers, 1);
  EXPECT_EQ(old_style->schedule.policy, SchedulePolicy::kBenefit);

  std::string yaml = ServerYaml(dir);
  yaml.replace(yaml.find("threads: 2\n"), 11, "");
  yaml.replace(yaml.find("training:\n"), 10, "training:\n  workers: 3\n  threads_per_worker: 1\n  schedule: round_robin\n");
  auto pool = ParseServerConfig(yaml, "s.yaml");
  ASSERT_TRUE(pool.ok()) << pool.status().ToString();
  EXPECT_EQ(pool->training_workers, 3);
  EXPECT_EQ(pool->threads_per_worker, 1);
  EXPECT_EQ(pool->schedule.policy, SchedulePolicy::kRoundRobin);

  // The error of ServerYaml with `key_line` added to `training:`.
  auto error_with = [&](const std::string& key_line) {
    std::string text = ServerYaml(dir);
    text.replace(text.find("training:\n"), 10, "training:\n  " + key_line + "\n");
    auto parsed = ParseServerConfig(text, "s.yaml");
    return parsed.ok() ? std::string("parsed") : parsed.status().message();
  };
  EXPECT_NE(error_with("threads_per_worker: 1").find("old name of training.threads_per_worker"), std::string::npos);
  EXPECT_NE(error_with("schedule: fifo").find("training.schedule"), std::string::npos);
  EXPECT_NE(error_with("workers: -1").find("training.workers"), std::string::npos);

  // {workers, threads_per_worker} for a machine, its devices and what the file gave (0: open).
  auto defaults = [](unsigned cores, size_t devices, int workers, int threads) {
    DefaultTrainingPool(cores, devices, &workers, &threads);
    return std::make_pair(workers, threads);
  };
  EXPECT_EQ(defaults(2, 8, 0, 0), std::make_pair(2, 1));    // a fleet: a worker per core, one thread each
  EXPECT_EQ(defaults(2, 1, 0, 0), std::make_pair(1, 2));    // one camera: one worker on both cores
  EXPECT_EQ(defaults(16, 0, 0, 0), std::make_pair(16, 1));  // devices unknown (a devices file)
  EXPECT_EQ(defaults(16, 4, 0, 2), std::make_pair(4, 2));
  EXPECT_EQ(defaults(0, 3, 0, 0), std::make_pair(1, 1));  // hardware_concurrency() may not know
  EXPECT_EQ(defaults(1, 8, 5, 0), std::make_pair(5, 1));
}

// training.decoded_cache_mb: one budget for every unit's decoded frames, 256 MiB when absent,
// 0 for none; a negative or absurd figure (bytes given for MiB) stops the start, naming the key.
TEST(ServerConfigTest, DecodedFrameCacheBudget) {
  const std::string dir = TempDir("server_config_cache");
  auto with = [&](const std::string& key_line) {
    std::string text = ServerYaml(dir);
    text.replace(text.find("training:\n"), 10, "training:\n  " + key_line + "\n");
    return ParseServerConfig(text, "s.yaml");
  };
  auto absent = ParseServerConfig(ServerYaml(dir), "s.yaml");
  ASSERT_TRUE(absent.ok()) << absent.status().ToString();
  EXPECT_EQ(absent->decoded_cache_mb, 256);
  auto off = with("decoded_cache_mb: 0");
  ASSERT_TRUE(off.ok()) << off.status().ToString();
  EXPECT_EQ(off->decoded_cache_mb, 0);
  auto large = with("decoded_cache_mb: 65536");
  ASSERT_TRUE(large.ok()) << large.status().ToString();
  EXPECT_EQ(large->decoded_cache_mb, 65536);
  for (const std::string bad : {"decoded_cache_mb: -1", "decoded_cache_mb: 268435456", "decoded_cache_mb: 1.5",
                                "decoded_cache_mb: lots"}) {
    auto parsed = with(bad);
    ASSERT_FALSE(parsed.ok()) << bad;
    EXPECT_NE(parsed.status().message().find("training.decoded_cache_mb"), std::string::npos)
        << parsed.status().message();
  }
}

// groups: a shared student among 2+ devices, each device in one group at most; a group is one
// unit of the training pool (two cameras in one group on 2 cores: one worker on both cores).
TEST(ServerConfigTest, GroupsShareAStudent) {
  const std::string dir = TempDir("server_config_groups");
  auto parse = [&](const std::string& groups) { return ParseServerConfig(ServerYaml(dir, groups), "s.yaml"); };
  auto pair = parse("groups:\n  lobby: [cam1, cam2]\n");
  ASSERT_TRUE(pair.ok()) << pair.status().ToString();
  EXPECT_EQ(pair->groups.at("lobby"), (std::vector<std::string>{"cam1", "cam2"}));
  EXPECT_EQ(GroupOf(*pair, "cam2"), "lobby");
  EXPECT_EQ(GroupOf(*pair, "cam3"), "");
  EXPECT_EQ(pair->training_workers, 1);  // one unit to train, whatever the cores
  auto error_of = [&](const std::string& groups) {
    auto parsed = parse(groups);
    return parsed.ok() ? std::string("parsed") : parsed.status().message();
  };
  EXPECT_NE(error_of("groups:\n  solo: [cam1]\n").find("at least 2 devices"), std::string::npos);
  EXPECT_NE(error_of("groups:\n  a: [cam1, cam2]\n  b: [cam2, cam3]\n").find("in group a already"),
            std::string::npos);
  EXPECT_NE(error_of("groups:\n  a: [cam1, ../x]\n").find("is not a device id"), std::string::npos);
  EXPECT_NE(error_of("groups:\n  a: cam1\n").find("groups.a"), std::string::npos);
}

// grouping: config (the `groups` map) by default; auto forms the groups itself, so `groups`
// with it is an error.
TEST(ServerConfigTest, AutomaticGroupingIsChosenWithItsParameters) {
  const std::string dir = TempDir("server_config_grouping");
  auto parse = [&](const std::string& extra) { return ParseServerConfig(ServerYaml(dir, extra), "s.yaml"); };
  auto defaults = parse("");
  ASSERT_TRUE(defaults.ok()) << defaults.status().ToString();
  EXPECT_FALSE(defaults->grouping.automatic);
  auto automatic = parse("grouping: {mode: auto, every_s: 60, margin: 0.1, min_heldout_frames: 4, heldout_frames: 12}\n");
  ASSERT_TRUE(automatic.ok()) << automatic.status().ToString();
  EXPECT_TRUE(automatic->grouping.automatic);
  EXPECT_EQ(automatic->grouping.every_s, 60);
  EXPECT_EQ(automatic->grouping.margin, 0.1);
  EXPECT_EQ(automatic->grouping.min_heldout_frames, 4);
  EXPECT_EQ(automatic->grouping.heldout_frames, 12);
  EXPECT_TRUE(automatic->grouping.start_together);
  auto alone = parse("grouping: {mode: auto, start: alone}\n");
  ASSERT_TRUE(alone.ok()) << alone.status().ToString();
  EXPECT_FALSE(alone->grouping.start_together);
  auto error_of = [&](const std::string& extra) {
    auto parsed = parse(extra);
    return parsed.ok() ? std::string("parsed") : parsed.status().message();
  };
  EXPECT_NE(error_of("grouping: {mode: auto}\ngroups:\n  a: [cam1, cam2]\n").find("leave `groups` out"),
            std::string::npos);
  EXPECT_NE(error_of("grouping: {mode: clusters}\n").find("config or auto"), std::string::npos);
  EXPECT_NE(error_of("grouping: {mode: auto, start: apart}\n").find("together or alone"), std::string::npos);
  EXPECT_NE(error_of("grouping: {mode: auto, margin: 1.5}\n").find("margin"), std::string::npos);
  EXPECT_NE(error_of("grouping: {mode: auto, min_heldout_frames: 20, heldout_frames: 10}\n").find("heldout_frames"),
            std::string::npos);
}

// Replicas (storage.backend postgres) share server.yaml's groups; automatic grouping, each
// server's own decision, is refused there.
TEST(ServerConfigTest, ReplicasTakeConfiguredGroupsButNotAutomaticOnes) {
  const std::string dir = TempDir("server_config_replica_groups");
  const std::string postgres = "storage: {backend: postgres, dsn: \"host=/tmp dbname=x\"}\n";
  auto grouped = ParseServerConfig(ServerYaml(dir, postgres + "groups:\n  lobby: [cam1, cam2]\n"), "s.yaml");
  ASSERT_TRUE(grouped.ok()) << grouped.status().ToString();
  EXPECT_EQ(grouped->groups.at("lobby"), (std::vector<std::string>{"cam1", "cam2"}));
  auto automatic = ParseServerConfig(ServerYaml(dir, postgres + "grouping: {mode: auto}\n"), "s.yaml");
  ASSERT_FALSE(automatic.ok());
  EXPECT_NE(automatic.status().message().find("mode auto is not supported with storage.backend postgres"),
            std::string::npos)
      << automatic.status().message();
}

// Each options struct validates itself (Validate beside it); the parser's error still names the
// key and its line.
TEST(ServerConfigTest, OptionsErrorsNameTheKeyAndLine) {
  const std::string dir = TempDir("server_config_validate");
  auto error_of = [&](const std::string& extra) {
    auto parsed = ParseServerConfig(ServerYaml(dir, extra), "s.yaml");
    return parsed.ok() ? std::string("parsed") : parsed.status().message();
  };
  EXPECT_NE(error_of("limits:\n  max_image_width: 70000\n").find("key 'limits.max_image_width' (line "),
            std::string::npos);
  EXPECT_NE(error_of("limits:\n  max_image_pixels: 0\n").find("limits.max_image_pixels' (line "), std::string::npos);
  EXPECT_NE(error_of("limits:\n  stream_backlog: 4\n").find("limits.stream_backlog' (line "), std::string::npos);
  EXPECT_NE(error_of("retention:\n  max_age_s: -1\n").find("retention.max_age_s' (line "), std::string::npos);
  EXPECT_NE(error_of("retention:\n  devices:\n    cam1: {max_frames: -2}\n").find("retention.devices.cam1.max_frames"),
            std::string::npos);
  EXPECT_NE(error_of("grouping: {mode: auto, every_s: 0}\n").find("grouping.every_s' (line "), std::string::npos);
  EXPECT_NE(error_of("grouping: {mode: auto, every_s: 0}\n").find("must be > 0"), std::string::npos);
  for (const auto& [from, to, key] : std::vector<std::array<std::string, 3>>{
           {"batch_size: 8", "batch_size: 0", "key 'training.optimizer.batch_size' (line "},
           {"input_height: 96", "input_height: 100", "key 'student.input_height' (line "},
           {"classes: 1", "classes: 0", "key 'student.classes' (line "},
           {"block: separable", "block: dense", "key 'student.block' (line "},
           {"kind: onnx", "kind: onnx\n  nms_iou: 2", "key 'teacher.nms_iou' (line "}}) {
    auto bad = ParseServerConfig(ServerYamlWith(dir, from, to), "s.yaml");
    ASSERT_FALSE(bad.ok()) << to;
    EXPECT_NE(bad.status().message().find(key), std::string::npos) << bad.status().message();
  }
  auto bad_port = ParseServerConfig(ServerYamlWith(dir, "http: {port: 0}", "http: {port: 70000}"), "s.yaml");
  ASSERT_FALSE(bad_port.ok());
  EXPECT_NE(bad_port.status().message().find("http.port' (line "), std::string::npos) << bad_port.status().message();
}

// update_encoding / update_fraction / update_zstd at the top are every device's; a device may
// override them.
TEST(ServerConfigTest, UpdatePoliciesPerDevice) {
  const std::string dir = TempDir("server_config_updates");
  auto config = ParseServerConfig(ServerYaml(dir), "s.yaml");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->updates.encoding, UpdateEncoding::kFullFp16);
  EXPECT_EQ(UpdatesFor(*config, "cam1").encoding, UpdateEncoding::kSparse);
  EXPECT_DOUBLE_EQ(RoundSparseFraction(UpdatesFor(*config, "cam1")), 0.1);
  EXPECT_DOUBLE_EQ(UpdatesFor(*config, "cam1").sparse_fraction, 0.1);
  EXPECT_EQ(UpdatesFor(*config, "cam2").encoding, UpdateEncoding::kInt8);
  EXPECT_DOUBLE_EQ(RoundSparseFraction(UpdatesFor(*config, "cam2")), 0);
  EXPECT_TRUE(UpdatesFor(*config, "cam2").zstd);
  EXPECT_EQ(UpdatesFor(*config, "unknown").encoding, UpdateEncoding::kFullFp16);

  std::string yaml = ServerYaml(dir);
  yaml.replace(yaml.find("update_encoding: int8"), 21, "update_encoding: lz4");
  auto bad_encoding = ParseServerConfig(yaml, "s.yaml");
  ASSERT_FALSE(bad_encoding.ok());
  EXPECT_NE(bad_encoding.status().message().find("devices.cam2.update_encoding"), std::string::npos)
      << bad_encoding.status().message();
  yaml = ServerYaml(dir);
  yaml.replace(yaml.find("update_fraction: 0.1"), 20, "update_fraction: 1.5");
  auto bad_fraction = ParseServerConfig(yaml, "s.yaml");
  ASSERT_FALSE(bad_fraction.ok());
  EXPECT_NE(bad_fraction.status().message().find("update_fraction"), std::string::npos)
      << bad_fraction.status().message();
}

TEST(ServerConfigTest, UnreadableInitWeightsStopTheServerAtStart) {
  const std::string dir = TempDir("server_config_init");
  std::ofstream(dir + "/garbage.sdw") << "not weights";
  auto config = ParseServerConfig(ServerYaml(dir + "/state", "init_weights: " + dir + "/garbage.sdw\n"), "s.yaml");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  auto server = Server::Start(*config);
  ASSERT_FALSE(server.ok());
  EXPECT_NE(server.status().message().find("garbage.sdw"), std::string::npos) << server.status().message();
}

}  // namespace
}  // namespace sd
