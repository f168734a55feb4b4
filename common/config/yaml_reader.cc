#include "common/config/yaml_reader.h"

#include <fstream>
#include <iterator>

#include "common/config/yaml_overlay.h"

namespace sd {
namespace {

std::string LineOf(const YAML::Node& node) {
  const YAML::Mark mark = node.Mark();
  if (mark.line < 0) return "";
  return " (line " + std::to_string(mark.line + 1) + ")";
}

std::string Describe(const YAML::Node& node) {
  if (node.IsScalar()) return "'" + node.Scalar() + "'";
  if (node.IsSequence()) return "a list";
  if (node.IsMap()) return "a map";
  return "nothing";
}

}  // namespace

YamlReader::YamlReader(std::shared_ptr<Shared> shared, YAML::Node node, std::string prefix)
    : shared_(std::move(shared)), node_(std::move(node)), prefix_(std::move(prefix)) {}

StatusOr<YamlReader> YamlReader::FromString(const std::string& text, const std::string& name) {
  auto shared = std::make_shared<Shared>();
  shared->file = name;
  try {
    shared->root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    return Status::InvalidArgument(name + ": invalid YAML at line " + std::to_string(e.mark.line + 1) +
                                   ": " + e.msg);
  }
  if (shared->root.IsNull()) shared->root = YAML::Node(YAML::NodeType::Map);
  if (!shared->root.IsMap()) return Status::InvalidArgument(name + ": top level must be a map of keys");
  YAML::Node root = shared->root;
  return YamlReader(std::move(shared), root, "");
}

StatusOr<YamlReader> YamlReader::FromFile(const std::string& path) {
  // Clear errors for a missing or broken file; the reader then parses the text itself.
  SD_RETURN_IF_ERROR(LoadYamlFile(path).status());
  std::ifstream in(path);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return FromString(text, path);
}

std::string YamlReader::Path(const std::string& key) const { return prefix_.empty() ? key : prefix_ + "." + key; }

std::vector<std::string> YamlReader::Keys() const {
  std::vector<std::string> keys;
  if (!node_.IsMap()) return keys;
  for (const auto& entry : node_) keys.push_back(entry.first.as<std::string>());
  return keys;
}

bool YamlReader::Has(const std::string& key) const { return node_.IsMap() && node_[key].IsDefined(); }

YAML::Node YamlReader::Lookup(const std::string& key) const {
  shared_->used.insert(Path(key));
  if (!node_.IsMap()) return YAML::Node(YAML::NodeType::Undefined);
  return node_[key];
}

Status YamlReader::Error(const std::string& key, const std::string& problem) const {
  std::string where;
  if (node_.IsMap() && node_[key].IsDefined()) where = LineOf(node_[key]);
  return Status::InvalidArgument(shared_->file + ": key '" + Path(key) + "'" + where + ": " + problem);
}

Status YamlReader::Check(const Status& valid, const std::map<std::string, std::string>& keys) const {
  if (valid.ok()) return valid;
  const std::string& message = valid.message();
  const size_t colon = message.find(": ");
  const std::string field = colon == std::string::npos ? "" : message.substr(0, colon);
  if (field.empty() || field.find(' ') != std::string::npos)
    return Status::InvalidArgument(file() + ": " + message);
  auto renamed = keys.find(field);
  std::string key = renamed == keys.end() ? field : renamed->second;
  YamlReader section = *this;
  for (size_t dot = key.find('.'); renamed != keys.end() && dot != std::string::npos; dot = key.find('.')) {
    SD_ASSIGN_OR_RETURN(section, section.Child(key.substr(0, dot)));
    key = key.substr(dot + 1);
  }
  return section.Error(key, message.substr(colon + 2));
}

template <typename T>
Status YamlReader::GetScalar(const std::string& key, const char* type_name, T* out) const {
  YAML::Node node = Lookup(key);
  if (!node.IsDefined() || node.IsNull()) return Status::Ok();
  if (!node.IsScalar()) return Error(key, std::string("expected ") + type_name + ", got " + Describe(node));
  try {
    *out = node.as<T>();
  } catch (const YAML::Exception&) {
    return Error(key, std::string("expected ") + type_name + ", got " + Describe(node));
  }
  return Status::Ok();
}

Status YamlReader::Get(const std::string& key, int* out) const { return GetScalar(key, "an integer", out); }
Status YamlReader::Get(const std::string& key, int64_t* out) const { return GetScalar(key, "an integer", out); }
Status YamlReader::Get(const std::string& key, uint64_t* out) const {
  return GetScalar(key, "a non-negative integer", out);
}
Status YamlReader::Get(const std::string& key, float* out) const { return GetScalar(key, "a number", out); }
Status YamlReader::Get(const std::string& key, double* out) const { return GetScalar(key, "a number", out); }
Status YamlReader::Get(const std::string& key, bool* out) const { return GetScalar(key, "true or false", out); }
Status YamlReader::Get(const std::string& key, std::string* out) const { return GetScalar(key, "a string", out); }

template <typename T>
Status YamlReader::GetList(const std::string& key, const char* what, std::vector<T>* out) const {
  YAML::Node node = Lookup(key);
  if (!node.IsDefined() || node.IsNull()) return Status::Ok();
  if (!node.IsSequence()) return Error(key, std::string("expected a list of ") + what + ", got " + Describe(node));
  try {
    *out = node.as<std::vector<T>>();
  } catch (const YAML::Exception&) {
    return Error(key, std::string("expected a list of ") + what);
  }
  return Status::Ok();
}

Status YamlReader::Get(const std::string& key, std::vector<int>* out) const { return GetList(key, "integers", out); }
Status YamlReader::Get(const std::string& key, std::vector<double>* out) const { return GetList(key, "numbers", out); }
Status YamlReader::Get(const std::string& key, std::vector<std::string>* out) const {
  return GetList(key, "strings", out);
}
Status YamlReader::Get(const std::string& key, std::vector<std::vector<double>>* out) const {
  return GetList(key, "lists of numbers", out);
}

StatusOr<YamlReader> YamlReader::Child(const std::string& key) const {
  YAML::Node node = Lookup(key);
  if (!node.IsDefined() || node.IsNull()) return YamlReader(shared_, YAML::Node(YAML::NodeType::Map), Path(key));
  if (!node.IsMap()) return Error(key, "expected a map of keys, got " + Describe(node));
  return YamlReader(shared_, node, Path(key));
}

StatusOr<std::vector<YamlReader>> YamlReader::Items(const std::string& key) const {
  YAML::Node node = Lookup(key);
  std::vector<YamlReader> items;
  if (!node.IsDefined() || node.IsNull()) return items;
  if (!node.IsSequence()) return Error(key, "expected a list of maps, got " + Describe(node));
  for (size_t i = 0; i < node.size(); ++i) {
    const std::string path = Path(key) + "[" + std::to_string(i) + "]";
    if (!node[i].IsMap())
      return Status::InvalidArgument(shared_->file + ": key '" + path + "'" + LineOf(node[i]) +
                                     ": expected a map of keys, got " + Describe(node[i]));
    shared_->used.insert(path);
    items.push_back(YamlReader(shared_, node[i], path));
  }
  return items;
}

Status YamlReader::FindUnused(const YAML::Node& node, const std::string& prefix) const {
  for (const auto& entry : node) {
    const std::string key = entry.first.as<std::string>();
    const std::string path = prefix.empty() ? key : prefix + "." + key;
    if (!shared_->used.count(path)) {
      return Status::InvalidArgument(shared_->file + ": unknown key '" + path + "'" + LineOf(entry.first));
    }
    if (entry.second.IsMap()) SD_RETURN_IF_ERROR(FindUnused(entry.second, path));
    if (entry.second.IsSequence())  // lists of maps (Items): their keys are checked too
      for (size_t i = 0; i < entry.second.size(); ++i)
        if (entry.second[i].IsMap())
          SD_RETURN_IF_ERROR(FindUnused(entry.second[i], path + "[" + std::to_string(i) + "]"));
  }
  return Status::Ok();
}

Status YamlReader::CheckAllKeysUsed() const { return FindUnused(shared_->root, ""); }

}  // namespace sd
