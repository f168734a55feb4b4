// The student's options: its architecture, where it runs, and their names in configs.
#include "common/student/student.h"

#include <sstream>

namespace sd {

const char* ComputeDeviceName(ComputeDevice device) { return device == ComputeDevice::kCuda ? "cuda" : "cpu"; }

StatusOr<ComputeDevice> ParseComputeDevice(const std::string& name) {
  if (name == "cpu") return ComputeDevice::kCpu;
  if (name == "cuda") return ComputeDevice::kCuda;
  return Status::InvalidArgument("device must be 'cpu' or 'cuda', got '" + name.substr(0, 32) + "'");
}

const char* StudentBlockName(StudentBlock block) { return block == StudentBlock::kConv ? "conv" : "separable"; }

StatusOr<StudentBlock> ParseStudentBlock(const std::string& name) {
  if (name == "separable") return StudentBlock::kSeparable;
  if (name == "conv") return StudentBlock::kConv;
  return Status::InvalidArgument("student block must be 'separable' or 'conv', got '" + name + "'");
}

Status InferenceOptions::Validate() const {
  if (score_threshold < 0 || score_threshold >= 1) return Status::InvalidArgument("score_threshold: must be in [0, 1)");
  return Status::Ok();
}

Status StudentArchitecture::Validate() const {
  auto invalid = [](const std::string& problem) { return Status::InvalidArgument(problem); };
  const bool width_ok = input_width > 0 && input_width % 32 == 0;
  if (!width_ok || input_height <= 0 || input_height % 32)
    return invalid(std::string(width_ok ? "input_height" : "input_width") +
                   ": student input size must be positive multiples of 32, got " + std::to_string(input_width) + "x" +
                   std::to_string(input_height));
  if (num_classes < 1 || num_classes > 1000)
    return invalid("num_classes: student classes must be in 1..1000, got " + std::to_string(num_classes));
  if (channels.size() != 5) return invalid("channels: student channels must list 5 widths (stem and 4 stages)");
  for (int c : channels)
    if (c < 4 || c > 2048) return invalid("channels: student channel widths must be in 4..2048");
  return Status::Ok();
}

std::string StudentArchitecture::Fingerprint() const {
  std::ostringstream out;
  out << "centernet-v1 " << input_width << "x" << input_height << " c" << num_classes << " ";
  for (size_t i = 0; i < channels.size(); ++i) out << (i ? "-" : "") << channels[i];
  out << " " << StudentBlockName(block);
  return out.str();
}

}  // namespace sd
