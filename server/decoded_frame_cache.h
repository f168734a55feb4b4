// Stored frames decoded and shrunk for the student (ShrinkForStudent), kept between rounds so
// that a frame is decoded once while it stays in its unit's windows. One cache serves every
// training unit of a server within one budget in bytes (training.decoded_cache_mb): an image
// that does not fit pushes out the least recently used ones, and a round that needs one of
// those decodes it again from the store. What it holds changes how long a round takes to load
// its frames, never what the round sees.
//
// The budget bounds what is kept between rounds. A running round holds its own frames (the
// pixels are shared with the cache while both hold them), so decoded frames take at most the
// budget plus one unit's windows per training worker (docs/operations.md, "Memory").
#pragma once

#include <cstdint>
#include <list>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <opencv2/core.hpp>

#include "common/base/mutex.h"
#include "common/base/status.h"
#include "common/eval/student_eval.h"
#include "common/student/student.h"
#include "server/frame_store.h"

namespace sd {

// A stored frame: (device id, sequence).
using FrameKey = std::pair<std::string, uint64_t>;

class DecodedFrameCache {
 public:
  // `budget_bytes` 0: nothing is kept, every Load decodes.
  explicit DecodedFrameCache(int64_t budget_bytes);
  DecodedFrameCache(const DecodedFrameCache&) = delete;
  DecodedFrameCache& operator=(const DecodedFrameCache&) = delete;

  // The records' frames, labels scaled to the shrunk images; `scale` x the student input (one
  // cache serves one architecture, the server's). DataLoss for an image that cannot be
  // decoded, the store's errors as they come. Workers load at once: decoding holds no lock.
  StatusOr<std::vector<LabelledFrame>> Load(const FrameStore& store, const std::vector<FrameRecord>& records,
                                            const StudentArchitecture& arch, float scale) SD_EXCLUDES(mu_);
  // Forgets the frames of `devices` that are not in `keep`, a unit's frames that left its
  // windows: the recent windows only move forward (the long-term memory may choose an older
  // frame again, which is then decoded anew). Other devices' frames stay.
  void KeepOnly(const std::vector<std::string>& devices, const std::set<FrameKey>& keep) SD_EXCLUDES(mu_);

  struct Stats {
    int64_t budget_bytes = 0;
    int64_t bytes = 0;  // of the images held
    int64_t images = 0;
    uint64_t hits = 0;       // frames a Load found decoded
    uint64_t misses = 0;     // frames a Load decoded from the store
    uint64_t evictions = 0;  // images dropped to stay within the budget (KeepOnly's not counted)
  };
  Stats stats() const SD_EXCLUDES(mu_);

 private:
  struct Image {
    FrameKey key;
    cv::Mat bgr;
    float scale = 1;                 // the Load's `scale` it was shrunk for
    float scale_x = 1, scale_y = 1;  // shrunk over stored size: the labels' factors
    int64_t bytes = 0;
  };
  // The cached image of `key` shrunk for `scale`, now the most recently used; false when none.
  bool Find(const FrameKey& key, float scale, Image* found) SD_EXCLUDES(mu_);
  void Insert(const Image& image) SD_EXCLUDES(mu_);
  void Erase(std::map<FrameKey, std::list<Image>::iterator>::iterator at) SD_REQUIRES(mu_);

  const int64_t budget_bytes_;
  mutable Mutex mu_;
  std::list<Image> images_ SD_GUARDED_BY(mu_);  // most recently used first
  std::map<FrameKey, std::list<Image>::iterator> index_ SD_GUARDED_BY(mu_);
  int64_t bytes_ SD_GUARDED_BY(mu_) = 0;
  uint64_t hits_ SD_GUARDED_BY(mu_) = 0;
  uint64_t misses_ SD_GUARDED_BY(mu_) = 0;
  uint64_t evictions_ SD_GUARDED_BY(mu_) = 0;
};

}  // namespace sd
