// One place that fills the option structs from YAML and validates them. Daemons and tools
// call these; every error names the file and the key (see yaml_reader.h).
#pragma once

#include <string>

#include "common/http_endpoint.h"
#include "common/status.h"
#include "common/student.h"
#include "common/student_trainer.h"
#include "common/teacher.h"
#include "common/yaml_reader.h"

namespace sd {

Status ReadStudentArchitecture(const YamlReader& section, StudentArchitecture* arch);
Status ReadInferenceOptions(const YamlReader& section, InferenceOptions* options);
Status ReadTeacherOptions(const YamlReader& section, TeacherOptions* options);
Status ReadTrainerOptions(const YamlReader& section, TrainerOptions* options);

// The `http` section of a daemon's config (enabled, bind, port) over `options`' defaults.
Status ReadHttpOptions(const YamlReader& root, HttpOptions* options);

// The contents of the file named at `key` (e.g. a PEM certificate); empty when the key is
// absent or empty. An unreadable file is an error naming the key.
StatusOr<std::string> ReadFileAtKey(const YamlReader& section, const std::string& key);

// Loads `path` and fills a config with `parse`, which must check every key it knows and
// finish with CheckAllKeysUsed().
template <typename Config>
StatusOr<Config> LoadYamlConfig(StatusOr<YamlReader> root, Status (*parse)(const YamlReader&, Config*)) {
  if (!root.ok()) return root.status();
  Config config;
  SD_RETURN_IF_ERROR(parse(*root, &config));
  return config;
}

// A half-open frame range [begin, end) written in YAML as [begin, end].
struct FrameRange {
  int64_t begin = 0, end = 0;
  int64_t size() const { return end - begin; }
};
Status ReadFrameRange(const YamlReader& section, const std::string& key, FrameRange* range);

// configs/train_*.yaml: the offline job of streamdistill-train.
struct TrainJobConfig {
  std::string video;
  std::string cache_dir = "cache";
  std::string output_weights;  // empty: do not save
  FrameRange train_frames{0, 600};
  FrameRange eval_frames{600, 795};
  int threads = 2;
  uint64_t model_seed = 1;
  std::string init_weights;  // empty: random initialisation from model_seed
  int eval_every = 0;        // evaluate on the held-out frames every N steps (0: only at the end)
  TeacherOptions teacher;
  StudentArchitecture student;
  InferenceOptions inference;
  TrainerOptions training;
};
StatusOr<TrainJobConfig> LoadTrainJobConfig(const std::string& path);
// The job's keys of `root`, for configs that extend the job (the benchmark's); the caller
// checks for unknown keys, and that `video` is there (the benchmark can make its video).
Status ReadTrainJobFields(const YamlReader& root, TrainJobConfig* config);

}  // namespace sd
