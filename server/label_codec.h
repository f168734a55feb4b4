// The text form of a frame's teacher labels as the store keeps it (the frames.labels column):
// "<class> <score> <x1> <y1> <x2> <y2>" per detection, detections joined by ';', floats in
// shortest round-trip form: compact, exact (labels read back bit for bit), and readable with
// the sqlite3 shell. Part of the on-disk format: existing stores hold this text.
#pragma once

#include <string>

#include "common/vision/detection.h"

namespace sd {

std::string EncodeLabels(const Detections& labels);
// Appends the detections of `text` to `labels`; false when the text is malformed (then
// `labels` may hold the detections before the fault).
bool DecodeLabels(const std::string& text, Detections* labels);

}  // namespace sd
