#include "common/config/yaml_overlay.h"

#include <filesystem>

namespace sd {
namespace {

constexpr int kMaxBaseDepth = 8;

StatusOr<YAML::Node> LoadOverBases(const std::string& path, const std::string& what, int depth) {
  SD_ASSIGN_OR_RETURN(YAML::Node doc, LoadYamlFile(path));
  const YAML::Node& read = doc;  // const lookups never add a key
  if (!doc.IsMap() || !read["base"]) return doc;
  if (!read["base"].IsScalar()) return Status::InvalidArgument(path + ": 'base': expected the path of " + what);
  if (depth >= kMaxBaseDepth)
    return Status::InvalidArgument(path + ": 'base': more than " + std::to_string(kMaxBaseDepth) +
                                   " bases deep (a loop?)");
  std::filesystem::path base = read["base"].as<std::string>();
  if (base.is_relative()) base = std::filesystem::path(path).parent_path() / base;
  auto merged_base = LoadOverBases(base.string(), what, depth + 1);
  if (!merged_base.ok()) return merged_base.status().WithContext(path + ": 'base'");
  doc.remove("base");
  return MergeYaml(*merged_base, doc);
}

}  // namespace

StatusOr<YAML::Node> LoadYamlFile(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return Status::NotFound(path + ": config file not found");
  try {
    return YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    return Status::NotFound(path + ": cannot read config file");
  } catch (const YAML::Exception& e) {
    return Status::InvalidArgument(path + ": invalid YAML at line " + std::to_string(e.mark.line + 1) + ": " +
                                   e.msg);
  }
}

YAML::Node MergeYaml(const YAML::Node& base, const YAML::Node& over) {
  if (!base.IsMap() || !over.IsMap()) return YAML::Clone(over);
  YAML::Node out = YAML::Clone(base);
  for (const auto& entry : over) {
    const std::string key = entry.first.as<std::string>();
    out[key] = out[key] ? MergeYaml(out[key], entry.second) : YAML::Clone(entry.second);
  }
  return out;
}

StatusOr<YAML::Node> LoadYamlWithBase(const std::string& path, const std::string& what) {
  return LoadOverBases(path, what, 0);
}

std::string EmitYaml(const YAML::Node& node) {
  YAML::Emitter out;
  out << node;
  return std::string(out.c_str()) + "\n";
}

}  // namespace sd
