// Privacy masks (edge.yaml `privacy:`): polygons filled and faces redacted in a frame before it
// is encoded for the server, so that no masked pixel leaves the box. What was applied travels
// with the frame as its mask declaration (SampledFrame.privacy), which the server stores and a
// device marked `privacy: required` there must carry.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <opencv2/core.hpp>
#include <opencv2/objdetect.hpp>

#include "common/base/status.h"
#include "edge/frame_polygon.h"

namespace sd {

struct PrivacyMask {
  std::string name;  // [A-Za-z0-9_.-]{1,64}: it is stored and shown with the frame
  FramePolygon polygon;
};

enum class Redaction { kFill, kBlur };

struct FaceRedactionOptions {
  bool enabled = false;
  // Any OpenCV cascade (Haar or LBP); Debian's opencv-data has the stock ones.
  std::string cascade = "/usr/share/opencv4/haarcascades/haarcascade_frontalface_default.xml";
  // Filled black, or blurred beyond recognition (a Gaussian as wide as the face); fill is the
  // one that provably leaves no pixel of the face.
  Redaction redact = Redaction::kFill;
  int min_size = 20;        // smallest face in pixels
  double margin = 0.25;     // the box grows by this share of its size on every side (hair, chin)
  double scale_factor = 1.1;
  int min_neighbors = 3;    // lower: more faces found, more false ones
  Status Validate() const;  // the message starts with the field's name
};

struct PrivacyOptions {
  std::vector<PrivacyMask> masks;
  FaceRedactionOptions faces;
  // The student on the box sees the frames masked too (costs the redaction on every detected
  // frame); by default it sees them whole and only the uploaded copy is masked.
  bool student_sees_masked = false;
  bool any() const { return !masks.empty() || faces.enabled; }
};

// What Apply() did to one frame: the declaration the frame carries.
struct PrivacyApplied {
  std::vector<std::string> masks;  // names of the polygons filled
  bool faces = false;              // face redaction ran
  int faces_found = 0;
};

bool IsValidMaskName(const std::string& name);

class PrivacyFilter {
 public:
  // Loads the face cascade when enabled: FailedPrecondition naming the file when it cannot be
  // read as one (callers add the key, privacy.faces.cascade).
  static StatusOr<std::unique_ptr<PrivacyFilter>> Create(const PrivacyOptions& options);

  // Fills the masks and redacts the faces of `bgr` (a source frame) in place. A pixel polygon
  // beyond the frame (the stream changed resolution) fails the frame rather than send it half
  // masked. Not thread-safe (the cascade keeps scratch state): one capture thread.
  StatusOr<PrivacyApplied> Apply(cv::Mat* bgr);

 private:
  explicit PrivacyFilter(PrivacyOptions options) : options_(std::move(options)) {}

  const PrivacyOptions options_;
  cv::CascadeClassifier cascade_;
  cv::Mat gray_;  // scratch
};

}  // namespace sd
