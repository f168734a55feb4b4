// Internal to the student: the network graph and its libtorch module. Included only by the
// student and trainer sources (it pulls in torch, which is slow to compile).
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "common/student/student.h"

namespace sd {

// The network as a list of nodes, so that the trainable module and the frozen inference
// graph are built from one description and cannot drift apart.
struct GraphNode {
  enum class Op { kInput, kConvBnRelu, kConvBias, kAdd, kUpsampleTo };
  Op op = Op::kInput;
  int a = -1;  // first input node
  int b = -1;  // kAdd: second input; kUpsampleTo: node whose spatial size to take
  int in_channels = 0, out_channels = 0, kernel = 1, stride = 1, groups = 1;
};

struct GraphSpec {
  std::vector<GraphNode> nodes;
  int head = -1;       // [N, classes + 4, H/4, W/4]: heatmap logits, log size (w, h) in cells, offset (x, y)
  int embedding = -1;  // deepest features, pooled for the image embedding
};

GraphSpec BuildGraph(const StudentArchitecture& arch);

class StudentNetImpl : public torch::nn::Module {
 public:
  explicit StudentNetImpl(const StudentArchitecture& arch);
  // Returns {head output, pooled embedding [N, channels.back()]}.
  std::pair<torch::Tensor, torch::Tensor> forward(const torch::Tensor& input);

  const GraphSpec& spec() const { return spec_; }
  // Per node: conv (and BN for kConvBnRelu); empty holders for other ops.
  const std::vector<torch::nn::Conv2d>& convs() const { return convs_; }
  const std::vector<torch::nn::BatchNorm2d>& norms() const { return norms_; }

 private:
  GraphSpec spec_;
  std::vector<torch::nn::Conv2d> convs_;
  std::vector<torch::nn::BatchNorm2d> norms_;
};
TORCH_MODULE(StudentNet);

struct StudentModel::Impl {
  StudentArchitecture arch;
  StudentNet net{nullptr};
};

inline torch::Device TorchDevice(ComputeDevice device) {
  return device == ComputeDevice::kCuda ? torch::kCUDA : torch::kCPU;
}

// Pixel normalisation shared by training and inference: BGR image at the network's input
// size (CV_8UC3) -> float CHW written to `dst` (3 * H * W floats).
void ImageToInput(const cv::Mat& bgr, float* dst);

// Heatmap peaks to boxes in network-input pixels (before mapping to the source frame).
Detections DecodeHead(const torch::Tensor& head_chw, int num_classes, float score_threshold,
                      int max_detections);

}  // namespace sd
