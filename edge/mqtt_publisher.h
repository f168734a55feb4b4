// The edge's object events out over MQTT (issue 27, item 4; docs/operations.md, "MQTT"):
// one topic per camera, `<topic_prefix>/<device_id>/events`, and its availability at
// `<topic_prefix>/<device_id>/availability` (`online`, retained, on every connect; `offline`,
// retained, as the last will and at an orderly stop).
//
// The capture loop only enqueues (a mutex and a deque): the network is this class's own thread,
// driving libmosquitto. Events wait in a bounded queue while the broker is away (the oldest are
// dropped when it is full, counted). An event leaves the queue once it is handed to the client,
// at most `max_in_flight` at a time, and is counted as published when the broker acknowledges
// it (QoS 1: PUBACK, QoS 2: PUBCOMP); one handed over but unacknowledged when the connection
// drops is sent again by libmosquitto on the next connect, never handed twice by us. Delivery is
// therefore at-least-once with QoS 1 (a redelivery carries the same `seq`, so consumers drop
// duplicates by it) and exactly-once with QoS 2 against a broker that keeps sessions.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>

#include "common/base/clock.h"
#include "common/base/failure_log.h"
#include "common/base/mutex.h"
#include "common/base/status.h"

struct mosquitto;

namespace sd {

// `broker`: tcp://host[:port] (default 1883) or ssl://host[:port] (default 8883).
struct BrokerAddress {
  bool tls = false;
  std::string host;
  int port = 0;
};
StatusOr<BrokerAddress> ParseBrokerUri(const std::string& uri);

struct MqttOptions {
  bool enabled = false;
  std::string broker = "tcp://localhost:1883";
  std::string client_id;  // empty: streamdistill-<device_id>
  std::string device_id;  // not a key of its own: the edge's device_id, in the topics
  std::string topic_prefix = "streamdistill";
  int qos = 1;
  int keepalive_s = 30;
  std::string username;  // from username_file
  std::string password;  // from password_file; never logged
  // Paths, read by libmosquitto at connect (checked readable when the config is read).
  std::string tls_ca, tls_cert, tls_key;
  int queue_max_events = 10000;         // events waiting for the broker, beyond those in flight
  int64_t queue_max_bytes = 16 << 20;   // their payloads' bytes
  int max_in_flight = 20;               // handed to the client, not yet acknowledged
  double backoff_initial_s = 0.5;       // reconnect delay, doubling up to backoff_max_s, jittered
  double backoff_max_s = 10;
  double drain_s = 2;                   // at stop, up to this long to deliver what is queued
  // Each message starts with the field's name (YamlReader::Check maps it to the key).
  Status Validate() const;
  std::string EventsTopic() const { return topic_prefix + "/" + device_id + "/events"; }
  std::string AvailabilityTopic() const { return topic_prefix + "/" + device_id + "/availability"; }
  std::string ClientId() const { return client_id.empty() ? "streamdistill-" + device_id : client_id; }
};

struct MqttStats {
  int64_t published = 0;  // events the broker acknowledged
  int64_t queued = 0;     // events waiting or in flight now
  int64_t dropped = 0;    // events dropped because the queue was full
  int64_t reconnects = 0; // connections made after the first
  int64_t connect_failures = 0;  // attempts refused or failed (wrong credentials, broker away)
  bool connected = false;
};

class MqttPublisher {
 public:
  static StatusOr<std::unique_ptr<MqttPublisher>> Create(const MqttOptions& options, Clock* clock = Clock::Real());
  ~MqttPublisher();
  MqttPublisher(const MqttPublisher&) = delete;
  MqttPublisher& operator=(const MqttPublisher&) = delete;

  void Start();  // the network thread
  // Never waits for the network. `payload` is the event's JSON line, `sequence` its `seq`.
  void Enqueue(uint64_t sequence, std::string payload);
  // Delivers what is queued for up to drain_s while connected, publishes `offline`,
  // disconnects and joins the thread. Idempotent.
  void Stop();
  MqttStats stats() const;

 private:
  struct Entry {
    uint64_t sequence = 0;
    std::string payload;
  };
  MqttPublisher(MqttOptions options, Clock* clock);
  void Loop();
  // Hands queued events to the client while connected and under max_in_flight.
  void Pump();
  double NextBackoff();
  // libmosquitto's callbacks, on this class's thread (inside mosquitto_loop).
  void OnConnect(int rc);
  void OnDisconnect(int rc);
  void OnPublish(int mid);
  void OnClientError(const char* text);  // libmosquitto's error-level log lines
  // "cannot connect: <rc's text>", with what libmosquitto logged in this attempt (`tls`: the
  // broker is ssl://). Reads errno: call it right after the failed libmosquitto call.
  std::string CannotConnect(int rc, bool tls) const;

  const MqttOptions options_;
  Clock* const clock_;
  struct mosquitto* client_ = nullptr;  // the network thread only (after Create)
  std::thread thread_;
  FailureLog connect_log_;  // refused or failed connections, rate-limited
  FailureLog drop_log_;     // events dropped while the queue is full, rate-limited
  std::mt19937 jitter_{std::random_device{}()};  // the network thread only
  double backoff_s_;                             // the network thread only
  int offline_mid_ = -1;  // the `offline` published at stop, and whether it was acknowledged
  bool offline_acked_ = false;  // (the network thread only)
  // libmosquitto's error log lines since this connect attempt began, such as OpenSSL's reason
  // for a failed handshake (the network thread only).
  std::string client_errors_;

  mutable Mutex mu_;  // a leaf: never held across a libmosquitto call
  CondVar wake_{&mu_};
  std::deque<Entry> pending_ SD_GUARDED_BY(mu_);
  int64_t pending_bytes_ SD_GUARDED_BY(mu_) = 0;
  std::map<int, Entry> in_flight_ SD_GUARDED_BY(mu_);  // by message id
  bool stopping_ SD_GUARDED_BY(mu_) = false;
  bool connected_ SD_GUARDED_BY(mu_) = false;
  bool ever_connected_ SD_GUARDED_BY(mu_) = false;
  MqttStats stats_ SD_GUARDED_BY(mu_);
};

}  // namespace sd
