#include "bench/arrival_history.h"

#include <algorithm>
#include <limits>
#include <string>

namespace sd {

FrameHistory ArrivalHistory(size_t count, int validation_every,
                            std::function<std::vector<float>(size_t i)> embedding) {
  // The newest `n` of one kind before sequence `before`, oldest first.
  auto records = [count, validation_every, embedding = std::move(embedding)](bool validation, uint64_t before, int n) {
    std::vector<FrameRecord> out;
    const size_t end = before > count ? count : static_cast<size_t>(before - 1);
    for (size_t i = end; i-- > 0 && static_cast<int>(out.size()) < n;) {
      const bool held_out = validation_every > 0 && (i + 1) % validation_every == 0;
      if (held_out != validation) continue;
      FrameRecord r;
      r.device_id = "bench";
      r.sequence = i + 1;
      r.validation = validation;
      r.embedding = embedding(i);
      out.push_back(std::move(r));
    }
    std::reverse(out.begin(), out.end());
    return out;
  };
  FrameHistory history;
  history.recent = [records](const std::string&, bool validation, int n) -> StatusOr<std::vector<FrameRecord>> {
    return records(validation, std::numeric_limits<uint64_t>::max(), n);
  };
  history.older = [records](const std::string&, bool validation, uint64_t before,
                            int n) -> StatusOr<std::vector<FrameRecord>> { return records(validation, before, n); };
  return history;
}

}  // namespace sd
