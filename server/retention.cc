#include "server/retention.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace sd {
namespace {

// The `k` frames of `pool` (in sequence order) at evenly spaced positions over all of it.
std::vector<StoredFrame*> Evenly(const std::vector<StoredFrame*>& pool, size_t k) {
  std::vector<StoredFrame*> picked;
  const size_t n = pool.size();
  k = std::min(k, n);
  // Positions (2j+1)n/2k are at least n/k >= 1 apart, so they are distinct and below n.
  for (size_t j = 0; j < k; ++j) picked.push_back(pool[(2 * j + 1) * n / (2 * k)]);
  return picked;
}

}  // namespace

PruneResult ChooseFramesToPrune(std::vector<StoredFrame>& frames, const RetentionBounds& bounds,
                                const PruneKeep& keep) {
  PruneResult result;
  if (frames.empty()) return result;
  int replay_left = keep.replay_frames, validation_left = keep.validation_frames;
  for (auto it = frames.rbegin(); it != frames.rend(); ++it) {
    int& left = it->validation ? validation_left : replay_left;
    if (left > 0) it->kept = true, --left;
  }
  StoredFrame& newest = frames.back();
  result.frames_left = static_cast<int64_t>(frames.size());
  for (const StoredFrame& f : frames) result.bytes_left += f.bytes;
  auto doom = [&](StoredFrame* f) {
    if (f->doomed || f == &newest) return;
    f->doomed = true;
    ++result.deleted;
    result.deleted_bytes += f->bytes;
    --result.frames_left;
    result.bytes_left -= f->bytes;
    if (f->kept) ++(f->validation ? result.validation_deleted : result.replay_deleted);
  };
  if (bounds.max_age_s > 0) {
    double latest = -std::numeric_limits<double>::infinity();
    for (const StoredFrame& f : frames)
      if (std::isfinite(f.capture_time_s)) latest = std::max(latest, f.capture_time_s);
    for (StoredFrame& f : frames)
      if (std::isfinite(f.capture_time_s) && f.capture_time_s < latest - bounds.max_age_s) doom(&f);
  }
  auto within = [&](int64_t frames_left, int64_t bytes_left) {
    return (bounds.max_frames <= 0 || frames_left <= bounds.max_frames) &&
           (bounds.max_bytes <= 0 || bytes_left <= bounds.max_bytes);
  };
  if (within(result.frames_left, result.bytes_left)) return result;

  // Outside the kept windows: the fewest frames, thinned evenly per kind in proportion to its
  // share, that bring the device within bounds (found by bisection on the count).
  std::vector<StoredFrame*> pool[2];  // [validation]
  for (StoredFrame& f : frames)
    if (!f.kept && !f.doomed && &f != &newest) pool[f.validation].push_back(&f);
  const size_t total = pool[0].size() + pool[1].size();
  auto thinned = [&](size_t k) {
    const size_t k_val = std::min(pool[1].size(), (k * pool[1].size() + total / 2) / std::max<size_t>(total, 1));
    std::vector<StoredFrame*> picked = Evenly(pool[0], k - k_val);
    for (StoredFrame* f : Evenly(pool[1], k - picked.size())) picked.push_back(f);
    return picked;
  };
  auto fits = [&](size_t k) {
    int64_t bytes = 0;
    const std::vector<StoredFrame*> picked = thinned(k);
    for (const StoredFrame* f : picked) bytes += f->bytes;
    return within(result.frames_left - static_cast<int64_t>(picked.size()), result.bytes_left - bytes);
  };
  size_t lo = 0, hi = total;  // fits(hi) is assumed until checked; fits(lo) is false
  if (total > 0 && fits(total)) {
    while (hi - lo > 1) {
      const size_t mid = lo + (hi - lo) / 2;
      if (fits(mid)) {
        hi = mid;
      } else {
        lo = mid;
      }
    }
  }
  for (StoredFrame* f : thinned(hi)) doom(f);
  // Still over: the replay window from its oldest, then the gate's frames from their oldest.
  for (bool validation : {false, true})
    for (StoredFrame& f : frames)
      if (!within(result.frames_left, result.bytes_left) && f.kept && f.validation == validation) doom(&f);
  return result;
}

}  // namespace sd
