// Bad server settings stop the server at start, naming the key, instead of surfacing at a
// device's first frame.
#include <gtest/gtest.h>

#include <fstream>

#include "server/server.h"
#include "tests/daemon_test_util.h"

namespace sd {
namespace {

using namespace sd::testing;

TEST(ServerConfigTest, ShippedConfigParses) {
  auto config = LoadServerConfig(std::string(SD_SOURCE_DIR) + "/configs/server.yaml");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->device_tokens.count("cam1"), 1u);
  EXPECT_EQ(config->teacher.kind, "hog");
}

TEST(ServerConfigTest, BadDeviceIdAndRoundOptionsAreRejected) {
  const std::string dir = TempDir("server_config");
  std::string yaml = ServerYaml(dir);
  yaml.replace(yaml.find("cam2:"), 5, "../x:");
  auto bad_id = ParseServerConfig(yaml, "s.yaml");
  ASSERT_FALSE(bad_id.ok());
  EXPECT_NE(bad_id.status().message().find("key 'devices.../x'"), std::string::npos) << bad_id.status().message();

  yaml = ServerYaml(dir);
  yaml.replace(yaml.find("max_map50_drop: 0.05"), 20, "max_map50_drop: -1.0");
  auto bad_drop = ParseServerConfig(yaml, "s.yaml");
  ASSERT_FALSE(bad_drop.ok());
  EXPECT_NE(bad_drop.status().message().find("max_map50_drop"), std::string::npos) << bad_drop.status().message();
}

// update_encoding / update_fraction / update_zstd at the top are every device's; a device may
// override them.
TEST(ServerConfigTest, UpdatePoliciesPerDevice) {
  const std::string dir = TempDir("server_config_updates");
  auto config = ParseServerConfig(ServerYaml(dir), "s.yaml");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->updates.encoding, "full_fp16");
  EXPECT_EQ(UpdatesFor(*config, "cam1").encoding, "sparse");
  EXPECT_DOUBLE_EQ(UpdatesFor(*config, "cam1").sparse_fraction, 0.1);
  EXPECT_EQ(UpdatesFor(*config, "cam2").encoding, "int8");
  EXPECT_TRUE(UpdatesFor(*config, "cam2").zstd);
  EXPECT_EQ(UpdatesFor(*config, "unknown").encoding, "full_fp16");

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
