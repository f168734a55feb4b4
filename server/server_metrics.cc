#include "server/server_metrics.h"

namespace sd {

ServerMetrics::ServerMetrics()
    : frames_received(registry.AddCounter("streamdistill_server_frames_received_total",
                                          "Frames read from the device's stream, before any check.", {"device"})),
      frames_acked(registry.AddCounter("streamdistill_server_frames_acked_total",
                                       "Frames acked as stored (a re-sent frame stored before included).",
                                       {"device"})),
      frames_rejected(registry.AddCounter(
          "streamdistill_server_frames_rejected_total",
          "Frames not stored, by reason: invalid (refused before labelling), label (the labeller could not decode "
          "it), storage (the disk or index failed; the edge sends it again).",
          {"device", "reason"})),
      served_version(registry.AddGauge("streamdistill_server_device_served_version",
                                       "The model version the device last said it serves (hello, applied update).",
                                       {"device"})),
      heldout_map50(registry.AddGauge(
          "streamdistill_server_device_heldout_map50",
          "mAP50 of the device's published version on its newest held-out frames, as of its latest round.",
          {"device"})),
      longterm_map50(registry.AddGauge(
          "streamdistill_server_device_longterm_map50",
          "mAP50 of the device's published version on its long-term held-out frames (earlier looks), as of its "
          "latest round that had them.",
          {"device"})),
      rounds(registry.AddCounter("streamdistill_server_rounds_total",
                                 "Training rounds by outcome: published, or discarded by the gate.",
                                 {"device", "outcome"})),
      rounds_claimed(registry.AddCounter(
          "streamdistill_server_rounds_claimed_total",
          "Replicas: rounds this replica's workers claimed from the cluster's queue, of units it serves (own) or "
          "another replica serves (other).",
          {"whose"})),
      label_seconds(registry
                        .AddHistogram("streamdistill_server_label_seconds",
                                      "From a frame's submission to its labels: queue wait plus the teacher.",
                                      buckets::kLabelSeconds)
                        .With({})),
      label_queue_wait_seconds(registry
                                   .AddHistogram("streamdistill_server_label_queue_wait_seconds",
                                                 "From a frame's submission to a labeller taking it (bounded by "
                                                 "labeler.max_queue_seconds).",
                                                 buckets::kLabelSeconds)
                                   .With({})),
      round_seconds(registry
                        .AddHistogram("streamdistill_server_round_seconds",
                                      "Duration of a training round (published or discarded).", buckets::kRoundSeconds)
                        .With({})),
      frame_ack_seconds(registry
                            .AddHistogram("streamdistill_server_frame_ack_seconds",
                                          "From a frame read off its stream to its ack sent, for frames acked as "
                                          "stored: waiting for room in the labelling queue, the queue, the teacher "
                                          "and the store.",
                                          buckets::kLabelSeconds)
                            .With({})),
      frame_store_seconds(registry
                              .AddHistogram("streamdistill_server_frame_store_seconds",
                                            "The store's write of a labelled frame: its row and image durable (SQLite "
                                            "and files, or PostgreSQL), the part of an ack the shared state costs.",
                                            buckets::kStoreSeconds)
                              .With({})),
      round_queue_wait_seconds(registry
                                   .AddHistogram("streamdistill_server_round_queue_wait_seconds",
                                                 "Replicas: from a round queued (by the replica serving its unit) to "
                                                 "its claim by a worker here.",
                                                 buckets::kRoundSeconds)
                                   .With({})) {}

}  // namespace sd
