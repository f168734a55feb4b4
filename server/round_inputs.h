// The frames one training round sees, chosen the one way the server and the benchmarks share
// (docs/architecture.md, "Training rounds"): per member, its newest training frames (the replay
// window) and newest held-out frames (the gate's), and from before those windows a long-term
// memory of training and held-out frames that covers the looks the recent frames do not
// (k-center, server/long_term_memory.h). A group's windows are the configured sizes in all,
// shared evenly among its members, so a group's round costs what a lone device's does.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/base/status.h"
#include "common/student/student.h"
#include "common/student/student_trainer.h"
#include "server/decoded_frame_cache.h"
#include "server/device_trainer.h"
#include "server/frame_store.h"

namespace sd {

struct ServerConfig;

struct RoundWindowSizes {
  int replay_frames = 300;             // newest training frames
  int validation_frames = 60;          // newest held-out frames
  int memory_frames = 0;               // long-term training frames (0: none)
  int longterm_validation_frames = 0;  // long-term held-out frames (0: none)
  int memory_history = 0;              // older frames the long-term choice looks at
};
// The server's windows (training.replay_frames, validation_frames, memory_frames, ...).
RoundWindowSizes RoundWindowsOf(const ServerConfig& config);

// Where the windows come from: a device's stored frames, newest last.
struct FrameHistory {
  // The newest `n` training (validation false) or held-out frames of `device`, oldest first.
  std::function<StatusOr<std::vector<FrameRecord>>(const std::string& device, bool validation, int n)> recent;
  // Up to `n` of those before sequence `before`, oldest first.
  std::function<StatusOr<std::vector<FrameRecord>>(const std::string& device, bool validation, uint64_t before,
                                                   int n)>
      older;
};
FrameHistory HistoryOf(const FrameStore& store);

struct RoundRecords {
  std::vector<FrameRecord> train, validation, memory, longterm_validation;
};
StatusOr<RoundRecords> SelectRoundRecords(const FrameHistory& history, const std::vector<std::string>& members,
                                          const RoundWindowSizes& sizes);

// A round's training set, held-out set and long-term memory, decoded through `cache`, which then
// forgets the frames of `members` (the unit's devices) that left the round's windows.
struct RoundInputs {
  std::vector<TrainingSample> train;
  std::vector<LabelledFrame> validation;
  LongTermMemory memory;
};
StatusOr<RoundInputs> LoadRoundInputs(const FrameStore& store, const std::vector<std::string>& members,
                                      const RoundRecords& records, const StudentArchitecture& arch,
                                      float train_scale, DecodedFrameCache* cache);

}  // namespace sd
