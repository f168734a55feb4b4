#include "common/link/chunk_assembler.h"

#include <algorithm>

namespace sd {

void ChunkAssembler::Reset() {
  in_progress_ = false;
  version_ = 0;
  count_ = 0;
  next_index_ = 0;
  total_size_ = 0;
  payload_.clear();
  payload_.shrink_to_fit();  // updates are megabytes; do not hold on to the buffer between them
}

StatusOr<std::optional<std::string>> ChunkAssembler::Add(uint64_t new_version, uint32_t index, uint32_t count,
                                                         uint64_t total_size, const std::string& data) {
  const std::string where = "update v" + std::to_string(new_version) + " chunk " + std::to_string(index) + "/" +
                            std::to_string(count);
  auto fail = [this, &where](Status status) {
    Reset();
    return status.WithContext(where);
  };
  if (count == 0) return fail(Status::InvalidArgument("chunk count is 0"));
  if (index >= count) return fail(Status::InvalidArgument("chunk index out of range"));
  if (total_size > max_payload_bytes_) {
    return fail(Status::InvalidArgument("payload of " + std::to_string(total_size) + " bytes exceeds the limit of " +
                                        std::to_string(max_payload_bytes_)));
  }
  if (!in_progress_) {
    if (index != 0) return fail(Status::DataLoss("expected the first chunk (0), no update in progress"));
    in_progress_ = true;
    version_ = new_version;
    count_ = count;
    next_index_ = 0;
    total_size_ = total_size;
    payload_.clear();
    // The announced size is the peer's word; reserve a sane amount and let growth do the rest.
    payload_.reserve(static_cast<size_t>(std::min<uint64_t>(total_size, uint64_t{64} << 20)));
  } else {
    if (new_version != version_ || count != count_ || total_size != total_size_) {
      return fail(Status::DataLoss("does not match the update in progress (v" + std::to_string(version_) + ", " +
                                   std::to_string(count_) + " chunks, " + std::to_string(total_size_) + " bytes)"));
    }
    if (index != next_index_) {
      return fail(Status::DataLoss(std::string(index < next_index_ ? "duplicated or reordered" : "out of order") +
                                   " chunk, expected " + std::to_string(next_index_)));
    }
  }
  if (data.size() > total_size_ - payload_.size()) {
    return fail(Status::DataLoss("data runs past the announced total of " + std::to_string(total_size_) + " bytes"));
  }
  payload_ += data;
  ++next_index_;
  if (next_index_ < count_) return std::optional<std::string>();
  if (payload_.size() != total_size_) {
    return fail(Status::DataLoss("last chunk leaves the payload at " + std::to_string(payload_.size()) +
                                 " bytes, announced " + std::to_string(total_size_)));
  }
  std::optional<std::string> done(std::move(payload_));
  Reset();
  return done;
}

}  // namespace sd
