// Choosing a camera's long-term memory from its stored history (docs/architecture.md,
// "Memory against forgetting"): the frames that cover every look the camera had before its
// recent windows, so that a round neither forgets dusk in daylight nor is judged on daylight
// alone.
#pragma once

#include <vector>

#include "server/frame_store.h"

namespace sd {

// Up to `k` of `older`, by greedy k-center over their appearance embeddings with the `recent`
// frames counting as covered: the first choice is the look farthest from the scene as it is
// now, each next one the farthest from everything chosen or recent. Frames without an
// embedding (stored before the store had them) are never chosen. Returned oldest first.
std::vector<FrameRecord> ChooseLongTermFrames(const std::vector<FrameRecord>& older,
                                              const std::vector<FrameRecord>& recent, int k);

}  // namespace sd
