// The edge against a real RTSP server on loopback (scripts/rtsp_test_server.py: GStreamer's
// RTSP server feeding the sample video): the server is killed, the edge's uplink drains its
// spool to a gRPC server started during the outage, and the RTSP server comes back at another
// resolution and frame rate. The edge must detect and sample again within 10 s of its return,
// without a restart, and /metrics must show the gap.
#include <gtest/gtest.h>
#include <httplib.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "edge/edge_agent.h"
#include "server/server.h"
#include "tests/child_process.h"
#include "tests/daemon_test_util.h"

namespace sd {
namespace {

using namespace sd::testing;

const char kVideo[] = "/usr/share/doc/opencv-doc/examples/data/vtest.avi";
const char kPython[] = "/usr/bin/python3";

// The RTSP server as a child process, at rtsp://127.0.0.1:<port>/stream once Ready().
std::unique_ptr<ChildProcess> StartRtspServer(int port, const std::string& log, const std::string& width,
                                               const std::string& height, const std::string& fps) {
  return std::make_unique<ChildProcess>(
      std::vector<std::string>{kPython, std::string(SD_SOURCE_DIR) + "/scripts/rtsp_test_server.py",
                               std::to_string(port), kVideo, width, height, fps},
      log);
}

bool Ready(const ChildProcess& server) { return server.Log().find("ready") != std::string::npos; }

// The value of the one series of `name` in a Prometheus text page; -1 when absent.
double MetricValue(const std::string& page, const std::string& name) {
  size_t at = 0;
  while ((at = page.find(name, at)) != std::string::npos) {
    const bool line_start = at == 0 || page[at - 1] == '\n';
    const char next = at + name.size() < page.size() ? page[at + name.size()] : '\0';
    if (line_start && (next == '{' || next == ' ')) {
      const size_t end = page.find('\n', at);
      const std::string line = page.substr(at, end - at);
      return std::atof(line.substr(line.rfind(' ') + 1).c_str());
    }
    at += name.size();
  }
  return -1;
}

std::string Scrape(int port) {
  httplib::Client client("127.0.0.1", port);
  auto response = client.Get("/metrics");
  return response && response->status == 200 ? response->body : "";
}

TEST(RtspReconnectTest, EdgeSurvivesTheStreamGoingAwayAndComingBackChanged) {
  ASSERT_TRUE(std::filesystem::exists(kPython)) << kPython << " is missing (scripts/setup.sh installs python3)";
  ASSERT_TRUE(std::filesystem::exists(kVideo)) << kVideo << " is missing (scripts/setup.sh installs opencv-doc)";
  const std::string dir = TempDir("rtsp");
  const int rtsp_port = FreePort();
  const int grpc_port = FreePort();
  const std::string rtsp_log = dir + "/rtsp.log";
  auto rtsp = StartRtspServer(rtsp_port, rtsp_log, "384", "288", "10");
  ASSERT_TRUE(WaitFor([&] { return Ready(*rtsp); }, 15))
      << "the RTSP server did not start (it needs python3-gi, gir1.2-gst-rtsp-server-1.0 and GStreamer's plugins "
         "from scripts/setup.sh): "
      << rtsp->Log();

  // No gRPC server yet: frames wait in the spool.
  const std::string yaml = "device_id: cam1\ntoken: secret-token-1\nserver: 127.0.0.1:" + std::to_string(grpc_port) +
                           "\nlink: {backoff_initial_s: 0.2, backoff_max_s: 1.0}\n"
                           "source:\n  uri: rtsp://127.0.0.1:" + std::to_string(rtsp_port) +
                           "/stream\n  timeout_s: 3\n  reconnect: {backoff_initial_s: 0.2, backoff_max_s: 1.0}\n" +
                           kTinyStudent + "model_seed: 3\nthreads: 1\ndetections: {path: " + dir +
                           "/detections.jsonl}\n"
                           "sampling: {strategy: uniform, uniform_probability: 1.0, budget_per_minute: 240}\n"
                           "http: {enabled: true, port: 0}\nstate_dir: " + dir + "/cam1\n";
  auto config = ParseEdgeConfig(yaml, "edge.yaml");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  auto agent = EdgeAgent::Create(*config);
  ASSERT_TRUE(agent.ok()) << agent.status().ToString();
  std::thread run([&] {
    const Status ran = (*agent)->Run();
    EXPECT_TRUE(ran.ok()) << ran.ToString();
  });
  auto stats = [&] { return (*agent)->stats(); };
  const int http = (*agent)->http_port();
  EXPECT_TRUE(WaitFor([&] { return stats().detected >= 10 && stats().queried >= 2; }, 20))
      << "no frames from the stream: " << stats().detected << " detected";
  EXPECT_EQ(MetricValue(Scrape(http), "streamdistill_edge_source_up"), 1);

  // The camera goes away.
  rtsp.reset();  // SIGKILL
  const auto killed = std::chrono::steady_clock::now();
  EXPECT_TRUE(WaitFor([&] { return !stats().source.up; }, 10)) << "the edge did not notice the stream ending";
  const auto noticed = std::chrono::steady_clock::now();
  const EdgeStats down = stats();
  EXPECT_EQ(MetricValue(Scrape(http), "streamdistill_edge_source_up"), 0);

  // Meanwhile the uplink works on: a server that appears now receives every spooled frame.
  std::string server_yaml = ServerYaml(dir + "/server");
  const auto replace = [&server_yaml](const std::string& from, const std::string& to) {
    server_yaml.replace(server_yaml.find(from), from.size(), to);
  };
  replace("listen: 127.0.0.1:0", "listen: 127.0.0.1:" + std::to_string(grpc_port));
  replace("trigger_frames: 8", "trigger_frames: 100000");  // storing frames is the point, not training
  replace("trigger_seconds: 3", "trigger_seconds: 100000");
  auto server_config = ParseServerConfig(server_yaml, "server.yaml");
  ASSERT_TRUE(server_config.ok()) << server_config.status().ToString();
  auto server = Server::Start(*server_config, []() -> StatusOr<std::unique_ptr<Teacher>> {
    return std::unique_ptr<Teacher>(std::make_unique<OneBoxTeacher>());
  });
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  EXPECT_TRUE(WaitFor([&] { return stats().uplink.frames_acked >= down.queried; }, 15))
      << stats().uplink.frames_acked << " of " << down.queried << " spooled frames acked during the outage";
  EXPECT_FALSE(stats().source.up) << "the test meant to drain the spool during the outage";
  EXPECT_EQ(stats().detected, down.detected);

  // The camera comes back with another resolution and frame rate.
  rtsp = StartRtspServer(rtsp_port, rtsp_log, "320", "240", "25");
  ASSERT_TRUE(WaitFor([&] { return Ready(*rtsp); }, 15)) << rtsp->Log();
  const auto returned = std::chrono::steady_clock::now();
  const bool resumed =
      WaitFor([&] { return stats().detected > down.detected && stats().queried > down.queried; }, 20);
  const double resumed_after_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - returned).count();
  const double gap_s = std::chrono::duration<double>(returned - killed).count();
  const double seen_gap_s = std::chrono::duration<double>(returned - noticed).count();
  EXPECT_TRUE(resumed) << "no detection or sample after the stream came back";
  EXPECT_LE(resumed_after_s, 10 * TimeScale()) << "detecting and sampling again took " << resumed_after_s << " s";
  const std::string page = Scrape(http);
  (*agent)->Stop();
  run.join();

  EXPECT_EQ(MetricValue(page, "streamdistill_edge_source_up"), 1) << page;
  EXPECT_EQ(MetricValue(page, "streamdistill_edge_source_drops_total"), 1) << page;
  EXPECT_EQ(MetricValue(page, "streamdistill_edge_source_reconnects_total"), 1) << page;
  EXPECT_GT(MetricValue(page, "streamdistill_edge_source_reopen_failures_total"), 0) << page;
  // The outage runs from the edge noticing the drop (at most timeout_s after the kill) to the
  // first frame after the return: at least from when the test saw it down to the return, at
  // most from the kill to the first frame again.
  const double outage = MetricValue(page, "streamdistill_edge_source_outage_seconds_total");
  EXPECT_GT(outage, seen_gap_s - 0.1) << page;
  EXPECT_LT(outage, gap_s + resumed_after_s + 0.5) << page;
  std::printf("stream away %.1f s; outage in /metrics %.1f s; detecting again %.1f s after its return\n", gap_s, outage,
              resumed_after_s);
}

}  // namespace
}  // namespace sd
