// configs/edge.yaml -> EdgeConfig, validated. Every key is documented in docs/operations.md.
#pragma once

#include <string>

#include "common/base/env.h"
#include "common/video/frame_source.h"
#include "common/video/reopening_source.h"
#include "common/obs/http_endpoint.h"
#include "common/base/status.h"
#include "common/student/student.h"
#include "common/config/yaml_reader.h"
#include "edge/budget_controller.h"
#include "edge/detection_sink.h"
#include "edge/detection_zones.h"
#include "edge/frame_encoding.h"
#include "edge/mqtt_publisher.h"
#include "edge/object_tracker.h"
#include "edge/privacy_filter.h"
#include "edge/sampler.h"
#include "edge/spool.h"

namespace sd {

struct TlsClientOptions {
  std::string ca;    // PEM of the CA that signed the server's certificate; empty = plaintext
  std::string cert;  // PEM client certificate (when the server requires one)
  std::string key;
  std::string server_name;  // override the name checked against the certificate
  // cert and key together, and a client certificate only with a ca. Like every Validate() of
  // this file, the message starts with the field's name (YamlReader::Check maps it to the key).
  Status Validate() const;
};

struct UplinkOptions {
  std::string server = "localhost:50051";
  std::string device_id;
  std::string token;
  TlsClientOptions tls;
  int max_in_flight = 8;             // frames sent but not yet acked
  double backoff_initial_s = 0.5;    // reconnect delay doubles up to backoff_max_s, jittered
  double backoff_max_s = 10;
  // A stream that awaits the server's answer (the welcome to its hello, an ack of a frame in
  // flight) and hears nothing for this long is given up and made again on a new connection:
  // a proxy can hold a stream open that no server serves.
  double stall_timeout_s = 20;
  int max_message_bytes = 8 << 20;
  Status Validate() const;  // max_in_flight, the backoff and the stall timeout; `tls` has its own
};

struct EdgeConfig {
  UplinkOptions uplink;
  FrameSourceOptions source;
  ReopenOptions reconnect;  // source.reconnect: a dropped stream or camera is reopened
  StudentArchitecture student;
  std::string init_weights;  // start model; empty: random weights from model_seed
  uint64_t model_seed = 1;
  InferenceOptions inference;
  int threads = 1;       // libtorch threads for inference
  int detect_every = 1;  // run the student on every k-th frame
  DetectionSinkOptions sink;
  std::vector<DetectionZone> zones;  // ignore regions and tagged zones; none by default
  SamplerOptions sampling;
  // The frames-per-minute budget the sampler runs under (`budget` section): adaptive between a
  // floor and a ceiling, or fixed at sampling.budget_per_minute. As read (derived values 0);
  // Budget() resolves them.
  BudgetOptions budget;
  int jpeg_quality = 80;
  int upload_max_width = 0;  // 0: send frames at source resolution
  SpoolOptions spool;
  PrivacyOptions privacy;  // masks and face redaction before upload; none by default
  // Object events out over MQTT (off by default); the tracker that makes them runs only then.
  MqttOptions mqtt;
  TrackerOptions tracking;
  std::string state_dir = "state/edge";  // deployed model survives restarts here
  double linger_s = 0;       // after the source ends, keep the link up this long for updates
  std::string summary_path;  // write the run summary JSON here at exit (empty: don't)
  // GET /metrics for Prometheus; off by default: a camera box opens no port unless its operator
  // asks for one (docs/operations.md, "Metrics").
  HttpOptions http{false, "127.0.0.1", 9465};
  Env* env = Env::Default();  // not from the config file: the spool's and state_dir's files go
                              // through it (tests inject disk faults); spool.env is replaced by it

  // How sampled frames are encoded for the uplink (upload.*, the link's limit, the sampler's score).
  FrameEncodingOptions Upload() const;
  // `budget` with its derived values filled in from `sampling`.
  BudgetOptions Budget() const { return budget.Resolved(sampling.budget_per_minute); }

  // The fields of this struct itself, each named first in the message (ParseEdgeConfig maps
  // them to their keys); the option structs it holds have their own Validate().
  Status Validate() const;
};

// The `sampling` section's keys (also read by streamdistill-bench), validated.
Status ReadSamplerOptions(const YamlReader& section, SamplerOptions* options);

StatusOr<EdgeConfig> LoadEdgeConfig(const std::string& path);
StatusOr<EdgeConfig> ParseEdgeConfig(const std::string& yaml_text, const std::string& name);

}  // namespace sd
