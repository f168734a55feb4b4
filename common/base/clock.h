// The process's one reading of time. Code that a test steps by hand takes a Clock
// (common/video/frame_source.h) or an Env (common/base/env.h) instead; their real versions
// read these.
#pragma once

#include <cstdint>

namespace sd {

// Seconds on the steady (monotonic) clock, from an arbitrary origin: for intervals, rates and
// deadlines; never goes back.
double SteadySeconds();

// Milliseconds since the Unix epoch on the wall clock: for times stored or shown to people.
int64_t WallMillis();

}  // namespace sd
