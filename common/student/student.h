// The student detector: a small anchor-free CenterNet-style network (heatmap, size and
// offset heads at stride 4) defined and trained in C++ with libtorch.
//
// Two objects play two roles:
//  - StudentModel holds trainable weights (the server trains it; tools save and load it).
//  - StudentDetector is an immutable, inference-ready snapshot of one set of weights:
//    BatchNorm folded into the convolutions and the graph frozen and optimised for the
//    device. The edge serves frames from a shared_ptr<const StudentDetector> and swaps the
//    pointer when a new version arrives; Detect() is const and safe to call from several
//    threads.
// This header keeps torch out so that users of the detector compile fast.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "common/vision/detection.h"
#include "common/base/env.h"
#include "common/base/status.h"

namespace sd {

// Where the student runs (`device:` in configs).
enum class ComputeDevice { kCpu, kCuda };
const char* ComputeDeviceName(ComputeDevice device);  // "cpu", "cuda"
// InvalidArgument "device must be 'cpu' or 'cuda', got '...'" for any other name.
StatusOr<ComputeDevice> ParseComputeDevice(const std::string& name);

// The student's convolution blocks (`student.block:`): depthwise + pointwise, or plain 3x3.
enum class StudentBlock { kSeparable, kConv };
const char* StudentBlockName(StudentBlock block);  // "separable", "conv"
// InvalidArgument "student block must be 'separable' or 'conv', got '...'" for any other name.
StatusOr<StudentBlock> ParseStudentBlock(const std::string& name);

// What determines the shape of the weights. Two models with equal fingerprints can
// exchange weights.
struct StudentArchitecture {
  int input_width = 384;  // multiples of 32
  int input_height = 288;
  int num_classes = 1;
  std::vector<int> channels = {16, 32, 64, 128, 256};  // stem and the four stages (/2 .. /32)
  StudentBlock block = StudentBlock::kSeparable;

  Status Validate() const;
  std::string Fingerprint() const;  // e.g. "centernet-v1 384x288 c1 16-32-64-128-256 separable"
  static constexpr int kOutputStride = 4;
};

// How a snapshot runs; does not change the weights.
struct InferenceOptions {
  float score_threshold = 0.3f;  // detections below are dropped (use ~0.01 for mAP evaluation)
  float nms_iou = 0.6f;
  int max_detections = 100;
  ComputeDevice device = ComputeDevice::kCpu;
  // score_threshold in [0, 1); the message starts with the field's name (YamlReader::Check).
  Status Validate() const;
};

struct StudentOutput {
  Detections detections;         // source-frame pixel coordinates, NMS applied
  std::vector<float> embedding;  // L2-normalised pooled backbone features (channels.back() numbers)
};

class StudentDetector {
 public:
  virtual ~StudentDetector() = default;
  // Runs the network on one BGR frame of any size; boxes come back in that frame's pixels.
  virtual StatusOr<StudentOutput> Detect(const cv::Mat& bgr) const = 0;
  virtual const StudentArchitecture& architecture() const = 0;
  virtual const InferenceOptions& options() const = 0;
};

class StudentModel {
 public:
  // Fresh weights from a seed (deterministic for a given seed and architecture).
  static StatusOr<std::unique_ptr<StudentModel>> Create(const StudentArchitecture& arch, uint64_t seed);
  // Weights from SerializeWeights() bytes or a file written by SaveToFile(); the
  // architecture is read from the bytes.
  static StatusOr<std::unique_ptr<StudentModel>> FromBytes(const std::string& bytes);
  static StatusOr<std::unique_ptr<StudentModel>> LoadFromFile(const std::string& path, Env* env = Env::Default());
  ~StudentModel();

  const StudentArchitecture& architecture() const;
  int64_t NumParameters() const;

  // Bit-exact round trip: FromBytes(SerializeWeights()) has identical tensors.
  std::string SerializeWeights() const;
  Status LoadWeights(const std::string& bytes);  // must match this architecture
  // Durable and atomic (WriteFileDurably): the file holds the old weights or the new, whole.
  Status SaveToFile(const std::string& path, Env* env = Env::Default()) const;

  // Every floating-point tensor (parameters and BatchNorm statistics), sorted by name, laid
  // end to end: the representation model updates encode and checksums cover.
  std::vector<float> FlatWeights() const;
  Status SetFlatWeights(const std::vector<float>& flat);  // size must match; unchanged on error
  int64_t FlatSize() const;
  // The number of floats of each of those tensors, in FlatWeights() order (they sum to
  // FlatSize()): the layout per-tensor update encodings (int8) quantize by.
  std::vector<size_t> TensorSizes() const;
  // In FlatWeights() order: true where the number is a BatchNorm statistic (a buffer that
  // follows the batches rather than the gradient).
  std::vector<bool> StatisticsMask() const;
  // In FlatWeights() order: |gradient| of each parameter from the last backward pass (a
  // trainer's Step), 0 for statistics and for parameters without a gradient.
  std::vector<float> GradientMagnitudes() const;

  // Builds an inference snapshot of the current weights.
  StatusOr<std::shared_ptr<const StudentDetector>> MakeDetector(const InferenceOptions& options) const;

  struct Impl;
  Impl& impl() { return *impl_; }  // for the trainer, which lives in another file
  const Impl& impl() const { return *impl_; }

 private:
  explicit StudentModel(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The edge's deployed model in one file (written with WriteFileDurably): the weights, the
// version they were deployed as and their WeightsChecksum, so that a crash can never leave a
// version that disagrees with the weights. StudentModel::LoadFromFile reads the weights of
// such a file as of a plain one.
struct DeployedWeights {
  uint64_t version = 0;
  std::string weights_checksum;  // WeightsChecksum of the weights' FlatWeights()
  std::string weights;           // SerializeWeights() bytes
};
std::string EncodeDeployedWeights(const DeployedWeights& deployed);
// DataLoss when torn or corrupt; InvalidArgument when not a deployed weights file at all.
StatusOr<DeployedWeights> DecodeDeployedWeights(const std::string& bytes);
bool IsDeployedWeights(const std::string& bytes);

// "fnv1a64:<16 hex digits>" over the bytes of `flat`: equal strings mean bit-identical weights.
std::string WeightsChecksum(const std::vector<float>& flat);

// Sets libtorch's intra-op thread count for this process (libtorch defaults to one).
void SetTorchThreads(int threads);

}  // namespace sd
