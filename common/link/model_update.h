// A model update as it travels from the server to an edge: the one struct the server, the
// edge, the bench and the tests share, and the one place that cuts it into
// ModelUpdateChunk messages and puts it back together (so the bench's byte counts and the
// fuzzers cover exactly what the daemons send). The payload's formats are
// common/link/update_codec.h's.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "streamdistill.pb.h"

#include "common/base/status.h"
#include "common/link/chunk_assembler.h"
#include "common/link/update_codec.h"

namespace sd {

struct ModelUpdate {
  uint64_t base_version = 0;  // the version the payload applies to; 0 for a full model
  uint64_t new_version = 0;
  UpdateEncoding encoding = UpdateEncoding::kFullFp32;
  std::string payload;
  std::string weights_checksum;  // of the weights the edge holds after applying it
  // The server's held-out validation of the new version and of the one before (-1: unknown).
  double val_map50 = -1, val_map50_previous = -1;
  int val_frames = 0;
  // An operator's pin (a full model): installed even when not newer than the served version.
  bool pinned = false;
};

// How many chunks of at most `chunk_bytes` payload bytes carry `update` (at least one).
uint32_t UpdateChunkCount(const ModelUpdate& update, size_t chunk_bytes);
// Chunk `index` (< UpdateChunkCount) as the stream sends it.
streamdistill::v1::ModelUpdateChunk MakeUpdateChunk(const ModelUpdate& update, uint32_t index, size_t chunk_bytes);

// Puts updates back together from their chunks, which must arrive in order. Not
// thread-safe: one network thread feeds it.
class ModelUpdateAssembler {
 public:
  explicit ModelUpdateAssembler(uint64_t max_payload_bytes = ChunkAssembler::kDefaultMaxPayloadBytes)
      : payload_(max_payload_bytes) {}
  // The whole update once its last chunk arrived, nullopt while more are expected. Errors
  // (and a reset) as ChunkAssembler::Add's, plus InvalidArgument for an unknown encoding and
  // DataLoss when a later chunk's base version, encoding or checksum differs from the first's.
  StatusOr<std::optional<ModelUpdate>> Add(const streamdistill::v1::ModelUpdateChunk& chunk);
  void Reset();

 private:
  ChunkAssembler payload_;
  ModelUpdate header_;  // everything but the payload, from chunk 0
};

}  // namespace sd
