// Strict, typed reading of YAML config files. Every error names the file, the key path and
// the line, so that a broken config gives one clear line (the daemons then exit with code 2).
// Keys that no reader asked for are reported by CheckAllKeysUsed(): a typo is an error, not a
// silently ignored setting.
#pragma once

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "common/base/status.h"

namespace sd {

class YamlReader {
 public:
  static StatusOr<YamlReader> FromFile(const std::string& path);
  static StatusOr<YamlReader> FromString(const std::string& text, const std::string& name);

  // Optional keys: `*out` keeps its value (the default) when the key is absent.
  Status Get(const std::string& key, int* out) const;
  Status Get(const std::string& key, int64_t* out) const;
  Status Get(const std::string& key, uint64_t* out) const;
  Status Get(const std::string& key, float* out) const;
  Status Get(const std::string& key, double* out) const;
  Status Get(const std::string& key, bool* out) const;
  Status Get(const std::string& key, std::string* out) const;
  Status Get(const std::string& key, std::vector<int>* out) const;
  Status Get(const std::string& key, std::vector<double>* out) const;
  Status Get(const std::string& key, std::vector<std::string>* out) const;
  Status Get(const std::string& key, std::vector<std::vector<double>>* out) const;  // [[x, y], ...]

  // Required keys: absent is an error.
  template <typename T>
  Status Require(const std::string& key, T* out) const {
    if (!Has(key)) return Error(key, "missing required key");
    return Get(key, out);
  }

  bool Has(const std::string& key) const;
  // The keys of this map, in document order (for maps keyed by name, e.g. device ids).
  std::vector<std::string> Keys() const;
  // A reader for the map under `key`; an absent key gives an empty map (all defaults).
  StatusOr<YamlReader> Child(const std::string& key) const;
  // Readers for the maps of the list under `key` (named key[0], key[1], ... in errors); an
  // absent key gives none. An item that is not a map is an error.
  StatusOr<std::vector<YamlReader>> Items(const std::string& key) const;
  // Error naming a key, for semantic checks done by the caller ("must be positive").
  Status Error(const std::string& key, const std::string& problem) const;
  // The result of an options struct's Validate() for this section. Validate() names the field
  // first ("max_frames: must be >= 0"); the field is read as this section's key, or as
  // `keys[field]` where the YAML key differs (a dotted key, "labeler.workers", is looked up in
  // the child sections), and the error is Error(key, problem), with the key's path and line.
  // A message without a leading field gets only the file name before it.
  Status Check(const Status& valid, const std::map<std::string, std::string>& keys = {}) const;
  // Fails on the first key in the whole document that no Get/Require/Child asked for.
  Status CheckAllKeysUsed() const;
  const std::string& file() const { return shared_->file; }

 private:
  struct Shared {
    std::string file;
    YAML::Node root;
    std::set<std::string> used;  // full dotted paths
  };
  YamlReader(std::shared_ptr<Shared> shared, YAML::Node node, std::string prefix);
  std::string Path(const std::string& key) const;
  // Marks the key used and returns its node (invalid node if absent).
  YAML::Node Lookup(const std::string& key) const;
  template <typename T>
  Status GetScalar(const std::string& key, const char* type_name, T* out) const;
  template <typename T>
  Status GetList(const std::string& key, const char* what, std::vector<T>* out) const;
  Status FindUnused(const YAML::Node& node, const std::string& prefix) const;

  std::shared_ptr<Shared> shared_;
  YAML::Node node_;
  std::string prefix_;
};

}  // namespace sd
