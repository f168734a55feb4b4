// Shared by the teacher implementations (teacher_*.cc); not part of the public API.
#pragma once

#include <memory>
#include <string>

#include <opencv2/core.hpp>

#include "common/teacher.h"

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
