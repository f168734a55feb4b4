// The retention policy: which of a device's stored frames to delete so that its bounds hold
// (`retention:` in server.yaml). Pure: it reads a list of frames and marks some; the store
// that owns the frames deletes them (FrameStore::Prune), so every storage backend prunes alike.
#pragma once

#include <cstdint>
#include <vector>

#include "server/frame_records.h"

namespace sd {

// One stored frame as retention sees it.
struct StoredFrame {
  uint64_t sequence = 0;
  bool validation = false;
  double capture_time_s = 0;  // NaN when unknown: never counts as old
  int64_t bytes = 0;
  bool kept = false;    // in the replay window or the gate's set
  bool doomed = false;  // to be deleted
};

// Marks as `doomed` the frames to delete from `frames` (all of one device, in sequence order)
// and tallies the result. Keeps what stays representative: frames past max_age_s go first;
// then, for count and bytes, the frames outside `keep`, thinned evenly over their whole time
// span (both kinds in proportion) rather than cut from the old end, so older history stays
// sampled; then the replay window from its oldest; and only then the gate's validation
// frames, oldest first. The newest frame is never doomed.
PruneResult ChooseFramesToPrune(std::vector<StoredFrame>& frames, const RetentionBounds& bounds,
                                const PruneKeep& keep);

}  // namespace sd
