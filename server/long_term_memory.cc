#include "server/long_term_memory.h"

#include <algorithm>

#include "common/vision/appearance.h"

namespace sd {

std::vector<FrameRecord> ChooseLongTermFrames(const std::vector<FrameRecord>& older,
                                              const std::vector<FrameRecord>& recent, int k) {
  if (k <= 0 || older.empty()) return {};
  std::vector<const std::vector<float>*> points, covered;
  points.reserve(older.size());
  for (const FrameRecord& r : older) points.push_back(&r.embedding);
  for (const FrameRecord& r : recent) covered.push_back(&r.embedding);
  std::vector<size_t> chosen = KCenterGreedy(points, covered, static_cast<size_t>(k));
  std::sort(chosen.begin(), chosen.end());  // `older` is oldest first
  std::vector<FrameRecord> out;
  out.reserve(chosen.size());
  for (size_t i : chosen) out.push_back(older[i]);
  return out;
}

}  // namespace sd
