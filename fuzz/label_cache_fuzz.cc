// The label cache file (common/teacher/label_cache.h): the input is written as a .labels file and
// loaded with the key the seeds carry (kLabelKey).
// Property: labels that load save and load again to the same values (NaN stays NaN).
#include <cmath>
#include <string>

#include "common/teacher/label_cache.h"
#include "fuzz/fuzz_util.h"
#include "tests/scoped_temp_dir.h"

namespace {

bool Same(float a, float b) { return a == b || (std::isnan(a) && std::isnan(b)); }

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  sd::fuzz::QuietLogs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static sd::testing::ScopedTempDir dir("sd_fuzz_labels");
  const std::string path = dir.File("input.labels");
  sd::fuzz::WriteFile(path, std::string(reinterpret_cast<const char*>(data), size));
  sd::StatusOr<std::vector<sd::Detections>> loaded = sd::LoadLabels(path, sd::fuzz::kLabelKey);
  if (!loaded.ok()) return 0;

  const std::string again_path = dir.File("again.labels");
  SD_FUZZ_CHECK(sd::SaveLabels(again_path, sd::fuzz::kLabelKey, *loaded).ok());
  sd::StatusOr<std::vector<sd::Detections>> again = sd::LoadLabels(again_path, sd::fuzz::kLabelKey);
  SD_FUZZ_CHECK(again.ok());
  SD_FUZZ_CHECK(again->size() == loaded->size());
  for (size_t i = 0; i < loaded->size(); ++i) {
    const sd::Detections& x = (*loaded)[i];
    const sd::Detections& y = (*again)[i];
    SD_FUZZ_CHECK(x.size() == y.size());
    for (size_t k = 0; k < x.size(); ++k) {
      SD_FUZZ_CHECK(x[k].class_id == y[k].class_id && Same(x[k].score, y[k].score));
      SD_FUZZ_CHECK(Same(x[k].box.x1, y[k].box.x1) && Same(x[k].box.y1, y[k].box.y1) &&
                    Same(x[k].box.x2, y[k].box.x2) && Same(x[k].box.y2, y[k].box.y2));
    }
  }
  return 0;
}
