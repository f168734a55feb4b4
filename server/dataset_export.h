// streamdistill-export's library: the stored frames with the teacher's labels as a detection
// dataset (COCO JSON and/or YOLO text files) for training elsewhere, split as the server split
// them: a frame's stored `validation` flag (set when it was stored, every validation_every-th
// sequence) puts it in val, every other frame in train.
//
// Layout under ExportOptions::out_dir (docs/operations.md, "Dataset export"):
//   coco/train.json, coco/val.json          COCO detection files (pycocotools' fields)
//   images/{train,val}/<device>_<seq>.jpg   their images; file_name is "<device>_<seq>.jpg",
//                                           images/<split>/ the image root (COCO's convention)
//   yolo/images/{train,val}/<device>_<seq>.jpg
//   yolo/labels/{train,val}/<device>_<seq>.txt   "class cx cy w h", normalised, one box a line
//   yolo/data.yaml                          the splits' image folders and the class names
// <seq> is zero-padded to 12 digits as in the store, so names sort in sequence order.
//
// The JPEGs are the stored bytes (copied, never re-encoded; a YOLO image is a hard link to
// its COCO copy when both are written); width and height come from each JPEG's header. Boxes
// are clipped to the image; one with nothing left inside it is dropped and counted. A frame
// without boxes is exported as an image with no annotations (an empty label file): the
// teacher found nothing there, and training uses it as such.
//
// The store is only read (FrameStore::OpenReadOnly beside a running server). Each device's
// frames are listed page by page, each page one consistent read; a frame stored while the
// export runs may or may not be in it, and a listed frame that retention deletes before its
// image is copied is skipped and counted. The COCO files and data.yaml are written last, so a
// failed export leaves no dataset that looks whole; the output is not fsynced (an
// interrupted export is run again).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/base/env.h"
#include "common/base/status.h"
#include "server/frame_store.h"

namespace sd {

struct ExportOptions {
  std::string out_dir;               // created if absent; must be empty (no stale files mix in)
  std::vector<std::string> devices;  // empty: every device in the store
  bool coco = true, yolo = true;
  bool train = true, validation = true;  // the splits to write
  // Class id -> name (server.yaml's student.class_names). Empty: "class<i>" for every id up to
  // the largest in the labels. A label whose class has no name fails the export.
  std::vector<std::string> class_names;
  Env* env = Env::Default();  // writes the output (tests pause it or fail it here)
  Status Validate() const;  // an out_dir, a format and a split; ExportDataset calls it
};

struct SplitCounts {
  int64_t frames = 0;
  int64_t frames_without_boxes = 0;
  int64_t boxes = 0;
};

struct ExportSummary {
  SplitCounts train, validation;
  int64_t skipped_pruned = 0;  // listed, but deleted by retention before the image was copied
  int64_t boxes_dropped = 0;   // nothing of the box inside the image
  // One line: "exported N frames: train A (B boxes), val C (D boxes); ...".
  std::string ToString() const;
};

// "class0", "class1", ...: names for `count` classes that have none configured.
std::vector<std::string> GenericClassNames(int count);

// Writes the dataset of `store`'s frames as `options` say. NotFound for a requested device
// with no stored frame or version; FailedPrecondition when out_dir is not empty; the Env's
// error (with the path) when the output cannot be written; the store's errors as they are.
StatusOr<ExportSummary> ExportDataset(const FrameStore& store, const ExportOptions& options);

}  // namespace sd
