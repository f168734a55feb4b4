// Teachers: slow, accurate detectors whose output on camera frames is the training target
// for the small student. All of them share one interface so the server can swap them by
// configuration, and each can describe itself (Fingerprint) so labels can be cached.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/vision/detection.h"
#include "common/base/status.h"

namespace cv {
class Mat;
}

namespace sd {

// The teachers there are (`teacher.kind:`).
enum class TeacherKind { kHog, kDpm, kTorchScript, kOnnx };
const char* TeacherKindName(TeacherKind kind);  // "hog", "dpm", "torchscript", "onnx"
// InvalidArgument "unknown teacher kind '...' (valid: hog, dpm, torchscript, onnx)" for any other.
StatusOr<TeacherKind> ParseTeacherKind(const std::string& name);
// The names ParseTeacherKind accepts, in the order they are listed in error messages.
const std::vector<std::string>& TeacherKinds();

struct TeacherOptions {
  TeacherKind kind = TeacherKind::kHog;
  std::string model_path;        // dpm: model .xml; torchscript: .pt; onnx: .onnx; hog: unused
  // hog: minimum SVM weight; torchscript/onnx: minimum class score; dpm: minimum score, a
  // margin around 0 (people in vtest.avi score about -0.1..0.4), so use ~0 or below for dpm.
  float score_threshold = 0.5f;
  float nms_iou = 0.5f;          // greedy per-class NMS; a box whose IoU exceeds this is dropped
  double hog_scale = 1.05;       // multi-scale pyramid step
  int hog_win_stride = 8;
  // Frames narrower than this are enlarged (aspect kept) before the teacher sees them, and
  // the boxes mapped back to the frame. An edge may send frames at the student's resolution
  // to save uplink; HOG and DPM only find people at least as tall as their window (128 px),
  // so the server restores the scale they were built for. 0: frames are labelled as they are.
  int min_width = 0;
  // torchscript/onnx network input: the frame is letterboxed to this size (aspect kept,
  // padded with 114), converted to RGB and scaled to 0..1.
  int input_width = 640, input_height = 640;
  std::vector<int> class_map;  // model class index -> our class id; -1 drops it; empty = identity
  // Threads for the teacher's library (torch intra-op for torchscript, cv::setNumThreads
  // otherwise). Both settings are process-global, so they are applied once when the teacher
  // is created, never per call; <= 0 leaves the current setting alone.
  int threads = 1;

  // InvalidArgument naming the option for a value out of range (CreateTeacher calls it).
  Status Validate() const;
};

class Teacher {
 public:
  virtual ~Teacher();

  // Detects objects in a non-empty 8-bit BGR frame (CV_8UC3). Boxes are in the frame's pixel
  // coordinates, clipped to it, with NMS applied. Not thread-safe: one call at a time.
  virtual StatusOr<Detections> Label(const cv::Mat& bgr) = 0;

  // One line (no newline) naming the kind, every option that changes the output, the model
  // file's content hash and the library version. Equal fingerprints mean equal labels, so
  // it is used as a label-cache key.
  virtual std::string Fingerprint() const = 0;
};

// Loads the model named by `options` and validates the options. Errors name the model file.
StatusOr<std::unique_ptr<Teacher>> CreateTeacher(const TeacherOptions& options);

// A content hash of a file, "fnv1a64=<16 hex digits>,size=<bytes>", read in full. NotFound
// when the file does not exist; used to key caches on model and video contents.
StatusOr<std::string> FileContentHash(const std::string& path);

}  // namespace sd
