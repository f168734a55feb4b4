#include "edge/event_sequence.h"

#include <charconv>

namespace sd {

EventSequence::EventSequence(Env* env, std::string path, uint64_t block, uint64_t next)
    : env_(env), path_(std::move(path)), block_(block), next_(next), reserved_end_(next), log_("event sequence: " + path_) {}

StatusOr<std::unique_ptr<EventSequence>> EventSequence::Open(Env* env, std::string path, uint64_t block) {
  uint64_t next = 1;
  if (env->FileExists(path)) {
    SD_ASSIGN_OR_RETURN(const std::string text, env->ReadFile(path, 64));
    const char* end = text.data() + text.size();
    while (end > text.data() && (end[-1] == '\n' || end[-1] == ' ')) --end;
    const auto parsed = std::from_chars(text.data(), end, next);
    if (parsed.ec != std::errc() || parsed.ptr != end || next == 0)
      return Status::DataLoss(path + ": not an event sequence number");
  }
  return std::unique_ptr<EventSequence>(new EventSequence(env, std::move(path), block < 1 ? 1 : block, next));
}

uint64_t EventSequence::Next() {
  if (next_ >= reserved_end_) {
    const uint64_t end = next_ + block_;
    const Status written = WriteFileDurably(env_, path_, std::to_string(end) + "\n");
    if (written.ok()) {
      reserved_end_ = end;
      log_.Succeeded();
    } else {
      log_.Failed(written);
    }
  }
  return next_++;
}

}  // namespace sd
