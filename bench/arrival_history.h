// Frames of a replayed stream as the server would hold them, so that the benchmarks choose a
// round's frames with the server's own SelectRoundRecords (server/round_inputs.h) instead of a
// copy of it.
#pragma once

#include <cstddef>
#include <functional>
#include <vector>

#include "server/round_inputs.h"

namespace sd {

// The first `count` frames received, in arrival order, as one device's stored frames: the i-th
// (from 0) is sequence i + 1, held out when its sequence is a multiple of `validation_every`
// (0: none is held out), as the server splits them. `embedding(i)` is the i-th frame's look,
// which the long-term memory's choice reads.
FrameHistory ArrivalHistory(size_t count, int validation_every,
                            std::function<std::vector<float>(size_t i)> embedding);

}  // namespace sd
