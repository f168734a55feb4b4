// The daemons' /metrics as a user sees it: read directly from a running server over HTTP, and
// scraped by the real Prometheus (/usr/bin/prometheus, from scripts/setup.sh) while a real
// server and edge run on loopback, then read back through Prometheus's query API.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>

#include "common/obs/http_endpoint.h"
#include "edge/edge_agent.h"
#include "server/server.h"
#include "tests/child_process.h"
#include "tests/daemon_test_util.h"
#include "tests/protocol_client.h"

namespace sd {
namespace {

using namespace sd::testing;
using ::testing::HasSubstr;

constexpr double kMissing = std::numeric_limits<double>::quiet_NaN();
constexpr char kPrometheus[] = "/usr/bin/prometheus";

// The value of the sample `series` (name and labels exactly as rendered) in a /metrics text;
// NaN when there is none.
double Sample(const std::string& text, const std::string& series) {
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line))
    if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
  return kMissing;
}

// OneBoxTeacher after `seconds` of work per frame.
class SlowTeacher : public OneBoxTeacher {
 public:
  explicit SlowTeacher(double seconds) : seconds_(seconds) {}
  StatusOr<Detections> Label(const cv::Mat& bgr) override {
    std::this_thread::sleep_for(std::chrono::duration<double>(seconds_));
    return OneBoxTeacher::Label(bgr);
  }

 private:
  double seconds_;
};

// teacher_seconds 0: labels at once, for tests about counting, not about the teacher.
StatusOr<std::unique_ptr<Server>> StartServer(const std::string& dir, double teacher_seconds = 0) {
  auto config = ParseServerConfig(ServerYaml(dir), "prometheus-server.yaml");
  if (!config.ok()) return config.status();
  return Server::Start(*config, [teacher_seconds]() -> StatusOr<std::unique_ptr<Teacher>> {
    return std::unique_ptr<Teacher>(std::make_unique<SlowTeacher>(teacher_seconds));
  });
}

TEST(ServerMetricsTest, GetMetricsCountsTheFramesOfAStream) {
  const std::string dir = TempDir("server_metrics");
  constexpr double kTeacherSeconds = 0.06;
  auto server = StartServer(dir + "/server", kTeacherSeconds);
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  ASSERT_GT((*server)->http_port(), 0);

  Stream stream(grpc::CreateChannel("127.0.0.1:" + std::to_string((*server)->port()),
                                    grpc::InsecureChannelCredentials()));
  ASSERT_TRUE(stream.Send(HelloMessage((*server)->core().config().student.Fingerprint(), "cam1", "secret-token-1")));
  streamdistill::v1::ServerMessage message;
  ASSERT_TRUE(stream.Next(&message));
  ASSERT_TRUE(message.has_welcome()) << message.ShortDebugString();
  const std::string jpeg = RealJpeg();
  for (uint64_t sequence : {1, 2, 3}) ASSERT_TRUE(stream.Send(FrameMessage(sequence, jpeg)));
  ASSERT_TRUE(stream.Send(FrameMessage(0, jpeg)));  // sequence 0: refused before labelling
  int acks = 0;
  while (acks < 4 && stream.Next(&message)) acks += message.has_ack();
  ASSERT_EQ(acks, 4);

  httplib::Client client("127.0.0.1", (*server)->http_port());
  client.set_read_timeout(10);
  auto response = client.Get("/metrics");
  ASSERT_TRUE(response) << httplib::to_string(response.error());
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->get_header_value("Content-Type"), kPrometheusContentType);
  const std::string& text = response->body;
  EXPECT_THAT(text, HasSubstr("# TYPE streamdistill_server_frames_received_total counter\n"));
  EXPECT_EQ(Sample(text, "streamdistill_server_frames_received_total{device=\"cam1\"}"), 4) << text;
  EXPECT_EQ(Sample(text, "streamdistill_server_frames_acked_total{device=\"cam1\"}"), 3);
  EXPECT_EQ(Sample(text, "streamdistill_server_frames_rejected_total{device=\"cam1\",reason=\"invalid\"}"), 1);
  EXPECT_EQ(Sample(text, "streamdistill_server_stored_frames{device=\"cam1\"}"), 3);
  EXPECT_EQ(Sample(text, "streamdistill_server_stored_bytes{device=\"cam1\"}"), 3.0 * jpeg.size());
  EXPECT_EQ(Sample(text, "streamdistill_server_stream_connected{device=\"cam1\"}"), 1);
  EXPECT_EQ(Sample(text, "streamdistill_server_stream_connected{device=\"cam2\"}"), 0);
  EXPECT_EQ(Sample(text, "streamdistill_server_device_served_version{device=\"cam1\"}"), 0);
  EXPECT_EQ(Sample(text, "streamdistill_server_device_version{device=\"cam1\"}"), 0);
  EXPECT_EQ(Sample(text, "streamdistill_server_label_seconds_count"), 3);
  EXPECT_EQ(Sample(text, "streamdistill_server_labeler_queue_capacity"), 8);
  EXPECT_EQ(Sample(text, "streamdistill_server_labeler_queue_depth"), 0);
  EXPECT_GT(Sample(text, "streamdistill_server_received_bytes_total{device=\"cam1\"}"), 4.0 * jpeg.size());
  EXPECT_GT(Sample(text, "streamdistill_server_sent_bytes_total{device=\"cam1\"}"), 0);
  // Issue 24's cost of the shared state: a frame's ack latency (read off the stream -> ack
  // sent) for the frames acked as stored, not the refused one. One labeller: each frame waited
  // for at least one teacher's time. The store's own histogram holds only its part.
  EXPECT_THAT(text, HasSubstr("# TYPE streamdistill_server_frame_ack_seconds histogram\n"));
  EXPECT_EQ(Sample(text, "streamdistill_server_frame_ack_seconds_count"), 3);
  EXPECT_EQ(Sample(text, "streamdistill_server_frame_ack_seconds_bucket{le=\"0.05\"}"), 0);
  const double ack_sum = Sample(text, "streamdistill_server_frame_ack_seconds_sum");
  EXPECT_GE(ack_sum, 3 * kTeacherSeconds);
  EXPECT_LT(ack_sum, 30);
  EXPECT_EQ(Sample(text, "streamdistill_server_frame_store_seconds_count"), 3);
  const double store_sum = Sample(text, "streamdistill_server_frame_store_seconds_sum");
  EXPECT_GT(store_sum, 0);
  EXPECT_LT(store_sum, ack_sum - 3 * kTeacherSeconds + 1e-6) << "the store's part holds no teacher's time";
  EXPECT_EQ(stream.Close().error_code(), grpc::StatusCode::OK);
}

// Prometheus as a child process on a free loopback port, scraping `targets` (job -> port)
// every second into a temporary store.
class PrometheusProcess {
 public:
  PrometheusProcess(const std::string& dir, const std::map<std::string, int>& targets) : port_(FreePort()) {
    std::ofstream config(dir + "/prometheus.yml");
    config << "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n";
    for (const auto& [job, port] : targets)
      config << "  - job_name: " << job << "\n    static_configs:\n      - targets: ['127.0.0.1:" << port << "']\n";
    config.close();
    process_ = std::make_unique<ChildProcess>(
        std::vector<std::string>{kPrometheus, "--config.file=" + dir + "/prometheus.yml",
                                 "--storage.tsdb.path=" + dir + "/tsdb",
                                 "--web.listen-address=127.0.0.1:" + std::to_string(port_), "--log.level=warn"},
        dir + "/prometheus.log");
    client_ = std::make_unique<httplib::Client>("127.0.0.1", port_);
    client_->set_connection_timeout(2);
    client_->set_read_timeout(5);
  }
  ~PrometheusProcess() {
    process_->Signal(SIGTERM);
    process_->WaitExit(std::chrono::seconds(10));  // else the ChildProcess kills it
  }

  bool started() const { return process_->started(); }
  std::string Log() const { return process_->Log(); }
  bool Ready() {
    auto response = client_->Get("/-/ready");
    return response && response->status == 200;
  }
  // The value of the query's first series now; NaN when it has none (yet).
  double Query(const std::string& query) {
    auto response = client_->Get(httplib::append_query_params("/api/v1/query", {{"query", query}}).c_str());
    if (!response || response->status != 200) return kMissing;
    const auto json = nlohmann::json::parse(response->body, nullptr, /*allow_exceptions=*/false);
    if (json.is_discarded() || json.value("status", "") != "success") return kMissing;
    const auto& result = json["data"]["result"];
    if (!result.is_array() || result.empty()) return kMissing;
    return std::stod(result[0]["value"][1].get<std::string>());  // [time, "value"]
  }

 private:
  const int port_;
  std::unique_ptr<ChildProcess> process_;
  std::unique_ptr<httplib::Client> client_;
};

// Polls `condition` every 200 ms until it holds or `seconds` (scaled) have passed.
template <typename Condition>
bool WaitUntil(Condition condition, double seconds) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds * TimeScale());
  while (!condition()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return true;
}

TEST(PrometheusTest, ScrapesServerAndEdgeDuringARun) {
  ASSERT_TRUE(std::filesystem::exists(kPrometheus))
      << kPrometheus << " is missing: install the Debian package prometheus (bash scripts/setup.sh)";
  const std::string dir = TempDir("prometheus");
  auto server = StartServer(dir + "/server");
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  auto edge_config = ParseEdgeConfig(EdgeYaml("cam1", "secret-token-1", (*server)->port(), dir + "/cam1",
                                              SyntheticUri(11), "http: {enabled: true, port: 0}\n"),
                                     "prometheus-edge.yaml");
  ASSERT_TRUE(edge_config.ok()) << edge_config.status().ToString();
  auto edge = EdgeAgent::Create(*edge_config);
  ASSERT_TRUE(edge.ok()) << edge.status().ToString();
  ASSERT_GT((*edge)->http_port(), 0);
  std::thread run([&edge] { EXPECT_TRUE((*edge)->Run().ok()); });
  struct StopEdge {
    EdgeAgent* edge;
    std::thread* run;
    ~StopEdge() {
      edge->Stop();
      run->join();
    }
  } stop_edge{edge->get(), &run};

  PrometheusProcess prometheus(dir, {{"streamdistill-server", (*server)->http_port()},
                                     {"streamdistill-edge", (*edge)->http_port()}});
  ASSERT_TRUE(prometheus.started());
  ASSERT_TRUE(WaitUntil([&] { return prometheus.Ready(); }, 30)) << "Prometheus not ready:\n" << prometheus.Log();
  // up == 1: Prometheus scraped the target and parsed every line it served.
  ASSERT_TRUE(WaitUntil(
      [&] {
        return prometheus.Query("up{job=\"streamdistill-server\"}") == 1 &&
               prometheus.Query("up{job=\"streamdistill-edge\"}") == 1;
      },
      20))
      << "server up " << prometheus.Query("up{job=\"streamdistill-server\"}") << ", edge up "
      << prometheus.Query("up{job=\"streamdistill-edge\"}") << "\n"
      << prometheus.Log();

  const std::string received = "streamdistill_server_frames_received_total{device=\"cam1\"}";
  double first = kMissing;
  ASSERT_TRUE(WaitUntil([&] { return (first = prometheus.Query(received)) > 0; }, 20)) << received << " " << first;
  double later = kMissing;
  EXPECT_TRUE(WaitUntil([&] { return (later = prometheus.Query(received)) > first; }, 20))
      << received << " stayed at " << first << " (now " << later << ")";

  EXPECT_TRUE(WaitUntil([&] { return prometheus.Query("streamdistill_server_stream_connected{device=\"cam1\"}") == 1; },
                        10));
  EXPECT_GT(prometheus.Query("streamdistill_server_label_seconds_count"), 0);
  EXPECT_EQ(prometheus.Query("streamdistill_server_labeler_queue_capacity"), 8);
  EXPECT_GT(prometheus.Query("streamdistill_edge_frames_read_total{device=\"cam1\"}"), 0);
  EXPECT_TRUE(WaitUntil([&] { return prometheus.Query("streamdistill_edge_link_up{device=\"cam1\"}") == 1; }, 10));
  EXPECT_GT(prometheus.Query("streamdistill_edge_sent_bytes_total{device=\"cam1\"}"), 0);
  // The buckets are usable as Prometheus means them: a median from their rate.
  double median = kMissing;
  EXPECT_TRUE(WaitUntil(
      [&] {
        median = prometheus.Query(
            "histogram_quantile(0.5, rate(streamdistill_edge_inference_seconds_bucket{device=\"cam1\"}[10s]))");
        return median > 0 && median < 1;
      },
      15))
      << "median inference time " << median;
}

}  // namespace
}  // namespace sd
