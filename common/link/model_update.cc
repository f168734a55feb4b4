#include "common/link/model_update.h"

#include <algorithm>

namespace sd {

uint32_t UpdateChunkCount(const ModelUpdate& update, size_t chunk_bytes) {
  if (chunk_bytes == 0) return 1;
  return static_cast<uint32_t>(std::max<size_t>(1, (update.payload.size() + chunk_bytes - 1) / chunk_bytes));
}

streamdistill::v1::ModelUpdateChunk MakeUpdateChunk(const ModelUpdate& update, uint32_t index, size_t chunk_bytes) {
  streamdistill::v1::ModelUpdateChunk chunk;
  chunk.set_base_version(update.base_version);
  chunk.set_new_version(update.new_version);
  chunk.set_encoding(UpdateEncodingName(update.encoding));
  chunk.set_chunk_index(index);
  chunk.set_chunk_count(UpdateChunkCount(update, chunk_bytes));
  chunk.set_payload_size(update.payload.size());
  if (chunk_bytes == 0) {
    chunk.set_data(update.payload);
  } else if (static_cast<size_t>(index) * chunk_bytes < update.payload.size()) {
    chunk.set_data(update.payload.substr(static_cast<size_t>(index) * chunk_bytes, chunk_bytes));
  }
  chunk.set_weights_checksum(update.weights_checksum);
  chunk.set_val_map50(static_cast<float>(update.val_map50));
  chunk.set_val_map50_previous(static_cast<float>(update.val_map50_previous));
  chunk.set_val_frames(update.val_frames);
  chunk.set_pinned(update.pinned);
  return chunk;
}

StatusOr<std::optional<ModelUpdate>> ModelUpdateAssembler::Add(const streamdistill::v1::ModelUpdateChunk& chunk) {
  if (chunk.chunk_index() == 0) {
    auto encoding = ParseUpdateEncoding(chunk.encoding());
    if (!encoding.ok()) {
      Reset();
      return encoding.status().WithContext("update to version " + std::to_string(chunk.new_version()));
    }
    header_ = ModelUpdate();
    header_.base_version = chunk.base_version();
    header_.new_version = chunk.new_version();
    header_.encoding = *encoding;
    header_.weights_checksum = chunk.weights_checksum();
    header_.val_map50 = chunk.val_map50();
    header_.val_map50_previous = chunk.val_map50_previous();
    header_.val_frames = static_cast<int>(chunk.val_frames());
    header_.pinned = chunk.pinned();
  } else if (payload_.in_progress() &&
             (chunk.base_version() != header_.base_version || chunk.encoding() != UpdateEncodingName(header_.encoding) ||
              chunk.weights_checksum() != header_.weights_checksum)) {
    const uint64_t version = chunk.new_version();
    Reset();
    return Status::DataLoss("update to version " + std::to_string(version) + ": chunk " +
                            std::to_string(chunk.chunk_index()) + " disagrees with chunk 0 on base, encoding or checksum");
  }
  SD_ASSIGN_OR_RETURN(std::optional<std::string> payload,
                      payload_.Add(chunk.new_version(), chunk.chunk_index(), chunk.chunk_count(), chunk.payload_size(),
                                   chunk.data()));
  if (!payload) return std::optional<ModelUpdate>();
  ModelUpdate update = header_;
  update.payload = std::move(*payload);
  return std::optional<ModelUpdate>(std::move(update));
}

void ModelUpdateAssembler::Reset() {
  payload_.Reset();
  header_ = ModelUpdate();
}

}  // namespace sd
