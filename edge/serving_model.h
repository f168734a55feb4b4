// The model the edge serves, behind a shared handle (tensorflow-serving style): each frame
// takes the current version with one atomic load; an update builds the new version off to
// the side and swaps the pointer. No frame waits for a load; the old version is freed when
// the last frame using it is done.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/student/student.h"

namespace sd {

struct ServedModel {
  uint64_t version = 0;          // 0: the edge's own start model (not from the server)
  std::string weights_checksum;  // WeightsChecksum(flat)
  std::vector<float> flat;       // the weights, the base that delta updates apply to
  std::shared_ptr<const StudentDetector> detector;
};

class ServingModel {
 public:
  std::shared_ptr<const ServedModel> Current() const { return std::atomic_load(&current_); }
  void Swap(std::shared_ptr<const ServedModel> next) { std::atomic_store(&current_, std::move(next)); }

 private:
  std::shared_ptr<const ServedModel> current_;
};

}  // namespace sd
