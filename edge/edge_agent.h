// streamdistill-edge as an object: reads frames, runs the served student on each, writes
// its detections, samples frames into the spool for the uplink, and applies model updates
// by swapping the serving handle. Tests run several agents in-process.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "common/base/failure_log.h"
#include "common/video/frame_source.h"
#include "common/video/reopening_source.h"
#include "common/obs/http_endpoint.h"
#include "common/obs/metrics.h"
#include "common/base/status.h"
#include "edge/budget_controller.h"
#include "edge/edge_config.h"
#include "edge/event_sequence.h"
#include "edge/mqtt_publisher.h"
#include "edge/object_tracker.h"
#include "edge/privacy_filter.h"
#include "edge/sample_feeder.h"
#include "edge/serving_model.h"
#include "edge/uplink.h"

namespace sd {

struct EdgeStats {
  int64_t frames = 0;    // frames read
  int64_t detected = 0;  // frames the student ran on
  int64_t queried = 0;   // frames sampled for the server
  int64_t spool_failures = 0;  // sampled frames the spool could not store (disk full or failing)
  double student_ms = 0;  // mean per detected frame
  double elapsed_s = 0;
  uint64_t model_version = 0;
  SourceHealth source;  // a source given to Create() is never reopened: always up
  std::string budget_mode;       // adaptive | fixed
  double budget_per_minute = 0;  // the sampler's budget now
  std::string budget_reason;     // why (BudgetReasonName)
  UplinkStats uplink;
  MqttStats mqtt;  // zeros while mqtt is off
  double uplink_kbps() const { return elapsed_s > 0 ? uplink.bytes_up * 8 / 1000.0 / elapsed_s : 0; }
  double downlink_kbps() const { return elapsed_s > 0 ? uplink.bytes_down * 8 / 1000.0 / elapsed_s : 0; }
};

class EdgeAgent : public UpdateSink {
 public:
  // `source` replaces the one config.source names (the fleet generator feeds transformed
  // views of a video); nullptr opens config.source.
  static StatusOr<std::unique_ptr<EdgeAgent>> Create(const EdgeConfig& config, Clock* clock = Clock::Real(),
                                                     std::unique_ptr<FrameSource> source = nullptr);
  ~EdgeAgent() override;

  // Runs until the source ends (then lingers config.linger_s for the uplink) or Stop().
  Status Run();
  void Stop();  // safe from any thread
  // Sees every ack from the server (sequence, code); call before Run().
  void SetAckObserver(std::function<void(uint64_t sequence, int code)> observer) {
    ack_observer_ = std::move(observer);
  }
  // Sees every applied update and the model it deployed, on the uplink's reader thread right
  // after the swap; call before Run(). The daemon prints its update line from here, so that
  // agents sharing a process (streamdistill-fleet) do not write to its stdout.
  using UpdateObserver = std::function<void(const ModelUpdate& update, const std::shared_ptr<const ServedModel>& served)>;
  void SetUpdateObserver(UpdateObserver observer) { update_observer_ = std::move(observer); }
  EdgeStats stats() const;
  int http_port() const { return http_ ? http_->port() : 0; }  // /metrics; 0: HTTP is off
  std::shared_ptr<const ServedModel> serving() const { return serving_.Current(); }
  // The start model's weights (serialized), for comparing before and after.
  const std::string& initial_weights() const { return initial_weights_; }

  // UpdateSink
  Status ApplyUpdate(const ModelUpdate& update) override;
  uint64_t ServingVersion() const override;
  std::string ServingChecksum() const override;

 private:
  EdgeAgent(const EdgeConfig& config, Clock* clock, std::unique_ptr<FrameSource> source);
  Status Init();
  // The metrics /metrics serves: the inference histogram, the rest read from stats() and the
  // spool at scrape time.
  void RegisterMetrics();
  Status ProcessFrame(const Frame& frame, double video_time_s);
  // The frame's detections to the tracker; its events to the detections file and the MQTT queue.
  Status TrackObjects(int64_t frame_index, double video_time_s, uint64_t version, const Detections& detections,
                      const ZoneTags* zones);
  Status EmitEvents();
  // Once per frame size: warns about pixel zones beyond the frame (matched as given).
  void CheckZonesFit(cv::Size frame);
  // The frame as the server receives it, less its sequence: that is given when it is spooled,
  // so that sequences follow spool order even for frames the sampler held first.
  // `masked`: the frame already through privacy_ (the student sees masked frames), with what
  // was applied; null: the frame is whole, and masked here first when privacy_ is set.
  StatusOr<std::string> EncodeFrame(const Frame& frame, double video_time_s, const StudentOutput& out,
                                    uint64_t version, const PrivacyApplied* masked) const;
  // Gives the encoded frame the spool's next sequence and stores it for the uplink.
  Status SpoolFrame(std::string encoded);
  StatusOr<std::shared_ptr<const ServedModel>> BuildServed(uint64_t version, std::vector<float> flat) const;
  // state_dir/deployed.sdw: one file with the weights, their version and checksum
  // (EncodeDeployedWeights), rewritten durably per applied update; earlier releases' bare
  // weights plus deployed.version are still read.
  StatusOr<std::pair<uint64_t, std::unique_ptr<StudentModel>>> LoadDeployed() const;
  Status SaveDeployed(const ServedModel& served) const;

  const EdgeConfig config_;
  Clock* clock_;
  FailureLog frame_log_;  // frames that failed (rate-limited: a full disk fails every one)
  std::unique_ptr<StudentModel> scratch_;  // architecture holder that builds snapshots (update thread only)
  std::string initial_weights_;
  ServingModel serving_;
  std::unique_ptr<FrameSource> source_;
  std::unique_ptr<PrivacyFilter> privacy_;  // null: no masks configured (capture thread only)
  cv::Size zones_checked_for_;              // the frame size CheckZonesFit last saw (capture thread)
  ReopeningSource* reopening_ = nullptr;  // source_ when the agent opened it itself, else null
  std::unique_ptr<DetectionSink> sink_;
  std::unique_ptr<Sampler> sampler_;
  // The budget sampler_ runs under (issue 26), and what sees the scene change; the capture
  // thread sets sampler_budget_ (the budget last given to sampler_) and reads scene_.
  std::unique_ptr<BudgetController> budget_;
  std::unique_ptr<SceneWatch> scene_;
  double sampler_budget_ = -1;
  // Object events (mqtt.enabled; else all null): the tracker and the event numbers are the
  // capture thread's; the publisher's queue takes events from it and sends on its own thread.
  std::unique_ptr<ObjectTracker> tracker_;
  std::unique_ptr<EventSequence> event_sequence_;
  std::unique_ptr<MqttPublisher> mqtt_;
  std::vector<ObjectEvent> events_;  // scratch, capture thread
  int64_t last_frame_index_ = 0;     // the last detected frame, for the events at the end
  double last_video_time_s_ = 0;
  std::unique_ptr<Spool> spool_;
  std::unique_ptr<Uplink> uplink_;
  std::function<void(uint64_t, int)> ack_observer_;
  UpdateObserver update_observer_;
  // Drives sampler_; holds the encoded frames (EncodeFrame()) the sampler holds. Capture thread
  // only; the sampler bounds what it holds.
  std::unique_ptr<SampleFeeder<std::string>> feeder_;
  std::atomic<bool> stopping_{false};
  // Atomic: Run() sets it on its thread while stats() reads it from others (a data race
  // ThreadSanitizer found in daemon_restart_test).
  std::atomic<double> start_time_{0};

  mutable std::mutex mu_;  // guards stats_ and update_mu_-free reads of counters
  EdgeStats stats_;
  std::mutex update_mu_;  // one update applied at a time

  MetricsRegistry metrics_;
  Histogram* inference_seconds_ = nullptr;  // in metrics_: the student's time per frame
  std::unique_ptr<HttpEndpoint> http_;      // last: its requests read everything above
};

}  // namespace sd
