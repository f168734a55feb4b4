// A YAML document laid over another: the bench's configs that name a `base:` and differ from
// it in a few keys, and the fleet's runs that take a daemon's config and set their own keys.
// The result is emitted as text for the strict reader (yaml_reader.h), so its error lines are
// those of the merged document.
#pragma once

#include <string>

#include <yaml-cpp/yaml.h>

#include "common/base/status.h"

namespace sd {

// The document at `path`. NotFound / InvalidArgument (with the line) naming the file, as
// YamlReader::FromFile's.
StatusOr<YAML::Node> LoadYamlFile(const std::string& path);

// `over` laid over `base` (neither is changed): maps merge key by key, anything else (a list,
// a scalar) replaces. A key to drop rather than merge is removed from `base` first.
YAML::Node MergeYaml(const YAML::Node& base, const YAML::Node& over);

// The document at `path` over its `base:` chain: a map with a `base:` key (a path, relative to
// the file naming it) is merged over that file's own chain, at most 8 deep; the `base` key is
// left out. Errors name the file and 'base'; `what` says what a base must be ("a bench config").
StatusOr<YAML::Node> LoadYamlWithBase(const std::string& path, const std::string& what);

// `node` as YAML text (ending in a newline).
std::string EmitYaml(const YAML::Node& node);

}  // namespace sd
