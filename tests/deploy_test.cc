// The deployment files as an operator's tools see them (issue 25): the Kubernetes overlays as
// `kubectl kustomize` renders them, read back object by object; the systemd units as
// `systemd-analyze verify` and `systemd-analyze security` judge them.
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "common/link/health_probe.h"
#include "edge/edge_config.h"
#include "server/server.h"
#include "server/server_config.h"
#include "tests/daemon_test_util.h"
#include "tests/run_binary.h"
#include "tests/scoped_temp_dir.h"

namespace sd {
namespace {

using sd::testing::RunCommand;
using sd::testing::RunResult;
using sd::testing::ScopedTempDir;

const std::string kSource = SD_SOURCE_DIR;

bool OnPath(const std::string& tool) { return RunCommand("sh -c 'command -v " + tool + "'", 5).exit_code == 0; }

// The objects of one rendered overlay, by kind and name (ConfigMap names without the hash
// suffix kustomize appends, so tests can name them).
class Rendered {
 public:
  explicit Rendered(const std::string& overlay) {
    // stderr apart: kustomize warns there about deprecated fields the old kubectl needs.
    const RunResult r = RunCommand("kubectl kustomize " + kSource + "/deploy/k8s/overlays/" + overlay + " 2>/dev/null", 60);
    render_exit_code = r.exit_code;
    if (r.exit_code != 0) return;
    for (const YAML::Node& doc : YAML::LoadAll(r.output)) {
      const std::string kind = doc["kind"].as<std::string>();
      std::string name = doc["metadata"]["name"].as<std::string>();
      if (kind == "ConfigMap" || kind == "Secret") generated_names[StripHash(name)] = name, name = StripHash(name);
      objects[kind + "/" + name] = doc;
    }
  }
  YAML::Node Get(const std::string& kind_and_name) const {
    auto it = objects.find(kind_and_name);
    return it == objects.end() ? YAML::Node() : it->second;
  }
  int render_exit_code = -1;
  std::map<std::string, YAML::Node> objects;
  std::map<std::string, std::string> generated_names;  // name without suffix -> rendered name

 private:
  static std::string StripHash(const std::string& name) {
    static const std::regex suffix("-[a-z0-9]{10}$");
    return std::regex_replace(name, suffix, "");
  }
};

// What a test of a server workload checks: the issue's essential fields.
void ExpectServerPod(const Rendered& r, const YAML::Node& workload) {
  ASSERT_TRUE(workload) << "no server workload";
  const YAML::Node pod = workload["spec"]["template"]["spec"];
  const YAML::Node container = pod["containers"][0];
  ASSERT_TRUE(container);
  // Native gRPC probes on the gRPC port: the server's own health service.
  for (const char* probe : {"startupProbe", "readinessProbe", "livenessProbe"}) {
    SCOPED_TRACE(probe);
    ASSERT_TRUE(container[probe]["grpc"]) << "not a gRPC probe";
    EXPECT_EQ(container[probe]["grpc"]["port"].as<int>(), 50051);
  }
  EXPECT_EQ(container["readinessProbe"]["grpc"]["service"].as<std::string>(), "streamdistill.v1.EdgeLink");
  for (const char* bound : {"requests", "limits"})
    for (const char* resource : {"cpu", "memory"})
      EXPECT_TRUE(container["resources"][bound][resource]) << bound << "." << resource;
  EXPECT_TRUE(pod["securityContext"]["runAsNonRoot"].as<bool>());
  EXPECT_FALSE(container["securityContext"]["allowPrivilegeEscalation"].as<bool>());
  EXPECT_TRUE(container["securityContext"]["readOnlyRootFilesystem"].as<bool>());
  EXPECT_EQ(container["securityContext"]["capabilities"]["drop"][0].as<std::string>(), "ALL");
  EXPECT_GE(pod["terminationGracePeriodSeconds"].as<int>(), 30) << "room to drain streams and a round";

  // Every volume mounted exists, and every ConfigMap a volume names is rendered here.
  std::set<std::string> volumes;
  for (const YAML::Node& v : pod["volumes"]) {
    volumes.insert(v["name"].as<std::string>());
    if (v["configMap"]) {
      const std::string name = v["configMap"]["name"].as<std::string>();
      bool rendered = false;
      for (const auto& [plain, full] : r.generated_names) rendered = rendered || full == name;
      EXPECT_TRUE(rendered) << "configMap " << name << " is not in the render";
    }
  }
  for (const YAML::Node& t : workload["spec"]["volumeClaimTemplates"]) volumes.insert(t["metadata"]["name"].as<std::string>());
  for (const YAML::Node& m : container["volumeMounts"])
    EXPECT_TRUE(volumes.count(m["name"].as<std::string>())) << "mount " << m["name"].as<std::string>() << " has no volume";
}

// A PodDisruptionBudget selects the pods of `workload`.
void ExpectDisruptionBudget(const Rendered& r, const std::string& name, const YAML::Node& workload) {
  const YAML::Node pdb = r.Get("PodDisruptionBudget/" + name);
  ASSERT_TRUE(pdb) << name;
  EXPECT_TRUE(pdb["spec"]["minAvailable"] || pdb["spec"]["maxUnavailable"]);
  const YAML::Node labels = workload["spec"]["template"]["metadata"]["labels"];
  for (const auto& selector : pdb["spec"]["selector"]["matchLabels"])
    EXPECT_EQ(labels[selector.first.as<std::string>()].as<std::string>(), selector.second.as<std::string>());
}

// A deployment's server.yaml runs what the main job runs (configs/server.yaml): every key but
// the box's addresses, paths, secrets and storage backend is the same.
void ExpectShippedSettings(const std::string& yaml_text, const std::string& name) {
  static const std::set<std::string> kDeploymentOwn = {"listen", "http", "storage_dir", "tls", "devices",
                                                       "devices_file", "storage", "max_connection_age_s"};
  const YAML::Node shipped = YAML::LoadFile(kSource + "/configs/server.yaml"), deployed = YAML::Load(yaml_text);
  for (const auto& entry : shipped) {
    const std::string key = entry.first.as<std::string>();
    if (kDeploymentOwn.count(key)) continue;
    SCOPED_TRACE(name + ": " + key);
    ASSERT_TRUE(deployed[key]) << "missing: configs/server.yaml sets it";
    EXPECT_EQ(YAML::Dump(deployed[key]), YAML::Dump(entry.second)) << "differs from configs/server.yaml";
  }
  for (const auto& entry : deployed) {
    const std::string key = entry.first.as<std::string>();
    EXPECT_TRUE(kDeploymentOwn.count(key) || shipped[key]) << name << ": " << key << " is not in configs/server.yaml";
  }
}

// The server.yaml of the ConfigMap, read by the server's own parser: valid, with no secret
// in it, and serving the student the shipped edge config runs.
ServerConfig ExpectServerConfigWithoutSecrets(const Rendered& r) {
  const YAML::Node map = r.Get("ConfigMap/streamdistill-server-config");
  EXPECT_TRUE(map) << "no server ConfigMap";
  if (!map) return {};
  const std::string text = map["data"]["server.yaml"].as<std::string>();
  ExpectShippedSettings(text, "the ConfigMap's server.yaml");
  StatusOr<ServerConfig> config = ParseServerConfig(text, "server.yaml of the ConfigMap");
  EXPECT_TRUE(config.ok()) << config.status().ToString();
  if (!config.ok()) return {};
  EXPECT_TRUE(config->device_tokens.empty()) << "device tokens inlined in a ConfigMap";
  EXPECT_TRUE(config->admin_token.empty()) << "the admin token inlined in a ConfigMap";
  EXPECT_FALSE(config->admin_token_file.empty());
  EXPECT_EQ(config->admin_token_file.rfind("/etc/streamdistill-secrets/", 0), 0u) << "not from a Secret";
  EXPECT_EQ(text.find("password="), std::string::npos);
  EXPECT_EQ(text.find("token:"), std::string::npos);
  StatusOr<EdgeConfig> edge = LoadEdgeConfig(kSource + "/configs/edge.yaml");
  EXPECT_TRUE(edge.ok()) << edge.status().ToString();
  if (edge.ok()) EXPECT_EQ(config->student.Fingerprint(), edge->student.Fingerprint());
  return *config;
}

class KustomizeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // scripts/setup.sh installs it: missing means the machine is not set up, not a pass.
    ASSERT_TRUE(OnPath("kubectl")) << "kubectl is not installed (scripts/setup.sh installs kubernetes-client)";
  }
};

TEST_F(KustomizeTest, SingleOverlayIsOneServerOnAVolume) {
  const Rendered r("single");
  ASSERT_EQ(r.render_exit_code, 0);
  const YAML::Node server = r.Get("StatefulSet/streamdistill-server");
  ExpectServerPod(r, server);
  if (HasFatalFailure()) return;
  EXPECT_EQ(server["spec"]["replicas"].as<int>(), 1) << "one process owns a SQLite store";
  ASSERT_TRUE(server["spec"]["volumeClaimTemplates"]) << "the store on a PersistentVolumeClaim";
  EXPECT_EQ(server["spec"]["volumeClaimTemplates"][0]["spec"]["accessModes"][0].as<std::string>(), "ReadWriteOnce");
  ExpectDisruptionBudget(r, "streamdistill-server", server);
  const ServerConfig config = ExpectServerConfigWithoutSecrets(r);
  EXPECT_EQ(config.storage.backend, StorageBackend::kSqlite);
  EXPECT_EQ(config.devices_file.rfind("/etc/streamdistill-secrets/", 0), 0u) << "device tokens from a Secret";
  EXPECT_TRUE(r.Get("Service/streamdistill-server"));
}

TEST_F(KustomizeTest, ClusterOverlayIsReplicasOnPostgresBehindHaproxy) {
  const Rendered r("cluster");
  ASSERT_EQ(r.render_exit_code, 0);
  const YAML::Node server = r.Get("StatefulSet/streamdistill-server");
  ExpectServerPod(r, server);
  if (HasFatalFailure()) return;
  EXPECT_GE(server["spec"]["replicas"].as<int>(), 2);
  ExpectDisruptionBudget(r, "streamdistill-server", server);
  const ServerConfig config = ExpectServerConfigWithoutSecrets(r);
  EXPECT_EQ(config.storage.backend, StorageBackend::kPostgres);
  EXPECT_FALSE(config.storage.postgres.password_file.empty()) << "the database password from a Secret";
  EXPECT_GT(config.max_connection_age_s, 0) << "streams drift back to their hash owner";

  // HAProxy: its config passes HAProxy's own check and lists the StatefulSet's replicas by
  // their stable names, first one first (the consistent hash's order).
  const YAML::Node haproxy = r.Get("Deployment/streamdistill-haproxy");
  ASSERT_TRUE(haproxy);
  ExpectDisruptionBudget(r, "streamdistill-haproxy", haproxy);
  EXPECT_TRUE(haproxy["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"]);
  const YAML::Node cfg_map = r.Get("ConfigMap/streamdistill-haproxy-config");
  ASSERT_TRUE(cfg_map);
  const std::string cfg = cfg_map["data"]["haproxy.cfg"].as<std::string>();
  const std::string headless = server["spec"]["serviceName"].as<std::string>();
  ASSERT_TRUE(r.Get("Service/" + headless)) << "the StatefulSet's headless Service";
  EXPECT_NE(cfg.find("server r0 streamdistill-server-0." + headless + "."), std::string::npos) << cfg;
  EXPECT_NE(cfg.find("balance hdr(sd-device-id)"), std::string::npos);
  EXPECT_NE(cfg.find("hash-type consistent"), std::string::npos);
  // HAProxy 2.6 takes check-proto from a server line only, not from default-server; without it
  // every health check fails at once (SOCKERR) and every edge gets 503, which `haproxy -c`
  // does not see (kube_check.sh --overlay cluster found it).
  std::istringstream lines(cfg);
  int server_lines = 0;
  for (std::string line; std::getline(lines, line);) {
    if (!std::regex_search(line, std::regex("^\\s*server "))) continue;
    ++server_lines;
    EXPECT_NE(line.find("check-proto h1"), std::string::npos) << line;
  }
  EXPECT_GE(server_lines, 2);
  ScopedTempDir dir("deploy_test");
  const std::string path = dir.path() + "/haproxy.cfg";
  std::ofstream(path) << cfg;
  const RunResult check = RunCommand("haproxy -c -f " + path, 20);
  EXPECT_EQ(check.exit_code, 0) << check.output;
}

// The units as installed, but running the binaries of this build (verify checks that
// ExecStart's program exists).
class SystemdUnitTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(OnPath("systemd-analyze")) << "systemd-analyze is not installed (scripts/setup.sh installs systemd)";
    for (const char* unit : {"streamdistill-server.service", "streamdistill-edge@.service"}) {
      std::ifstream in(kSource + "/deploy/systemd/" + unit);
      std::stringstream text;
      text << in.rdbuf();
      const std::string here = std::regex_replace(text.str(), std::regex("/usr/local/bin/"), std::string(SD_BINARY_DIR) + "/");
      // An instance of the template, as `systemctl enable streamdistill-edge@cam1` makes.
      const std::string name = std::regex_replace(unit, std::regex("@\\."), "@cam1.");
      std::ofstream(dir_.path() + "/" + name) << here;
      units_.push_back(name);
    }
  }
  ScopedTempDir dir_{"deploy_units"};
  std::vector<std::string> units_;
};

TEST_F(SystemdUnitTest, UnitsPassVerify) {
  for (const std::string& unit : units_) {
    const RunResult r = RunCommand("systemd-analyze verify " + dir_.File(unit), 30);
    EXPECT_EQ(r.exit_code, 0) << unit << ":\n" << r.output;
    EXPECT_EQ(r.output.find("Unknown"), std::string::npos) << unit << ":\n" << r.output;
  }
}

// systemd-analyze's exposure, 0 (locked down) to 10 (exposed): "OK" is below 4.5. The units
// score 1.1 (server) and 1.5 (edge, which keeps /dev/video*); 2.0 fails a regression.
TEST_F(SystemdUnitTest, UnitsAreHardened) {
  for (const std::string& unit : units_) {
    const RunResult r =
        RunCommand("systemd-analyze security --offline=true --threshold=20 " + dir_.File(unit), 30);
    const size_t at = r.output.find("Overall exposure level");
    EXPECT_EQ(r.exit_code, 0) << unit << ": "
                              << (at == std::string::npos ? r.output : r.output.substr(at));
  }
}

// The configs install_systemd.sh installs: read by the daemons' own parsers, the edge's
// placeholders filled as the script fills them, one student on both sides.
TEST_F(SystemdUnitTest, ConfigTemplatesParseAndAgreeOnTheStudent) {
  std::ifstream server_in(kSource + "/deploy/systemd/server.yaml"), edge_in(kSource + "/deploy/systemd/edge.yaml");
  std::stringstream server_text, edge_text;
  server_text << server_in.rdbuf();
  edge_text << edge_in.rdbuf();
  StatusOr<ServerConfig> server = ParseServerConfig(server_text.str(), "deploy/systemd/server.yaml");
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  ExpectShippedSettings(server_text.str(), "deploy/systemd/server.yaml");
  EXPECT_TRUE(server->device_tokens.empty()) << "no token in the shipped server config";
  std::string edge_yaml = edge_text.str();
  for (const auto& [placeholder, value] : std::vector<std::pair<std::string, std::string>>{
           {"@NAME@", "cam1"}, {"@SERVER@", "10.0.0.1:50051"}, {"@SOURCE@", "camera:0"}})
    edge_yaml = std::regex_replace(edge_yaml, std::regex(placeholder), value);
  // The token comes from the unit's credential, as systemd places it for the instance.
  const std::string credential = "/run/credentials/streamdistill-edge@cam1.service/token";
  ASSERT_NE(edge_yaml.find("token_file: " + credential), std::string::npos) << edge_yaml;
  std::ofstream(dir_.File("token")) << "a-token-of-the-server\n";
  edge_yaml = std::regex_replace(edge_yaml, std::regex(credential), dir_.File("token"));
  StatusOr<EdgeConfig> edge = ParseEdgeConfig(edge_yaml, "deploy/systemd/edge.yaml");
  ASSERT_TRUE(edge.ok()) << edge.status().ToString();
  EXPECT_EQ(edge->uplink.token, "a-token-of-the-server");
  EXPECT_EQ(edge->student.Fingerprint(), server->student.Fingerprint());
}

// The images' health check (`streamdistill-admin health`, as the Kubernetes probes and
// HAProxy ask): the server's own gRPC health service, per service and as a whole.
TEST(HealthProbeTest, AnswersWhatTheServersHealthServiceSays) {
  ScopedTempDir dir("deploy_health");
  auto config = ParseServerConfig(sd::testing::ServerYaml(dir.File("store")), "deploy_test.yaml");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  auto server = Server::Start(*config);
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  const std::string target = "127.0.0.1:" + std::to_string((*server)->port());

  HealthProbeOptions probe{target, "streamdistill.v1.EdgeLink"};
  StatusOr<std::string> serving = ProbeHealth(probe);
  ASSERT_TRUE(serving.ok()) << serving.status().ToString();
  EXPECT_EQ(*serving, "SERVING");
  probe.service = "no.such.Service";
  EXPECT_EQ(ProbeHealth(probe).status().code(), Status::Code::kNotFound);

  const RunResult cli = sd::testing::RunBinary("streamdistill-admin", "health --target " + target);
  EXPECT_EQ(cli.exit_code, 0) << cli.output;
  EXPECT_NE(cli.output.find("SERVING"), std::string::npos) << cli.output;

  (*server)->Shutdown();
  server->reset();
  probe.service = "";
  probe.timeout_s = 0.5;
  EXPECT_FALSE(ProbeHealth(probe).ok()) << "a stopped server answered";
  const RunResult gone = sd::testing::RunBinary("streamdistill-admin", "health --timeout 0.5 --target " + target);
  EXPECT_EQ(gone.exit_code, 1) << gone.output;
}

// A Kubernetes Secret or a 0600 file holds the device's token; edge.yaml names the file.
TEST(EdgeTokenFileTest, TheTokenComesFromAFileOrInlineNeverBoth) {
  ScopedTempDir dir("deploy_token");
  const std::string inline_yaml = sd::testing::EdgeYaml("cam1", "inline-token", 1, dir.File("state"), "synthetic:seed=1");
  const std::string without_token = std::regex_replace(inline_yaml, std::regex("token: inline-token\n"), "");
  const std::string token_file = dir.File("token");
  std::ofstream(token_file) << "file-token-0123\n";

  auto from_file = ParseEdgeConfig(without_token + "token_file: " + token_file + "\n", "edge.yaml");
  ASSERT_TRUE(from_file.ok()) << from_file.status().ToString();
  EXPECT_EQ(from_file->uplink.token, "file-token-0123");  // the line end is not part of it
  auto inline_token = ParseEdgeConfig(inline_yaml, "edge.yaml");
  ASSERT_TRUE(inline_token.ok()) << inline_token.status().ToString();
  EXPECT_EQ(inline_token->uplink.token, "inline-token");

  const std::string empty_file = dir.File("empty");
  std::ofstream(empty_file) << "\n";
  const struct {
    std::string yaml, key, problem;
  } refused[] = {
      {inline_yaml + "token_file: " + token_file + "\n", "token", "exactly one"},
      {without_token, "token", "exactly one"},
      {without_token + "token_file: " + dir.File("missing") + "\n", "token_file", "cannot read"},
      {without_token + "token_file: " + empty_file + "\n", "token_file", "empty"},
  };
  for (const auto& c : refused) {
    auto config = ParseEdgeConfig(c.yaml, "edge.yaml");
    ASSERT_FALSE(config.ok()) << c.yaml;
    EXPECT_NE(config.status().message().find("'" + c.key + "'"), std::string::npos) << config.status().message();
    EXPECT_NE(config.status().message().find(c.problem), std::string::npos) << config.status().message();
    EXPECT_EQ(config.status().message().find("file-token-0123"), std::string::npos) << "the secret leaked into an error";
  }
}

}  // namespace
}  // namespace sd
