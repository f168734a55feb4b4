// The `seq` of the edge's object events: rising by one per event and never reused by this
// camera, across restarts too, so that an MQTT consumer can drop a redelivered event by it.
// Numbers are reserved in blocks written durably to one small file (a write per `block`
// events, not per event); a restart resumes after the last reserved block, so a crash skips at
// most the rest of a block and never repeats a number.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "common/base/env.h"
#include "common/base/failure_log.h"
#include "common/base/status.h"

namespace sd {

class EventSequence {
 public:
  // `path` holds the first number not yet reserved (absent: start at 1).
  static StatusOr<std::unique_ptr<EventSequence>> Open(Env* env, std::string path, uint64_t block = 1000);

  // The next number. A reservation that cannot be written is logged (rate-limited) and the
  // numbers go on rising in memory; only a restart after such a failure could repeat them.
  uint64_t Next();

 private:
  EventSequence(Env* env, std::string path, uint64_t block, uint64_t next);
  Env* const env_;
  const std::string path_;
  const uint64_t block_;
  uint64_t next_;
  uint64_t reserved_end_;  // numbers below this are on disk as reserved
  FailureLog log_;
};

}  // namespace sd
