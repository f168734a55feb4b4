// streamdistill-export: writes the server's stored frames with the teacher's labels as a
// detection dataset (COCO JSON, YOLO text files or both) with the server's training /
// validation split (server/dataset_export.h). Reads the store only, so it runs beside a live
// server without stopping or slowing it.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <string>
#include <vector>

#include "server/dataset_export.h"
#include "server/frame_store.h"
#include "server/server_config.h"
#include "tools/tool_cli.h"

namespace sd {
namespace {

int Fail(const Status& status, int exit_code) {
  std::fprintf(stderr, "streamdistill-export: error: %s\n", status.message().c_str());
  return exit_code;
}

}  // namespace
}  // namespace sd

int main(int argc, char** argv) {
  CLI::App app{"streamdistill-export: the server's stored frames and the teacher's labels as a COCO / YOLO dataset"};
  std::string config_path, store_dir, out_dir, format = "both", split = "all";
  std::vector<std::string> devices;
  app.add_option("--config", config_path, "the server's YAML config: its storage_dir and student.class_names");
  app.add_option("--store", store_dir, "the store directory (instead of the config's storage_dir)");
  app.add_option("--device", devices, "a device to export (repeatable; default: every device)");
  app.add_option("--format", format, "coco | yolo | both")->check(CLI::IsMember({"coco", "yolo", "both"}));
  app.add_option("--split", split, "train | val | all")->check(CLI::IsMember({"train", "val", "all"}));
  app.add_option("--out", out_dir, "output directory, new or empty")->required();
  if (auto exit_code = sd::ParseToolCommandLine(app, argc, argv)) return *exit_code;
  if (config_path.empty() && store_dir.empty()) {
    return sd::Fail(sd::Status::InvalidArgument("give --config (the server's) or --store DIR"), 2);
  }

  sd::ExportOptions options;
  if (!config_path.empty()) {
    auto config = sd::LoadServerConfig(config_path);
    if (!config.ok()) return sd::Fail(config.status(), 2);
    if (store_dir.empty()) store_dir = config->storage_dir;
    // Without configured names, one for each of the student's classes (the labels' ids).
    options.class_names = config->class_names.empty() ? sd::GenericClassNames(config->student.num_classes)
                                                      : config->class_names;
  }
  options.out_dir = out_dir;
  options.devices = devices;
  options.coco = format != "yolo";
  options.yolo = format != "coco";
  options.train = split != "val";
  options.validation = split != "train";

  auto store = sd::FrameStore::OpenReadOnly(store_dir);
  if (!store.ok()) return sd::Fail(store.status(), 1);
  auto summary = sd::ExportDataset(**store, options);
  if (!summary.ok()) return sd::Fail(summary.status(), 1);
  std::printf("%s\n", summary->ToString().c_str());
  return 0;
}
