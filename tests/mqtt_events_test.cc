// Object events out over MQTT (issue 27, item 4): the tracker's new/update/end semantics, the
// `mqtt:` keys' errors, and the edge against a real mosquitto broker on loopback, subscribed by
// the real mosquitto_sub with a persistent session: every event the detections file records
// arrives once, in order per track, across a broker restart mid-run; a broker that refuses the
// credentials leaves the edge detecting, with one warning. The same over TLS (certificates made
// at test time with openssl), with credentials from files: events arrive once; a broker
// certificate the edge does not trust, or a missing client certificate, is one warning.
#include <gtest/gtest.h>

#include <condition_variable>
#include <fstream>
#include <mutex>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include "edge/detection_sink.h"
#include "edge/edge_agent.h"
#include "edge/event_sequence.h"
#include "edge/mqtt_publisher.h"
#include "edge/object_tracker.h"
#include "tests/child_process.h"
#include "tests/daemon_test_util.h"
#include "tests/test_certificates.h"

namespace sd {
namespace {

using namespace sd::testing;
using nlohmann::json;

constexpr char kMosquitto[] = "/usr/sbin/mosquitto";
constexpr char kMosquittoSub[] = "/usr/bin/mosquitto_sub";
constexpr char kMosquittoPasswd[] = "/usr/bin/mosquitto_passwd";

Detection Det(float x1, float y1, float x2, float y2, float score = 0.8f, int class_id = 0) {
  Detection d;
  d.box = {x1, y1, x2, y2};
  d.score = score;
  d.class_id = class_id;
  return d;
}

std::vector<ObjectEvent> Step(ObjectTracker* tracker, int64_t frame, const Detections& detections,
                              const std::vector<std::vector<std::string>>* zones = nullptr) {
  std::vector<ObjectEvent> events;
  tracker->Observe(frame, frame * 0.1, 1, detections, zones, &events);  // 10 frames a second
  return events;
}

TEST(ObjectTrackerTest, NewUpdateEndByFramesAndTime) {
  TrackerOptions options;
  options.end_after_frames = 3;
  options.end_after_s = 0;
  options.update_interval_s = 0.5;
  ObjectTracker tracker(options);
  auto events = Step(&tracker, 0, {Det(10, 10, 50, 90)});
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, ObjectEventKind::kNew);
  EXPECT_EQ(events[0].track_id, 1u);
  // Jitter: no update; a large move inside the interval: none yet; after it: one.
  EXPECT_TRUE(Step(&tracker, 1, {Det(11, 10, 51, 90)}).empty());
  EXPECT_TRUE(Step(&tracker, 2, {Det(20, 10, 60, 90)}).empty());
  events = Step(&tracker, 5, {Det(22, 10, 62, 90, 0.9f)});
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, ObjectEventKind::kUpdate);
  EXPECT_FLOAT_EQ(events[0].box.x1, 22);
  EXPECT_FLOAT_EQ(events[0].top_score, 0.9f);
  EXPECT_DOUBLE_EQ(events[0].start_time_s, 0);
  // Unseen on two frames: still open; on the third: ended, with where it was last.
  EXPECT_TRUE(Step(&tracker, 6, {}).empty());
  EXPECT_TRUE(Step(&tracker, 7, {}).empty());
  events = Step(&tracker, 8, {});
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, ObjectEventKind::kEnd);
  EXPECT_EQ(events[0].frame, 8);
  EXPECT_FLOAT_EQ(events[0].box.x1, 22);
  EXPECT_EQ(tracker.open_tracks(), 0u);

  // By time: 1 s unseen ends it whatever the frame count.
  options.end_after_frames = 0;
  options.end_after_s = 1.0;
  ObjectTracker timed(options);
  Step(&timed, 0, {Det(10, 10, 50, 90)});
  EXPECT_TRUE(Step(&timed, 9, {}).empty());
  events = Step(&timed, 10, {});
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, ObjectEventKind::kEnd);
}

TEST(ObjectTrackerTest, MatchesPerClassBestFirstAndZonesUpdateAtOnce) {
  TrackerOptions options;
  options.update_interval_s = 100;  // only a zone change may update
  ObjectTracker tracker(options);
  auto events = Step(&tracker, 0, {Det(0, 0, 40, 40), Det(100, 0, 140, 40, 0.8f, 1)});
  ASSERT_EQ(events.size(), 2u);
  // The class-1 box moves onto the class-0 track's place: another class, so a new track there,
  // and the class-1 track, unseen, stays open.
  events = Step(&tracker, 1, {Det(0, 0, 40, 40), Det(2, 0, 42, 40, 0.7f, 1)});
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, ObjectEventKind::kNew);
  EXPECT_EQ(events[0].track_id, 3u);
  EXPECT_EQ(events[0].class_id, 1);
  // Two detections over one track: the better overlap continues it, the other is new.
  ObjectTracker greedy(options);
  Step(&greedy, 0, {Det(0, 0, 40, 40)});
  events = Step(&greedy, 1, {Det(10, 0, 50, 40), Det(1, 0, 41, 40)});
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, ObjectEventKind::kNew);
  EXPECT_FLOAT_EQ(events[0].box.x1, 10);
  // Walking into a zone is news at once, interval or not.
  const std::vector<std::vector<std::string>> door = {{"door"}};
  events = Step(&tracker, 2, {Det(0, 0, 40, 40)}, &door);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, ObjectEventKind::kUpdate);
  EXPECT_EQ(events[0].zones, std::vector<std::string>{"door"});
  // EndAll ends what is open, in id order.
  events.clear();
  tracker.EndAll(3, 0.3, &events);
  ASSERT_EQ(events.size(), 3u);
  for (const ObjectEvent& e : events) EXPECT_EQ(e.kind, ObjectEventKind::kEnd);
  EXPECT_EQ(events[0].track_id, 1u);
}

TEST(EventSequenceTest, NeverRepeatsANumberAcrossRestarts) {
  const std::string path = TempDir("seq") + "/event_sequence";
  uint64_t last = 0;
  for (int run = 0; run < 3; ++run) {
    auto seq = EventSequence::Open(Env::Default(), path, 4);
    ASSERT_TRUE(seq.ok()) << seq.status().ToString();
    for (int i = 0; i < 6; ++i) {
      const uint64_t n = (*seq)->Next();
      EXPECT_GT(n, last);
      last = n;
    }
  }
}

TEST(MqttOptionsTest, BrokerUris) {
  auto a = ParseBrokerUri("tcp://127.0.0.1:1884");
  ASSERT_TRUE(a.ok());
  EXPECT_FALSE(a->tls);
  EXPECT_EQ(a->port, 1884);
  a = ParseBrokerUri("ssl://broker.lan");
  ASSERT_TRUE(a.ok());
  EXPECT_TRUE(a->tls);
  EXPECT_EQ(a->port, 8883);
  a = ParseBrokerUri("tcp://[::1]:1883");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->host, "::1");
  for (const char* bad : {"broker:1883", "http://x", "tcp://", "tcp://h:0", "tcp://h:99999", "tcp://h:1883/x"})
    EXPECT_FALSE(ParseBrokerUri(bad).ok()) << bad;
}

TEST(MqttOptionsTest, BadKeysAreRefusedWithTheirKey) {
  const std::string dir = TempDir("config");
  const std::string base = EdgeYaml("cam1", "secret-token-1", 1, dir, "synthetic:seed=1");
  const std::string empty_file = dir + "/empty";
  std::ofstream(empty_file) << "\n";
  const struct {
    std::string yaml, key, problem;
  } cases[] = {
      {"mqtt: {enabled: true, broker: 'http://broker:1883'}\n", "mqtt.broker", "tcp://host"},
      {"mqtt: {enabled: true, qos: 3}\n", "mqtt.qos", "0, 1 or 2"},
      {"mqtt: {enabled: true, username_file: " + empty_file + "}\n", "mqtt.username_file", "empty"},
      {"mqtt: {enabled: true, password_file: /nonexistent/mqtt.pw}\n", "mqtt.password_file", "cannot read"},
      {"mqtt: {enabled: true, queue_max_events: 0}\n", "mqtt.queue_max_events", ">= 1"},
      {"mqtt: {enabled: true, topic_prefix: 'home/#'}\n", "mqtt.topic_prefix", "'#'"},
      {"mqtt: {enabled: true, tls: {ca: /etc/hostname}}\n", "mqtt.tls.ca", "not ssl://"},
      {"mqtt: {enabled: true, tls: {ca: /nonexistent/ca.pem}}\n", "mqtt.tls.ca", "cannot read"},
      {"mqtt: {enabled: true, brokr: 'tcp://x'}\n", "mqtt.brokr", ""},
      {"tracking: {end_after_frames: 0, end_after_s: 0}\n", "tracking.end_after_frames", "no track would end"},
  };
  for (const auto& c : cases) {
    auto config = ParseEdgeConfig(base + c.yaml, "edge.yaml");
    ASSERT_FALSE(config.ok()) << c.yaml;
    EXPECT_NE(config.status().message().find("'" + c.key + "'"), std::string::npos) << config.status().message();
    EXPECT_NE(config.status().message().find(c.problem), std::string::npos) << config.status().message();
  }
  // A device id that would split the topic, only with mqtt on.
  const std::string slashed = EdgeYaml("cams/1", "secret-token-1", 1, dir, "synthetic:seed=1");
  EXPECT_TRUE(ParseEdgeConfig(slashed, "edge.yaml").ok());
  auto config = ParseEdgeConfig(slashed + "mqtt: {enabled: true}\n", "edge.yaml");
  ASSERT_FALSE(config.ok());
  EXPECT_NE(config.status().message().find("'device_id'"), std::string::npos) << config.status().message();
}

// A real mosquitto on a free loopback port, its config and persistence in `dir`; restartable on
// the same port with the same state.
class Broker {
 public:
  Broker(std::string dir, std::string extra_config = "") : dir_(std::move(dir)), port_(FreePort()) {
    std::ofstream conf(dir_ + "/mosquitto.conf");
    conf << "listener " << port_ << " 127.0.0.1\n"
         << "persistence true\npersistence_location " << dir_ << "/\n"
         << (getuid() == 0 ? "user root\n" : "") << "log_dest stderr\n"
         << (extra_config.empty() ? "allow_anonymous true\n" : extra_config);
  }
  bool Start() {
    process_ = std::make_unique<ChildProcess>(std::vector<std::string>{kMosquitto, "-c", dir_ + "/mosquitto.conf"},
                                              dir_ + "/mosquitto.log");
    // Up once it accepts a connection.
    return WaitFor([&] { return Connectable(); }, 10);
  }
  // SIGTERM: mosquitto saves its state (sessions, queued messages) and exits.
  void Stop() {
    process_->Signal(SIGTERM);
    EXPECT_TRUE(process_->WaitExit(std::chrono::seconds(10)).has_value());
    process_.reset();
  }
  int port() const { return port_; }
  std::string Log() const {
    std::ifstream in(dir_ + "/mosquitto.log");
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

 private:
  bool Connectable() const {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(port_));
    const bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    close(fd);
    return ok;
  }
  std::string dir_;
  int port_;
  std::unique_ptr<ChildProcess> process_;
};

// What mosquitto_sub -v printed: (topic, payload) per message, in arrival order.
std::vector<std::pair<std::string, std::string>> Received(const std::string& log) {
  std::vector<std::pair<std::string, std::string>> messages;
  std::istringstream in(log);
  for (std::string line; std::getline(in, line);) {
    const size_t space = line.find(' ');
    if (space == std::string::npos) continue;
    messages.emplace_back(line.substr(0, space), line.substr(space + 1));
  }
  return messages;
}

std::vector<json> FileEvents(const std::string& path) {
  std::vector<json> events;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    json parsed = json::parse(line);
    if (parsed.contains("event")) events.push_back(std::move(parsed));
  }
  return events;
}

size_t EventsReceived(const std::string& sub_log) {
  size_t n = 0;
  for (const auto& [topic, payload] : Received(sub_log)) n += topic == "sdtest/cam1/events";
  return n;
}

// The last availability payload mosquitto_sub received ("" before any).
std::string LastAvailability(const std::string& sub_log) {
  std::string last;
  for (const auto& [topic, payload] : Received(sub_log))
    if (topic == "sdtest/cam1/availability") last = payload;
  return last;
}

// What mosquitto_sub received against the events the detections file records: each received
// event is one of them, to the letter, and comes after its track's earlier events.
struct Arrivals {
  int missing = 0;                        // recorded, never received
  int twice = 0;                          // received more than once
  std::vector<std::string> availability;  // the availability payloads, in order
};
Arrivals CheckArrivals(const std::vector<json>& recorded, const std::string& sub_log) {
  std::map<uint64_t, std::string> by_seq;
  for (const json& e : recorded) by_seq[e["seq"].get<uint64_t>()] = e.dump();
  EXPECT_EQ(by_seq.size(), recorded.size()) << "a seq repeated in the file";
  Arrivals result;
  std::map<uint64_t, int> arrivals;
  std::map<uint64_t, uint64_t> last_seq_of_track;
  for (const auto& [topic, payload] : Received(sub_log)) {
    if (topic == "sdtest/cam1/availability") {
      result.availability.push_back(payload);
      continue;
    }
    EXPECT_EQ(topic, "sdtest/cam1/events");
    const json event = json::parse(payload);
    const uint64_t seq = event["seq"].get<uint64_t>();
    if (by_seq.count(seq) == 0) {
      ADD_FAILURE() << "received an event the file does not hold: " << payload;
      continue;
    }
    EXPECT_EQ(event.dump(), by_seq[seq]) << "seq " << seq;
    ++arrivals[seq];
    const uint64_t track = event["id"].get<uint64_t>();
    EXPECT_GT(seq, last_seq_of_track[track]) << "track " << track << " out of order";
    last_seq_of_track[track] = seq;
  }
  for (const auto& [seq, line] : by_seq) {
    result.missing += arrivals[seq] == 0;
    result.twice += arrivals[seq] > 1;
  }
  return result;
}

// spdlog's default logger, into a string while this lives.
class CapturedLog {
 public:
  CapturedLog() : previous_(spdlog::default_logger()) {
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out_);
    spdlog::set_default_logger(std::make_shared<spdlog::logger>("capture", sink));
  }
  ~CapturedLog() { spdlog::set_default_logger(previous_); }
  CapturedLog(const CapturedLog&) = delete;
  CapturedLog& operator=(const CapturedLog&) = delete;
  std::string str() const { return out_.str(); }

 private:
  std::ostringstream out_;
  std::shared_ptr<spdlog::logger> previous_;
};

size_t Occurrences(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// A password file for the broker with the user `camera`, password `right-password`.
bool MakePasswordFile(const std::string& broker_dir) {
  ChildProcess passwd({kMosquittoPasswd, "-b", "-c", broker_dir + "/passwords", "camera", "right-password"},
                      broker_dir + "/passwd.log");
  const std::optional<int> status = passwd.WaitExit(std::chrono::seconds(10));
  return status.has_value() && WIFEXITED(*status) && WEXITSTATUS(*status) == 0;
}

// 200 frames of a random student that sees boxes everywhere (score threshold 0): about 300
// events. `scheme`: tcp, or ssl for the broker's TLS listener.
std::string MqttYaml(const std::string& dir, int port, const std::string& extra = "",
                     const std::string& scheme = "tcp") {
  return EdgeYaml("cam1", "secret-token-1", 1, dir,
                  "synthetic:seed=4,frames=200,classes=1,width=256,height=192,fps=25,objects=4") +
         "inference: {score_threshold: 0.0, max_detections: 4}\n"
         "mqtt: {enabled: true, broker: '" + scheme + "://127.0.0.1:" +
         std::to_string(port) +
         "', topic_prefix: sdtest, backoff_initial_s: 0.1, backoff_max_s: 0.3" + extra + "}\n";
}

// The configured source, held before frame `open_until()` until the test lets it go further:
// the test, not the machine's speed, decides which frames the edge sees while the broker is away.
class GatedSource : public FrameSource {
 public:
  explicit GatedSource(std::unique_ptr<FrameSource> source) : source_(std::move(source)) {}
  void OpenUntil(int64_t frame) {
    std::lock_guard<std::mutex> lock(mu_);
    open_until_ = frame;
    cv_.notify_all();
  }
  StatusOr<bool> Next(Frame* frame) override {
    SD_ASSIGN_OR_RETURN(const bool got, source_->Next(frame));
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return !got || frame->index < open_until_; });
    return got;
  }
  double fps() const override { return source_->fps(); }
  int64_t frame_count() const override { return source_->frame_count(); }
  std::string description() const override { return source_->description(); }

 private:
  std::unique_ptr<FrameSource> source_;
  std::mutex mu_;
  std::condition_variable cv_;
  int64_t open_until_ = 0;
};

// `gate`: when given, set to the agent's gated source (closed until OpenUntil).
StatusOr<std::unique_ptr<EdgeAgent>> MakeAgent(const std::string& yaml, GatedSource** gate = nullptr) {
  SD_ASSIGN_OR_RETURN(EdgeConfig config, ParseEdgeConfig(yaml, "edge.yaml"));
  config.source.loop = false;
  config.source.realtime = false;
  if (gate == nullptr) return EdgeAgent::Create(config);
  SD_ASSIGN_OR_RETURN(auto source, OpenFrameSource(config.source, Clock::Real()));
  auto gated = std::make_unique<GatedSource>(std::move(source));
  *gate = gated.get();
  return EdgeAgent::Create(config, Clock::Real(), std::move(gated));
}

bool HaveMosquitto() { return access(kMosquitto, X_OK) == 0 && access(kMosquittoSub, X_OK) == 0; }

TEST(MqttEventsTest, EveryEventArrivesOnceAcrossABrokerRestart) {
  if (!HaveMosquitto()) GTEST_SKIP() << kMosquitto << " or " << kMosquittoSub << " missing (apt-get install mosquitto mosquitto-clients)";
  const std::string dir = TempDir("edge");
  Broker broker(TempDir("broker"));
  ASSERT_TRUE(broker.Start()) << broker.Log();
  // A persistent session (-c, a fixed id): what the broker holds for it while it is away comes
  // when it is back. QoS 2 on both legs: with QoS 1 a message the broker sent but whose
  // acknowledgement it had not read when it stopped is sent again after the restart (seen
  // here: 1 duplicate in 317 events in 2 of 3 runs), which consumers drop by `seq`.
  const std::string sub_log = dir + "/sub.log";
  ChildProcess sub({kMosquittoSub, "-h", "127.0.0.1", "-p", std::to_string(broker.port()), "-i", "sdtest-sub", "-c",
                    "-q", "2", "-t", "sdtest/cam1/#", "-v"},
                   sub_log);
  ASSERT_TRUE(WaitFor([&] { return broker.Log().find("as sdtest-sub") != std::string::npos; }, 10)) << broker.Log();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // subscribed before the edge starts

  GatedSource* gate = nullptr;
  auto agent = MakeAgent(MqttYaml(dir, broker.port(), ", qos: 2, drain_s: 5"), &gate);
  ASSERT_TRUE(agent.ok()) << agent.status().ToString();
  Status run_status;
  std::thread run([&] { run_status = (*agent)->Run(); });
  // A failed assertion leaves the test early: the edge is let run to the end and joined, not
  // left running (a joinable thread's destructor would abort the whole binary).
  struct RunToEnd {
    GatedSource* gate;
    std::thread* run;
    ~RunToEnd() {
      gate->OpenUntil(1 << 30);
      if (run->joinable()) run->join();
    }
  } run_to_end{gate, &run};
  // Frames 0-69 with the broker up, 70-139 while it is away, the rest after its restart; each
  // step waits on what happened, never on the machine's speed. Events are still in flight when
  // it stops (the edge goes on to frame 79 meanwhile).
  auto frames_done = [&](int64_t n) {
    const bool done = WaitFor([&] { return (*agent)->stats().detected >= n; }, static_cast<int>(60 * TimeScale()));
    if (!done)
      std::fprintf(stderr, "frames detected %lld, waited for %lld\n",
                   static_cast<long long>((*agent)->stats().detected), static_cast<long long>(n));
    return done;
  };
  gate->OpenUntil(70);
  ASSERT_TRUE(frames_done(60));
  gate->OpenUntil(80);
  const size_t before_stop = FileEvents(dir + "/detections.jsonl").size();
  broker.Stop();
  gate->OpenUntil(140);
  ASSERT_TRUE(frames_done(140));
  const size_t made_while_away = FileEvents(dir + "/detections.jsonl").size() - before_stop;
  EXPECT_FALSE((*agent)->stats().mqtt.connected);
  EXPECT_GT((*agent)->stats().mqtt.queued, 0);
  ASSERT_TRUE(broker.Start()) << broker.Log();
  gate->OpenUntil(1 << 30);
  run.join();
  ASSERT_TRUE(run_status.ok()) << run_status.ToString();

  const std::vector<json> recorded = FileEvents(dir + "/detections.jsonl");
  ASSERT_GT(made_while_away, 0u) << "no event was made while the broker was away";
  EXPECT_TRUE(WaitFor([&] { return EventsReceived(sub.Log()) >= recorded.size(); }, 10));
  // The orderly stop's `offline` is the broker's last message to the subscriber; on a loaded
  // machine it can reach mosquitto_sub's log after the events are all there.
  EXPECT_TRUE(WaitFor([&] { return LastAvailability(sub.Log()) == "offline"; }, 10));
  const Arrivals arrivals = CheckArrivals(recorded, sub.Log());
  const EdgeStats stats = (*agent)->stats();
  std::printf("events recorded %zu (%zu made while the broker was away), received %zu, missing %d, twice %d, "
              "published %ld, reconnects %ld, dropped %ld\n",
              recorded.size(), made_while_away, EventsReceived(sub.Log()), arrivals.missing, arrivals.twice,
              static_cast<long>(stats.mqtt.published), static_cast<long>(stats.mqtt.reconnects),
              static_cast<long>(stats.mqtt.dropped));
  EXPECT_EQ(arrivals.missing, 0);
  EXPECT_EQ(arrivals.twice, 0);
  EXPECT_EQ(stats.mqtt.published, static_cast<int64_t>(recorded.size()));
  EXPECT_GE(stats.mqtt.reconnects, 1);
  EXPECT_EQ(stats.mqtt.dropped, 0);
  EXPECT_EQ(stats.mqtt.queued, 0);
  // Every track that began ended (the run's end ends them all).
  int news = 0, ends = 0;
  for (const json& e : recorded) {
    news += e["event"] == "new";
    ends += e["event"] == "end";
  }
  EXPECT_EQ(news, ends);
  // online on each connect; offline at the orderly stop, last.
  ASSERT_FALSE(arrivals.availability.empty());
  EXPECT_EQ(arrivals.availability.front(), "online");
  EXPECT_EQ(arrivals.availability.back(), "offline");
}

TEST(MqttEventsTest, RefusedCredentialsLeaveTheEdgeDetectingWithOneWarning) {
  if (!HaveMosquitto() || access(kMosquittoPasswd, X_OK) != 0) GTEST_SKIP() << "mosquitto missing";
  const std::string broker_dir = TempDir("broker");
  ASSERT_TRUE(MakePasswordFile(broker_dir));
  Broker broker(broker_dir, "allow_anonymous false\npassword_file " + broker_dir + "/passwords\n");
  ASSERT_TRUE(broker.Start()) << broker.Log();

  const std::string dir = TempDir("edge");
  std::ofstream(dir + "/user") << "camera\n";
  std::ofstream(dir + "/wrong") << "wrong-password-123\n";
  std::ofstream(dir + "/right") << "right-password\n";
  auto log = std::make_unique<CapturedLog>();
  auto run = [&](const std::string& password_file) {
    auto agent = MakeAgent(MqttYaml(dir, broker.port(),
                                    ", drain_s: 0.5, username_file: " + dir + "/user, password_file: " + password_file));
    EXPECT_TRUE(agent.ok()) << agent.status().ToString();
    if (!agent.ok()) return EdgeStats();
    EXPECT_TRUE((*agent)->Run().ok());
    return (*agent)->stats();
  };
  const EdgeStats refused = run(dir + "/wrong");
  const std::string refused_log = log->str();
  const EdgeStats accepted = run(dir + "/right");
  log.reset();

  EXPECT_EQ(refused.detected, 200);  // the edge went on detecting
  EXPECT_FALSE(refused.mqtt.connected);
  EXPECT_GE(refused.mqtt.connect_failures, 3);
  EXPECT_EQ(refused.mqtt.published, 0);
  EXPECT_GT(refused.mqtt.queued, 0);
  // One line for the run of refusals (the next only after 30 s), naming why, never the password.
  EXPECT_EQ(Occurrences(refused_log, "mqtt: connecting"), 1u) << refused_log;
  EXPECT_NE(refused_log.find("refused"), std::string::npos) << refused_log;
  EXPECT_EQ(refused_log.find("wrong-password"), std::string::npos);
  EXPECT_EQ(accepted.mqtt.connect_failures, 0);
  EXPECT_GT(accepted.mqtt.published, 0);
}

TEST(MqttEventsTest, TheQueueIsBoundedWhileTheBrokerIsAway) {
  if (!HaveMosquitto()) GTEST_SKIP() << "mosquitto missing";
  Broker broker(TempDir("broker"));  // not started yet
  MqttOptions options;
  options.enabled = true;
  options.device_id = "cam1";
  options.topic_prefix = "sdtest";
  options.broker = "tcp://127.0.0.1:" + std::to_string(broker.port());
  options.queue_max_events = 10;
  options.backoff_initial_s = 0.1;
  options.backoff_max_s = 0.2;
  auto publisher = MqttPublisher::Create(options);
  ASSERT_TRUE(publisher.ok()) << publisher.status().ToString();
  (*publisher)->Start();
  for (uint64_t seq = 1; seq <= 100; ++seq) (*publisher)->Enqueue(seq, "{\"seq\":" + std::to_string(seq) + "}");
  MqttStats stats = (*publisher)->stats();
  EXPECT_EQ(stats.queued, 10);
  EXPECT_EQ(stats.dropped, 90);
  // The publisher has tried the absent broker (its thread may not have run yet on a busy
  // machine); then the broker comes and the ten newest go out.
  ASSERT_TRUE(WaitFor([&] { return (*publisher)->stats().connect_failures >= 1; }, 10));
  ASSERT_TRUE(broker.Start()) << broker.Log();
  EXPECT_TRUE(WaitFor([&] { return (*publisher)->stats().published == 10; }, 10));
  stats = (*publisher)->stats();
  EXPECT_EQ(stats.queued, 0);
  EXPECT_TRUE(stats.connected);
  (*publisher)->Stop();
}

// The broker behind TLS (tests/test_certificates.h: a CA made for the test, the broker's
// certificate for 127.0.0.1 signed by it), with a password file (user `camera`) and no anonymous
// clients; the edge reads its username and password from files, as deployed.
class MqttTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!HaveMosquitto() || access(kMosquittoPasswd, X_OK) != 0)
      GTEST_SKIP() << "mosquitto missing (apt-get install mosquitto mosquitto-clients)";
    certs_ = TempDir("certs");
    if (const std::string why_not = MakeTestCertificates(certs_); !why_not.empty()) GTEST_SKIP() << why_not;
    secrets_ = TempDir("secrets");
    ASSERT_TRUE(MakePasswordFile(secrets_));
    std::ofstream(secrets_ + "/user") << "camera\n";
    std::ofstream(secrets_ + "/password") << "right-password\n";
  }

  // A TLS listener only, with the certificate `<server>.pem`. `require_certificate`: a client
  // must also show a certificate from the test CA. Subscriptions are logged, so that a test can
  // wait for its subscriber.
  std::unique_ptr<Broker> StartBroker(bool require_certificate, const std::string& server = "server") {
    auto broker = std::make_unique<Broker>(
        TempDir("broker_" + server),
        "allow_anonymous false\npassword_file " + secrets_ + "/passwords\n" + "cafile " + certs_ +
            "/ca.pem\ncertfile " + certs_ + "/" + server + ".pem\nkeyfile " + certs_ + "/" + server +
            ".key\nrequire_certificate " + (require_certificate ? "true" : "false") +
            "\nlog_type error\nlog_type warning\nlog_type notice\nlog_type information\nlog_type subscribe\n");
    EXPECT_TRUE(broker->Start()) << broker->Log();
    return broker;
  }

  // mosquitto_sub on the edge's topics over TLS, trusting the test CA (and checking the
  // broker's certificate against 127.0.0.1), subscribed when this returns.
  std::unique_ptr<ChildProcess> Subscribe(const Broker& broker, bool with_client_certificate) {
    std::vector<std::string> argv = {kMosquittoSub, "-h", "127.0.0.1", "-p", std::to_string(broker.port()),
                                     "--cafile", certs_ + "/ca.pem", "-u", "camera", "-P", "right-password",
                                     "-i", "sdtest-sub", "-q", "1", "-t", "sdtest/cam1/#", "-v"};
    if (with_client_certificate)
      argv.insert(argv.end(), {"--cert", certs_ + "/client.pem", "--key", certs_ + "/client.key"});
    auto sub = std::make_unique<ChildProcess>(argv, secrets_ + "/sub.log");
    EXPECT_TRUE(WaitFor([&] { return broker.Log().find("sdtest-sub 1 sdtest/cam1/#") != std::string::npos; }, 10))
        << broker.Log() << sub->Log();
    return sub;
  }

  // The edge's config: credentials from files, `tls` the mqtt.tls section's keys. `delivers`:
  // whether the edge can connect, and so waits at its stop for what is still in flight (else a
  // drain would only wait out drain_s).
  std::string Yaml(const std::string& dir, const Broker& broker, const std::string& tls, bool delivers) const {
    return MqttYaml(dir, broker.port(),
                    std::string(", drain_s: ") + (delivers ? "5" : "0") + ", username_file: " + secrets_ +
                        "/user, password_file: " + secrets_ + "/password, tls: {" + tls + "}",
                    "ssl");
  }

  // Runs the edge over the whole source: its stats, and what it logged.
  static std::pair<EdgeStats, std::string> RunEdge(const std::string& yaml) {
    CapturedLog log;
    auto agent = MakeAgent(yaml);
    EXPECT_TRUE(agent.ok()) << agent.status().ToString();
    if (!agent.ok()) return {};
    const Status run = (*agent)->Run();
    EXPECT_TRUE(run.ok()) << run.ToString();
    return {(*agent)->stats(), log.str()};
  }

  // Every event the run recorded arrived at the subscriber, once; the broker acknowledged each;
  // nothing failed.
  static void ExpectEachEventOnce(const std::string& dir, const EdgeStats& stats, const std::string& log,
                                  const ChildProcess& sub) {
    const std::vector<json> recorded = FileEvents(dir + "/detections.jsonl");
    ASSERT_GT(recorded.size(), 0u);
    EXPECT_TRUE(WaitFor([&] { return EventsReceived(sub.Log()) >= recorded.size(); }, 10));
    const Arrivals arrivals = CheckArrivals(recorded, sub.Log());
    EXPECT_EQ(arrivals.missing, 0);
    EXPECT_EQ(arrivals.twice, 0);
    EXPECT_EQ(stats.mqtt.connect_failures, 0);
    EXPECT_EQ(stats.mqtt.published, static_cast<int64_t>(recorded.size()));
    EXPECT_EQ(stats.mqtt.queued, 0);
    EXPECT_EQ(Occurrences(log, "mqtt: connecting"), 0u) << log;
  }

  // The edge went on detecting without the broker: one warning (the next only after 30 s)
  // naming `why`, and no event went out.
  static void ExpectDetectingWithOneWarning(const EdgeStats& stats, const std::string& log, const std::string& why) {
    EXPECT_EQ(stats.detected, 200);
    EXPECT_FALSE(stats.mqtt.connected);
    EXPECT_GE(stats.mqtt.connect_failures, 2);
    EXPECT_EQ(stats.mqtt.published, 0);
    EXPECT_GT(stats.mqtt.queued, 0);
    EXPECT_EQ(Occurrences(log, "mqtt: connecting"), 1u) << log;
    EXPECT_NE(log.find(why), std::string::npos) << log;
    const size_t at = log.find("mqtt: connecting");
    if (at != std::string::npos)
      std::printf("%lld failed connects, logged once: %s\n", static_cast<long long>(stats.mqtt.connect_failures),
                  log.substr(at, log.find('\n', at) - at).c_str());
    EXPECT_EQ(log.find("right-password"), std::string::npos);
  }

  std::string certs_;   // tests/test_certificates.h
  std::string secrets_;  // the broker's password file; the edge's username and password files
};

TEST_F(MqttTlsTest, EveryEventArrivesOnceOverTlsWithCredentialsFromFiles) {
  const auto broker = StartBroker(/*require_certificate=*/false);
  const auto sub = Subscribe(*broker, false);
  const std::string dir = TempDir("edge");
  const auto [stats, log] = RunEdge(Yaml(dir, *broker, "ca: " + certs_ + "/ca.pem", true));
  ExpectEachEventOnce(dir, stats, log, *sub);
  EXPECT_NE(broker->Log().find("as streamdistill-cam1"), std::string::npos) << broker->Log();
  EXPECT_NE(broker->Log().find("u'camera'"), std::string::npos) << broker->Log();
}

// The broker's certificate is not from the CA the edge trusts, or is from it but for another
// name than 127.0.0.1: the handshake fails, no event goes out, and the warning says why.
TEST_F(MqttTlsTest, AnUntrustedBrokerLeavesTheEdgeDetectingWithOneWarning) {
  const auto broker = StartBroker(/*require_certificate=*/false);
  const auto sub = Subscribe(*broker, false);
  const auto [stats, log] = RunEdge(Yaml(TempDir("edge"), *broker, "ca: " + certs_ + "/other_ca.pem", false));
  ExpectDetectingWithOneWarning(stats, log, "certificate verify failed");
  EXPECT_EQ(EventsReceived(sub->Log()), 0u);
  EXPECT_EQ(broker->Log().find("as streamdistill-cam1"), std::string::npos) << broker->Log();

  const auto elsewhere = StartBroker(/*require_certificate=*/false, "elsewhere");
  const auto [misnamed, misnamed_log] =
      RunEdge(Yaml(TempDir("edge_misnamed"), *elsewhere, "ca: " + certs_ + "/ca.pem", false));
  ExpectDetectingWithOneWarning(misnamed, misnamed_log, "host name verification failed");
  EXPECT_EQ(elsewhere->Log().find("as streamdistill-cam1"), std::string::npos) << elsewhere->Log();
}

// A broker that requires client certificates: without one the edge is refused (one warning);
// with the test CA's client certificate every event arrives once. A key encrypted with a
// passphrase fails the same way, never asking for the passphrase on the terminal.
TEST_F(MqttTlsTest, AClientCertificateWhenTheBrokerRequiresOne) {
  const auto broker = StartBroker(/*require_certificate=*/true);
  const auto sub = Subscribe(*broker, true);
  const std::string ca = "ca: " + certs_ + "/ca.pem";
  const auto [refused, refused_log] = RunEdge(Yaml(TempDir("edge_without"), *broker, ca, false));
  // OpenSSL's "tlsv13 alert certificate required" when the edge reads the broker's alert; when
  // its CONNECT meets the closed socket first (most runs on a busy machine), the publisher's
  // own explanation.
  ExpectDetectingWithOneWarning(refused, refused_log, "certificate");

  ChildProcess encrypt({"/usr/bin/openssl", "pkey", "-in", certs_ + "/client.key", "-aes128", "-passout",
                        "pass:a-passphrase", "-out", certs_ + "/client_encrypted.key"},
                       certs_ + "/encrypt.log");
  ASSERT_TRUE(encrypt.WaitExit(std::chrono::seconds(10)).has_value());
  const auto [encrypted, encrypted_log] = RunEdge(
      Yaml(TempDir("edge_encrypted"), *broker,
           ca + ", cert: " + certs_ + "/client.pem, key: " + certs_ + "/client_encrypted.key", false));
  ExpectDetectingWithOneWarning(encrypted, encrypted_log, "Unable to load client key file");

  const std::string dir = TempDir("edge");
  const auto [stats, log] =
      RunEdge(Yaml(dir, *broker, ca + ", cert: " + certs_ + "/client.pem, key: " + certs_ + "/client.key", true));
  ExpectEachEventOnce(dir, stats, log, *sub);
}

}  // namespace
}  // namespace sd
