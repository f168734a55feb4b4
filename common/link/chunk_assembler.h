// Reassembles one payload from the chunks a model update travels in (ModelUpdateChunk's
// fields); common/link/model_update.h's assembler builds on it. No protobuf here.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "common/base/status.h"

namespace sd {

// Chunks must arrive in order 0..count-1 with the same version, count and total size. Not
// thread-safe: one network thread feeds it.
class ChunkAssembler {
 public:
  // Updates announcing more than this are refused before any memory is reserved.
  static constexpr uint64_t kDefaultMaxPayloadBytes = uint64_t{1} << 30;

  explicit ChunkAssembler(uint64_t max_payload_bytes = kDefaultMaxPayloadBytes)
      : max_payload_bytes_(max_payload_bytes) {}

  // Feeds one chunk. Returns the whole payload when the last chunk completes it, nullopt while
  // more are expected. An out-of-order, duplicated or mismatched (other version/count/size)
  // chunk, or data beyond / short of total_size, gives DataLoss and resets; bad arguments
  // (count 0, index >= count, total over the limit) give InvalidArgument and reset. After an
  // error the assembler is empty, so a first chunk (index 0) fed again starts a new update.
  StatusOr<std::optional<std::string>> Add(uint64_t new_version, uint32_t index, uint32_t count,
                                           uint64_t total_size, const std::string& data);

  // Drops a partial update (e.g. when the stream reconnects).
  void Reset();

  bool in_progress() const { return in_progress_; }
  uint64_t version() const { return version_; }  // of the update in progress

 private:
  uint64_t max_payload_bytes_;
  bool in_progress_ = false;
  uint64_t version_ = 0;
  uint32_t count_ = 0;
  uint32_t next_index_ = 0;
  uint64_t total_size_ = 0;
  std::string payload_;
};

}  // namespace sd
