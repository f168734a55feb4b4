// Model update payloads: how a new set of student weights (StudentModel::FlatWeights order)
// travels from the server to an edge, and how a payload is cut into ModelUpdateChunk messages
// and put back together.
//
// Payload layout: one header byte, then the body.
//   header 0x00: the body is the encoding's bytes as they are
//   header 0x01: the body is one zstd frame holding the encoding's bytes
// Encodings (the bytes before optional compression):
//   "full_fp32": every target weight as a little-endian IEEE float32 (bit-exact)
//   "full_fp16": every target weight as a little-endian IEEE half, rounded to nearest even
// Both full encodings ignore `base`; later encodings (sparse / int8 deltas) will use it.
//
// No torch here, so the edge's network code compiles fast.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

namespace sd {

// True for the encoding names EncodeUpdate/DecodeUpdate understand.
bool IsKnownUpdateEncoding(const std::string& encoding);

// Encodes `target` (the weights the receiver should end up with). With `allow_zstd` the body
// is zstd-compressed when that makes the payload smaller. full_fp16 refuses finite weights
// beyond the half range (|w| > 65504 would become inf on the edge and break the model):
// InvalidArgument naming the index, so the caller can fall back to full_fp32.
StatusOr<std::string> EncodeUpdate(const std::string& encoding, const std::vector<float>& base,
                                   const std::vector<float>& target, bool allow_zstd = true);

// What the receiver holds after applying `payload` to `base`: for full_fp16 the fp16-rounded
// weights, which the server keeps as "the edge's weights" (and checksums). DataLoss for a
// truncated, corrupt or wrongly sized payload (never reads out of bounds); `expected_size` is
// the number of weights the receiver's model has (bounds decompression too).
StatusOr<std::vector<float>> DecodeUpdate(const std::string& encoding, const std::vector<float>& base,
                                          const std::string& payload, size_t expected_size);

// Cuts `payload` into pieces of at most `chunk_bytes` (0: one piece), in order. An empty
// payload gives one empty piece, so every update has at least one chunk.
std::vector<std::string> SplitPayload(const std::string& payload, size_t chunk_bytes);

// IEEE half <-> float, exposed for tests and for encodings built on top. FloatToHalf rounds to
// nearest even, overflows to inf, flushes values below half the smallest denormal to (signed)
// zero and keeps NaN a (quiet) NaN.
uint16_t FloatToHalf(float value);
float HalfToFloat(uint16_t half);

// Reassembles one update from its chunks (ModelUpdateChunk fields). Chunks must arrive in order
// 0..count-1 with the same version, count and total size. Not thread-safe: one network thread
// feeds it.
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
