// One place that fills the option structs from YAML and validates them. Daemons and tools
// call these; every error names the file and the key (see yaml_reader.h).
#pragma once

#include <string>

#include "common/obs/http_endpoint.h"
#include "common/base/status.h"
#include "common/student/student.h"
#include "common/student/student_trainer.h"
#include "common/teacher/teacher.h"
#include "common/config/yaml_reader.h"

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

}  // namespace sd
