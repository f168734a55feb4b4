// Shared by the offline tools: the teacher's labels for a job's video, through the cache,
// with a progress line.
#pragma once

#include <memory>
#include <vector>

#include "tools/train_job_config.h"
#include "common/teacher/label_cache.h"
#include "common/base/progress.h"
#include "common/teacher/teacher.h"

namespace sd {

inline StatusOr<std::vector<Detections>> LabelJobVideo(const TrainJobConfig& config, Teacher& teacher) {
  std::unique_ptr<ProgressLine> progress;  // made at the first callback, which knows the total
  auto labels = LabelVideoCached(config.video, teacher, config.cache_dir, [&](int64_t done, int64_t total) {
    if (!progress) progress = std::make_unique<ProgressLine>("labelling", total);
    progress->Update(done);
  });
  if (progress) progress->Finish();
  return labels;
}

}  // namespace sd
