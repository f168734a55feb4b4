// Shared by the teacher implementations (teacher_*.cc); not part of the public API.
#pragma once

#include <memory>
#include <string>

#include <opencv2/core.hpp>

#include "common/teacher/teacher.h"

namespace sd {
namespace teacher_internal {

// Each factory gets options that CreateTeacher has already validated.
StatusOr<std::unique_ptr<Teacher>> CreateHogTeacher(const TeacherOptions& options);
StatusOr<std::unique_ptr<Teacher>> CreateDpmTeacher(const TeacherOptions& options);
StatusOr<std::unique_ptr<Teacher>> CreateTorchScriptTeacher(const TeacherOptions& options);
StatusOr<std::unique_ptr<Teacher>> CreateOnnxTeacher(const TeacherOptions& options);

// NotFound naming the file unless `path` is an existing regular file; `what` is e.g. "dpm
// model". Checked up front because the libraries' own errors for a missing file are vague.
Status CheckModelFile(const std::string& what, const std::string& path);

// InvalidArgument unless `bgr` is a non-empty CV_8UC3 image.
Status CheckFrame(const cv::Mat& bgr);

// `bgr` grown to at least `min_size` by a mid-grey border on the right and bottom, so pixel
// coordinates stay those of `bgr`; `bgr` itself (no copy) when it is large enough. OpenCV's
// sliding-window detectors read out of bounds on frames smaller than their window (HOG's
// detectMultiScale crashed the server on any frame under ~128 px tall), so they only ever
// see padded frames; their boxes are clipped back to `bgr` afterwards.
cv::Mat PadToAtLeast(const cv::Mat& bgr, cv::Size min_size);

// Runs `teacher` once on a blank input-sized frame, so that a model that cannot run or whose
// output does not fit the options fails at creation, with the model file named.
Status WarmUp(Teacher* teacher, const TeacherOptions& options);

// Shortest text that reads back as the same value, so fingerprints tell 0.5 from 0.50001
// while staying readable ("0.3", not "0.300000012").
std::string FormatNumber(float v);
std::string FormatNumber(double v);

// "0,-1,2" (or "identity" when empty), for fingerprints.
std::string FormatClassMap(const std::vector<int>& class_map);

}  // namespace teacher_internal
}  // namespace sd
