#include "server/dataset_export.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <system_error>

#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>

#include "common/vision/image_header.h"

namespace sd {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// Frames listed per read of the index: memory stays bounded, and each read is one short
// snapshot rather than one held for the whole export.
constexpr int kPageFrames = 4096;
// Without configured names, one is made for every id up to the largest label's: an id beyond
// the student's own limit (StudentArchitecture::Validate) is a broken label, not a class.
constexpr int kMaxClasses = 1000;

// One split's files and the COCO records gathered for it.
struct SplitOutput {
  const char* name = "";  // "train" | "val": folder and file names
  SplitCounts* counts = nullptr;
  json images = json::array();
  json annotations = json::array();
};

// "<device>_<seq>" with the store's zero padding; the sequence is everything after the last
// '_', so the name is unambiguous although device ids may contain '_'.
std::string FrameName(const FrameRecord& frame) {
  char sequence[32];
  std::snprintf(sequence, sizeof(sequence), "%012llu", static_cast<unsigned long long>(frame.sequence));
  return frame.device_id + "_" + sequence;
}

std::string FrameWhat(const FrameRecord& frame) {
  return "frame " + frame.device_id + "/" + std::to_string(frame.sequence);
}

Status WriteOutputFile(Env* env, const std::string& path, std::string_view data) {
  SD_ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> file, env->NewWritableFile(path));
  SD_RETURN_IF_ERROR(file->Append(data));
  return file->Close();
}

// The part of `box` inside a width x height image; false when nothing is.
bool ClipToImage(const Box& box, int width, int height, Box* clipped) {
  clipped->x1 = std::clamp(box.x1, 0.0f, static_cast<float>(width));
  clipped->y1 = std::clamp(box.y1, 0.0f, static_cast<float>(height));
  clipped->x2 = std::clamp(box.x2, 0.0f, static_cast<float>(width));
  clipped->y2 = std::clamp(box.y2, 0.0f, static_cast<float>(height));
  return clipped->width() > 0 && clipped->height() > 0;
}

class Exporter {
 public:
  Exporter(const FrameStore& store, const ExportOptions& options) : store_(store), options_(options) {
    train_.name = "train";
    train_.counts = &summary_.train;
    validation_.name = "val";
    validation_.counts = &summary_.validation;
  }

  StatusOr<ExportSummary> Run() {
    SD_ASSIGN_OR_RETURN(const std::vector<std::string> devices, Devices());
    SD_RETURN_IF_ERROR(PrepareOutDir());
    for (const std::string& device : devices) SD_RETURN_IF_ERROR(ExportDevice(device));
    if (options_.coco) {
      for (SplitOutput* split : Splits()) SD_RETURN_IF_ERROR(WriteCoco(*split));
    }
    if (options_.yolo) SD_RETURN_IF_ERROR(WriteYoloDataYaml());
    return summary_;
  }

 private:
  std::vector<SplitOutput*> Splits() {
    std::vector<SplitOutput*> splits;
    if (options_.train) splits.push_back(&train_);
    if (options_.validation) splits.push_back(&validation_);
    return splits;
  }

  std::string Out(const std::string& relative) const { return options_.out_dir + "/" + relative; }

  StatusOr<std::vector<std::string>> Devices() const {
    const std::vector<std::string> stored = store_.Devices();
    if (options_.devices.empty()) return stored;
    std::vector<std::string> wanted = options_.devices;
    std::sort(wanted.begin(), wanted.end());
    wanted.erase(std::unique(wanted.begin(), wanted.end()), wanted.end());
    for (const std::string& device : wanted) {
      if (!std::binary_search(stored.begin(), stored.end(), device)) {
        return Status::NotFound(store_.dir() + ": no device '" + device + "' in the store (it has " +
                                std::to_string(stored.size()) + " device(s))");
      }
    }
    return wanted;
  }

  Status PrepareOutDir() {
    Env* env = options_.env;
    SD_RETURN_IF_ERROR(env->CreateDir(options_.out_dir).WithContext("cannot create the output directory"));
    SD_ASSIGN_OR_RETURN(const std::vector<std::string> entries, env->ListDir(options_.out_dir));
    if (!entries.empty()) {
      return Status::FailedPrecondition(options_.out_dir +
                                        ": not empty; an export writes to a new or empty directory, so that no "
                                        "earlier export's files mix into the dataset");
    }
    std::vector<std::string> dirs;
    if (options_.coco) dirs.push_back("coco");
    for (const SplitOutput* split : Splits()) {
      const std::string name = split->name;
      if (options_.coco) dirs.push_back("images/" + name);
      if (options_.yolo) {
        dirs.push_back("yolo/images/" + name);
        dirs.push_back("yolo/labels/" + name);
      }
    }
    for (const std::string& dir : dirs) SD_RETURN_IF_ERROR(env->CreateDir(Out(dir)));
    return Status::Ok();
  }

  Status ExportDevice(const std::string& device) {
    uint64_t after = 0;
    for (;;) {
      SD_ASSIGN_OR_RETURN(const std::vector<FrameRecord> page, store_.Since(device, after, kPageFrames));
      for (const FrameRecord& frame : page) SD_RETURN_IF_ERROR(ExportFrame(frame));
      if (static_cast<int>(page.size()) < kPageFrames) return Status::Ok();
      after = page.back().sequence;
    }
  }

  Status CheckClasses(const FrameRecord& frame) {
    for (const Detection& d : frame.labels) {
      const int limit = options_.class_names.empty() ? kMaxClasses : static_cast<int>(options_.class_names.size());
      if (d.class_id < 0 || d.class_id >= limit) {
        return Status::InvalidArgument(
            FrameWhat(frame) + ": a label of class " + std::to_string(d.class_id) +
            (options_.class_names.empty() ? ", outside 0.." + std::to_string(kMaxClasses - 1)
                                          : ", but only " + std::to_string(limit) +
                                                " class name(s) are configured (student.class_names)"));
      }
      max_class_id_ = std::max(max_class_id_, d.class_id);
    }
    return Status::Ok();
  }

  Status ExportFrame(const FrameRecord& frame) {
    if (frame.validation ? !options_.validation : !options_.train) return Status::Ok();
    SplitOutput& split = frame.validation ? validation_ : train_;
    SD_RETURN_IF_ERROR(CheckClasses(frame));
    StatusOr<std::string> jpeg = store_.LoadImage(frame);
    if (!jpeg.ok()) {
      // NotFound: retention deleted the frame since it was listed (see LoadImage).
      if (jpeg.status().code() != Status::Code::kNotFound) return jpeg.status();
      ++summary_.skipped_pruned;
      return Status::Ok();
    }
    StatusOr<ImageSize> size = ReadJpegSize(*jpeg);
    if (!size.ok()) return Status::DataLoss(frame.image_path + ": stored image: " + size.status().message());

    const std::string name = FrameName(frame);
    const std::string image_file = name + ".jpg";
    const std::string split_dir = split.name;
    std::string coco_image;
    if (options_.coco) {
      coco_image = Out("images/" + split_dir + "/" + image_file);
      SD_RETURN_IF_ERROR(WriteOutputFile(options_.env, coco_image, *jpeg));
    }
    if (options_.yolo) {
      const std::string yolo_image = Out("yolo/images/" + split_dir + "/" + image_file);
      // Both formats: one copy on disk. A hard link is not an Env operation; where it fails
      // (a filesystem without links) the bytes are written again.
      std::error_code link_error;
      if (!coco_image.empty()) fs::create_hard_link(coco_image, yolo_image, link_error);
      if (coco_image.empty() || link_error) SD_RETURN_IF_ERROR(WriteOutputFile(options_.env, yolo_image, *jpeg));
    }

    const int64_t image_id = static_cast<int64_t>(split.images.size()) + 1;
    split.images.push_back({{"id", image_id},
                            {"file_name", image_file},  // COCO's convention: the split's folder is the root
                            {"width", size->width},
                            {"height", size->height},
                            {"device_id", frame.device_id},
                            {"sequence", frame.sequence},
                            {"privacy", frame.privacy}});  // the masks the edge applied ("": none declared)
    std::string yolo_lines;
    int64_t boxes = 0;
    for (const Detection& d : frame.labels) {
      Box box;
      if (!ClipToImage(d.box, size->width, size->height, &box)) {
        ++summary_.boxes_dropped;
        continue;
      }
      ++boxes;
      const double w = box.width(), h = box.height();
      split.annotations.push_back({{"id", static_cast<int64_t>(split.annotations.size()) + 1},
                                   {"image_id", image_id},
                                   {"category_id", d.class_id + 1},
                                   {"bbox", {box.x1, box.y1, w, h}},
                                   {"area", w * h},
                                   {"iscrowd", 0},
                                   {"score", d.score}});
      char line[128];
      std::snprintf(line, sizeof(line), "%d %.6f %.6f %.6f %.6f\n", d.class_id, (box.x1 + w / 2) / size->width,
                    (box.y1 + h / 2) / size->height, w / size->width, h / size->height);
      yolo_lines += line;
    }
    if (options_.yolo) {
      SD_RETURN_IF_ERROR(
          WriteOutputFile(options_.env, Out("yolo/labels/" + split_dir + "/" + name + ".txt"), yolo_lines));
    }
    ++split.counts->frames;
    split.counts->boxes += boxes;
    if (boxes == 0) ++split.counts->frames_without_boxes;
    return Status::Ok();
  }

  std::vector<std::string> ClassNames() const {
    if (!options_.class_names.empty()) return options_.class_names;
    return GenericClassNames(std::max(max_class_id_, 0) + 1);
  }

  Status WriteCoco(const SplitOutput& split) const {
    json categories = json::array();
    const std::vector<std::string> names = ClassNames();
    // COCO's category ids start at 1 (some readers take 0 for the background); YOLO's at 0.
    for (size_t i = 0; i < names.size(); ++i) categories.push_back({{"id", i + 1}, {"name", names[i]}});
    const json coco = {
        {"info", {{"description", "streamdistill-export: the teacher's labels of " + store_.dir()}}},
        {"images", split.images},
        {"annotations", split.annotations},
        {"categories", categories},
    };
    return WriteOutputFile(options_.env, Out("coco/" + std::string(split.name) + ".json"), coco.dump());
  }

  Status WriteYoloDataYaml() const {
    std::error_code error;
    const fs::path root = fs::absolute(Out("yolo"), error);
    if (error) return Status::IOError(Out("yolo") + ": " + error.message());
    YAML::Emitter yaml;
    yaml << YAML::Comment("streamdistill-export: YOLO dataset; labels/ mirrors images/") << YAML::Newline;
    yaml << YAML::BeginMap;
    // Absolute: YOLOv5 reads a relative `path` from the working directory, not from here.
    yaml << YAML::Key << "path" << YAML::Value << root.lexically_normal().string();
    if (options_.train) yaml << YAML::Key << "train" << YAML::Value << "images/train";
    if (options_.validation) yaml << YAML::Key << "val" << YAML::Value << "images/val";
    const std::vector<std::string> names = ClassNames();
    yaml << YAML::Key << "nc" << YAML::Value << names.size();
    yaml << YAML::Key << "names" << YAML::Value << YAML::BeginMap;
    for (size_t i = 0; i < names.size(); ++i) yaml << YAML::Key << i << YAML::Value << names[i];
    yaml << YAML::EndMap << YAML::EndMap;
    if (!yaml.good()) return Status::Internal("writing data.yaml: " + yaml.GetLastError());
    return WriteOutputFile(options_.env, Out("yolo/data.yaml"), std::string(yaml.c_str()) + "\n");
  }

  const FrameStore& store_;
  const ExportOptions& options_;
  ExportSummary summary_;
  SplitOutput train_, validation_;
  int max_class_id_ = -1;
};

}  // namespace

std::vector<std::string> GenericClassNames(int count) {
  std::vector<std::string> names;
  for (int id = 0; id < count; ++id) names.push_back("class" + std::to_string(id));
  return names;
}

std::string ExportSummary::ToString() const {
  return "exported " + std::to_string(train.frames + validation.frames) + " frames: train " +
         std::to_string(train.frames) + " with " + std::to_string(train.boxes) + " boxes, val " +
         std::to_string(validation.frames) + " with " + std::to_string(validation.boxes) + " boxes (" +
         std::to_string(train.frames_without_boxes + validation.frames_without_boxes) + " frames without boxes); " +
         "skipped " + std::to_string(skipped_pruned) + " frames deleted by retention meanwhile; dropped " +
         std::to_string(boxes_dropped) + " boxes outside their image";
}

Status ExportOptions::Validate() const {
  if (out_dir.empty()) return Status::InvalidArgument("no output directory");
  if (!coco && !yolo) return Status::InvalidArgument("no output format (coco, yolo or both)");
  if (!train && !validation) return Status::InvalidArgument("no split (train, val or both)");
  return Status::Ok();
}

StatusOr<ExportSummary> ExportDataset(const FrameStore& store, const ExportOptions& options) {
  SD_RETURN_IF_ERROR(options.Validate());
  return Exporter(store, options).Run();
}

}  // namespace sd
