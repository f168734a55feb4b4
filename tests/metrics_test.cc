// The metrics registry's text exposition format (0.0.4) and the HTTP endpoint that serves it.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <string>
#include <thread>
#include <vector>

#include "common/obs/http_endpoint.h"
#include "common/obs/metrics.h"

namespace sd {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(MetricsTest, CountersAndGaugesRenderWithHelpTypeAndLabels) {
  MetricsRegistry registry;
  registry.AddCounter("sd_events_total", "Events seen.").With({}).Inc(3);
  auto& frames = registry.AddCounter("sd_frames_total", "Frames by device.", {"device", "reason"});
  frames.With({"cam1", "invalid"}).Inc();
  frames.With({"cam1", "invalid"}).Inc();
  frames.With({"cam2", "label"}).Inc(5);
  registry.AddGauge("sd_map50", "Held-out mAP50.", {"device"}).With({"cam1"}).Set(0.8125);
  EXPECT_TRUE(registry.status().ok()) << registry.status().ToString();
  EXPECT_EQ(registry.Render(),
            "# HELP sd_events_total Events seen.\n"
            "# TYPE sd_events_total counter\n"
            "sd_events_total 3\n"
            "# HELP sd_frames_total Frames by device.\n"
            "# TYPE sd_frames_total counter\n"
            "sd_frames_total{device=\"cam1\",reason=\"invalid\"} 2\n"
            "sd_frames_total{device=\"cam2\",reason=\"label\"} 5\n"
            "# HELP sd_map50 Held-out mAP50.\n"
            "# TYPE sd_map50 gauge\n"
            "sd_map50{device=\"cam1\"} 0.8125\n");
}

TEST(MetricsTest, UnlabelledSeriesShowZeroBeforeTheFirstEvent) {
  MetricsRegistry registry;
  registry.AddCounter("sd_a_total", "A.");
  registry.AddGauge("sd_b", "B.");
  registry.AddCounter("sd_c_total", "C.", {"device"});  // no device yet: no series
  const std::string text = registry.Render();
  EXPECT_THAT(text, HasSubstr("\nsd_a_total 0\n"));
  EXPECT_THAT(text, HasSubstr("\nsd_b 0\n"));
  EXPECT_THAT(text, HasSubstr("# TYPE sd_c_total counter\n"));
  EXPECT_THAT(text, Not(HasSubstr("sd_c_total{")));
}

TEST(MetricsTest, LabelValuesAndHelpAreEscaped) {
  EXPECT_EQ(EscapeLabelValue("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
  EXPECT_EQ(EscapeHelp("a\\b\"c\nd"), "a\\\\b\"c\\nd");  // quotes stay in HELP
  MetricsRegistry registry;
  registry.AddGauge("sd_g", "Line one\nline \\two.", {"device"}).With({"cam \"1\"\n\\"}).Set(1);
  const std::string text = registry.Render();
  EXPECT_THAT(text, HasSubstr("# HELP sd_g Line one\\nline \\\\two.\n"));
  EXPECT_THAT(text, HasSubstr("sd_g{device=\"cam \\\"1\\\"\\n\\\\\"} 1\n"));
}

TEST(MetricsTest, HistogramBucketsAreCumulativeWithSumAndCount) {
  MetricsRegistry registry;
  auto& family = registry.AddHistogram("sd_latency_seconds", "Latency.", {0.25, 0.5, 1}, {"device"});
  Histogram& h = family.With({"cam1"});
  for (double v : {0.125, 0.25, 0.375, 0.75, 3.0}) h.Observe(v);  // 0.25 falls in le="0.25": le is inclusive
  EXPECT_EQ(registry.Render(),
            "# HELP sd_latency_seconds Latency.\n"
            "# TYPE sd_latency_seconds histogram\n"
            "sd_latency_seconds_bucket{device=\"cam1\",le=\"0.25\"} 2\n"
            "sd_latency_seconds_bucket{device=\"cam1\",le=\"0.5\"} 3\n"
            "sd_latency_seconds_bucket{device=\"cam1\",le=\"1\"} 4\n"
            "sd_latency_seconds_bucket{device=\"cam1\",le=\"+Inf\"} 5\n"
            "sd_latency_seconds_sum{device=\"cam1\"} 4.5\n"
            "sd_latency_seconds_count{device=\"cam1\"} 5\n");
}

TEST(MetricsTest, UnlabelledHistogramPutsLeAlone) {
  MetricsRegistry registry;
  registry.AddHistogram("sd_round_seconds", "Rounds.", buckets::kRoundSeconds).With({}).Observe(33);
  const std::string text = registry.Render();
  EXPECT_THAT(text, HasSubstr("sd_round_seconds_bucket{le=\"30\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("sd_round_seconds_bucket{le=\"45\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("sd_round_seconds_bucket{le=\"+Inf\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("sd_round_seconds_sum 33\n"));
  EXPECT_THAT(text, HasSubstr("sd_round_seconds_count 1\n"));
}

TEST(MetricsTest, CallbackFamiliesAreReadAtEveryRender) {
  MetricsRegistry registry;
  int depth = 2;
  registry.AddCallback(MetricsRegistry::Type::kGauge, "sd_queue_depth", "Queue.", {},
                       [&depth](const MetricsRegistry::Emit& emit) { emit({}, depth); });
  registry.AddCallback(MetricsRegistry::Type::kCounter, "sd_bytes_total", "Bytes.", {"device"},
                       [](const MetricsRegistry::Emit& emit) {
                         emit({"cam1"}, 1e12);
                         emit({"cam2"}, 0.5);
                       });
  EXPECT_THAT(registry.Render(), HasSubstr("\nsd_queue_depth 2\n"));
  depth = 7;
  const std::string text = registry.Render();
  EXPECT_THAT(text, HasSubstr("\nsd_queue_depth 7\n"));
  EXPECT_THAT(text, HasSubstr("# TYPE sd_bytes_total counter\nsd_bytes_total{device=\"cam1\"} 1000000000000\n"
                              "sd_bytes_total{device=\"cam2\"} 0.5\n"));
}

TEST(MetricsTest, MiscountedLabelValuesStillRenderOnePerName) {
  MetricsRegistry registry;
  auto& family = registry.AddCounter("sd_x_total", "X.", {"device", "reason"});
  family.With({"cam1"}).Inc();
  family.With({"cam2", "a", "extra"}).Inc();
  const std::string text = registry.Render();
  EXPECT_THAT(text, HasSubstr("sd_x_total{device=\"cam1\",reason=\"\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("sd_x_total{device=\"cam2\",reason=\"a\"} 1\n"));
}

TEST(MetricsTest, BadNamesAndBoundsAreReportedAndNotRendered) {
  struct Case {
    const char* what;
    std::function<void(MetricsRegistry&)> add;
    const char* message;
  };
  const std::vector<Case> cases = {
      {"name with a dash", [](MetricsRegistry& r) { r.AddCounter("sd-bad", "x"); }, "'sd-bad' is not a valid"},
      {"name starting with a digit", [](MetricsRegistry& r) { r.AddGauge("1sd", "x"); }, "'1sd' is not a valid"},
      {"label with a colon", [](MetricsRegistry& r) { r.AddCounter("sd_ok", "x", {"a:b"}); }, "label name 'a:b'"},
      {"reserved label", [](MetricsRegistry& r) { r.AddCounter("sd_ok", "x", {"__name"}); }, "label name '__name'"},
      {"le on a histogram", [](MetricsRegistry& r) { r.AddHistogram("sd_ok", "x", {1}, {"le"}); }, "label name 'le'"},
      {"bounds not ascending", [](MetricsRegistry& r) { r.AddHistogram("sd_ok", "x", {1, 1}); }, "ascend"},
      {"no bounds", [](MetricsRegistry& r) { r.AddHistogram("sd_ok", "x", {}); }, "ascend"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    MetricsRegistry registry;
    c.add(registry);
    EXPECT_EQ(registry.status().code(), Status::Code::kInternal);
    EXPECT_THAT(registry.status().message(), HasSubstr(c.message));
    EXPECT_EQ(registry.Render(), "");
  }
  MetricsRegistry twice;
  twice.AddCounter("sd_once_total", "x").With({}).Inc();
  twice.AddGauge("sd_once_total", "y").With({}).Set(5);  // still usable, never rendered
  EXPECT_THAT(twice.status().message(), HasSubstr("registered twice"));
  EXPECT_EQ(twice.Render(), "# HELP sd_once_total x\n# TYPE sd_once_total counter\nsd_once_total 1\n");
}

TEST(MetricsTest, ConcurrentUpdatesAreAllCounted) {
  MetricsRegistry registry;
  auto& counters = registry.AddCounter("sd_n_total", "N.", {"device"});
  Histogram& h = registry.AddHistogram("sd_h", "H.", {0.5}).With({});
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 10000; ++i) {
        counters.With({"cam" + std::to_string(t % 2)}).Inc();
        h.Observe(i % 2 ? 1.0 : 0.25);
      }
    });
  for (auto& t : threads) t.join();
  const std::string text = registry.Render();
  EXPECT_THAT(text, HasSubstr("sd_n_total{device=\"cam0\"} 20000\n"));
  EXPECT_THAT(text, HasSubstr("sd_n_total{device=\"cam1\"} 20000\n"));
  EXPECT_THAT(text, HasSubstr("sd_h_bucket{le=\"0.5\"} 20000\n"));
  EXPECT_THAT(text, HasSubstr("sd_h_sum 25000\n"));
  EXPECT_THAT(text, HasSubstr("sd_h_count 40000\n"));
}

HttpOptions Loopback(int port = 0) {
  HttpOptions options;
  options.enabled = true;
  options.bind = "127.0.0.1";
  options.port = port;
  return options;
}

TEST(HttpEndpointTest, ServesMetricsAndRegisteredRoutes) {
  MetricsRegistry registry;
  Counter& hits = registry.AddCounter("sd_hits_total", "Hits.").With({});
  HttpEndpoint endpoint(Loopback(), "test");
  ASSERT_TRUE(endpoint.ServeMetrics(&registry).ok());
  ASSERT_TRUE(endpoint
                  .Handle("/echo",
                          [](const HttpRequest& request) {
                            HttpResponse response;
                            response.content_type = "application/json";
                            auto it = request.params.find("device");
                            response.body = request.path + " " + (it == request.params.end() ? "-" : it->second);
                            return response;
                          })
                  .ok());
  ASSERT_TRUE(endpoint.Start().ok());
  ASSERT_GT(endpoint.port(), 0);
  EXPECT_EQ(endpoint.Handle("/late", [](const HttpRequest&) { return HttpResponse(); }).code(),
            Status::Code::kFailedPrecondition);

  httplib::Client client("127.0.0.1", endpoint.port());
  client.set_connection_timeout(5);
  client.set_read_timeout(5);
  hits.Inc(2);
  auto metrics = client.Get("/metrics");
  ASSERT_TRUE(metrics) << httplib::to_string(metrics.error());
  EXPECT_EQ(metrics->status, 200);
  EXPECT_EQ(metrics->get_header_value("Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_THAT(metrics->body, HasSubstr("\nsd_hits_total 2\n"));

  auto echo = client.Get("/echo?device=cam%201");
  ASSERT_TRUE(echo);
  EXPECT_EQ(echo->body, "/echo cam 1");
  EXPECT_EQ(echo->get_header_value("Content-Type"), "application/json");
  auto missing = client.Get("/nothing");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);

  endpoint.Stop();
  endpoint.Stop();  // idempotent
  EXPECT_FALSE(client.Get("/metrics"));
}

TEST(HttpEndpointTest, PortInUseIsAnErrorNamingIt) {
  HttpEndpoint first(Loopback(), "first");
  ASSERT_TRUE(first.Start().ok());
  HttpEndpoint second(Loopback(first.port()), "second daemon");
  const Status started = second.Start();
  EXPECT_EQ(started.code(), Status::Code::kUnavailable);
  EXPECT_THAT(started.message(), HasSubstr("127.0.0.1:" + std::to_string(first.port())));
  EXPECT_THAT(started.message(), HasSubstr("second daemon"));
  EXPECT_THAT(started.message(), HasSubstr("http.port"));
}

TEST(HttpEndpointTest, StopRightAfterStartReturns) {
  // httplib ignores a stop() before its loop runs; Start() waits for the loop, so this ends.
  for (int i = 0; i < 20; ++i) {
    HttpEndpoint endpoint(Loopback(), "test");
    ASSERT_TRUE(endpoint.Start().ok());
  }
}

}  // namespace
}  // namespace sd
