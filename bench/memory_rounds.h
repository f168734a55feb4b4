// The memory axis of streamdistill-bench (--memory): the server's rounds replayed on a stream
// whose conditions change and come back, with the server's own round assembly (recent windows
// plus a long-term memory chosen by k-center, server/long_term_memory.h) and gate, against the
// newest-frames window alone. After every round the published student is scored on each
// condition's held-out frames, so forgetting is measured, not inferred.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "common/base/status.h"
#include "common/eval/student_eval.h"
#include "common/student/student_trainer.h"
#include "server/device_trainer.h"
#include "server/round_inputs.h"

namespace sd {

struct MemoryRunOptions {
  int round_every = 20;      // a round after every N newly received frames
  int validation_every = 5;  // every N-th received frame is held out, as the server's validation_every
  // The server's round (steps, gate, trainer; its replay_frames is windows.replay_frames) and
  // its windows (server/round_inputs.h): the same code chooses the frames here as there. The
  // long-term choice looks at every older frame (memory_history unbounded).
  RoundOptions round = DefaultRound();
  RoundWindowSizes windows = DefaultWindows();  // memory_frames 0: the newest window only

  static RoundOptions DefaultRound();
  static RoundWindowSizes DefaultWindows();
};

// One frame as the server receives it: the sample (image and teacher labels) and its look.
struct ReceivedFrame {
  TrainingSample sample;
  std::vector<float> embedding;  // AppearanceEmbedding of the frame
  std::string condition;         // for the report only
  int segment = 0;               // which segment of the stream (a condition may come back)
};

struct MemoryRoundRecord {
  int round = 0;
  int received = 0;                     // frames received when the round ran
  std::string condition;                // of the newest received frame
  int segment = 0;                      // of the newest received frame
  bool published = false;
  std::string reason;
  std::map<std::string, double> map50;  // eval set -> mAP50 of the published student after the round
};

// Frames arrive in order (every validation_every-th by sequence is held out); after every
// `round_every` a round runs on the frames SelectRoundRecords chooses, as the server's training
// pool does, gated by DecideGate.
StatusOr<std::vector<MemoryRoundRecord>> ReplayWithMemory(const std::string& start_weights,
                                                          const std::vector<ReceivedFrame>& received,
                                                          const MemoryRunOptions& options,
                                                          const std::map<std::string, std::vector<LabelledFrame>>& eval);

// The runs of one mode (window or memory) x seed, for the report.
struct MemoryRun {
  std::string mode;
  uint64_t seed = 0;
  std::vector<MemoryRoundRecord> rounds;
};

// memory.md: each eval set's final mAP50 per mode (mean ± std over seeds); forgetting: for each
// segment of a scored condition that a change ends, that condition's mAP50 at the segment's
// last round and at the last round before the condition comes back (or the stream ends), per
// mode, with the paired difference; rounds published and discarded.
std::string MemoryMarkdown(const std::string& title, const std::vector<MemoryRun>& runs,
                           const std::vector<std::string>& eval_sets);

}  // namespace sd
