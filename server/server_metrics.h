// The server's metrics that its events update (docs/operations.md, "Metrics", has the list
// with meanings). Those read from state the server keeps anyway (bytes, versions, streams,
// stored frames, the labelling queue) are callback families that ServerCore registers.
#pragma once

#include "common/obs/metrics.h"

namespace sd {

struct ServerMetrics {
  ServerMetrics();

  MetricsRegistry registry;  // first: the references below are into it
  Family<Counter>& frames_received;  // device
  Family<Counter>& frames_acked;     // device
  Family<Counter>& frames_rejected;  // device, reason
  Family<Gauge>& served_version;     // device
  Family<Gauge>& heldout_map50;      // device
  Family<Gauge>& longterm_map50;     // device
  Family<Counter>& rounds;           // device, outcome
  Family<Counter>& rounds_claimed;   // whose: own, other (replicas: rounds claimed from the queue)
  Histogram& label_seconds;
  Histogram& label_queue_wait_seconds;
  Histogram& round_seconds;
  Histogram& frame_ack_seconds;    // a frame read off its stream -> its ack sent (stored frames)
  Histogram& frame_store_seconds;  // the store's write of a labelled frame (row and image durable)
  Histogram& round_queue_wait_seconds;  // replicas: a round queued -> claimed by a worker
};

}  // namespace sd
