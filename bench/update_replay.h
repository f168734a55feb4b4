// The update-encoding axis of streamdistill-bench: the server's training rounds replayed on
// the frames an edge sent, each round's candidate encoded for the downlink by the server's own
// encoder (server/update_encoder.h), so accuracy can be weighed against downlink bytes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/link/model_update.h"
#include "common/eval/student_eval.h"
#include "common/student/student_trainer.h"
#include "server/server_config.h"

namespace sd {

struct UpdateRunOptions {
  UpdatePolicy policy;
  int round_every = 20;     // a round after every N newly received frames
  int iterations = 40;      // Adam steps per round
  int replay_frames = 300;  // the round's replay horizon
  int chunk_bytes = 256 << 10;
  TrainerOptions trainer;   // batch, learning rate, augmentation, seed
};

struct UpdateRunResult {
  double map50 = 0, map50_95 = 0;  // of the weights the edge holds at the end
  int updates = 0;
  int64_t downlink_bytes = 0;      // every ModelUpdateChunk message with gRPC's 5-byte header
};

// The bytes of the ModelUpdateChunk messages that carry `payload` (as the server's stream
// cuts it), each with gRPC's 5-byte message header.
int64_t UpdateWireBytes(const ModelUpdate& update, int chunk_bytes);

// The start weights are version 1 on both sides. Frames arrive in order; after every
// `round_every` of them the server runs a round on the newest `replay_frames` (no gate: every
// round is sent) and the edge applies the update.
StatusOr<UpdateRunResult> ReplayUpdates(const std::string& start_weights, const std::vector<TrainingSample>& received,
                                        const UpdateRunOptions& options, const InferenceOptions& inference,
                                        const std::vector<LabelledFrame>& eval);

}  // namespace sd
