// The student's inference snapshot: the BN-folded graph as a frozen TorchScript module, and
// the pre- and post-processing that training shares (ImageToInput, DecodeHead).
#include <torch/script.h>

#include <algorithm>
#include <cmath>
#include <sstream>

#include <opencv2/imgproc.hpp>

#include "common/student/student.h"
#include "common/student/student_net.h"

namespace sd {
namespace {

// TorchScript source for the BN-folded graph; weights are the module's attributes w<i>, b<i>.
std::string InferenceScript(const GraphSpec& spec) {
  std::ostringstream s;
  s << "def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:\n    v0 = x\n";
  for (size_t i = 1; i < spec.nodes.size(); ++i) {
    const GraphNode& n = spec.nodes[i];
    s << "    v" << i << " = ";
    switch (n.op) {
      case GraphNode::Op::kConvBnRelu:
      case GraphNode::Op::kConvBias: {
        const int pad = n.kernel / 2;
        std::ostringstream conv;
        conv << "torch.conv2d(v" << n.a << ", self.w" << i << ", self.b" << i << ", [" << n.stride << ", "
             << n.stride << "], [" << pad << ", " << pad << "], [1, 1], " << n.groups << ")";
        s << (n.op == GraphNode::Op::kConvBnRelu ? "torch.relu(" + conv.str() + ")" : conv.str());
        break;
      }
      case GraphNode::Op::kAdd: s << "v" << n.a << " + v" << n.b; break;
      case GraphNode::Op::kUpsampleTo:
        s << "torch.upsample_nearest2d(v" << n.a << ", [v" << n.b << ".size(2), v" << n.b << ".size(3)], None)";
        break;
      case GraphNode::Op::kInput: break;
    }
    s << "\n";
  }
  s << "    return (v" << spec.head << ", torch.mean(v" << spec.embedding << ", [2, 3]))\n";
  return s.str();
}

// Conv followed by BatchNorm (eval) equals one conv with scaled weights and a bias.
std::pair<torch::Tensor, torch::Tensor> FoldBatchNorm(const torch::nn::Conv2d& conv,
                                                      const torch::nn::BatchNorm2d& bn) {
  torch::Tensor w = conv->weight.detach();
  if (!bn) return {w.clone(), conv->bias.detach().clone()};
  const double eps = bn->options.eps();
  torch::Tensor scale = bn->weight.detach() / torch::sqrt(bn->running_var + eps);
  torch::Tensor bias = bn->bias.detach() - bn->running_mean * scale;
  return {w * scale.view({-1, 1, 1, 1}), bias};
}

// Calls that a new snapshot makes on a blank frame before it serves (see MakeDetector).
constexpr int kWarmupCalls = 3;

class TorchScriptDetector : public StudentDetector {
 public:
  TorchScriptDetector(StudentArchitecture arch, InferenceOptions options, torch::jit::Module module)
      : arch_(std::move(arch)), options_(std::move(options)), module_(std::move(module)),
        device_(TorchDevice(options_.device)) {}

  StatusOr<StudentOutput> Detect(const cv::Mat& bgr) const override {
    if (bgr.empty() || bgr.type() != CV_8UC3) return Status::InvalidArgument("frame must be a non-empty 8-bit BGR image");
    try {
      c10::InferenceMode guard;
      cv::Mat resized;
      cv::resize(bgr, resized, cv::Size(arch_.input_width, arch_.input_height), 0, 0, cv::INTER_AREA);
      torch::Tensor input = torch::empty({1, 3, arch_.input_height, arch_.input_width});
      ImageToInput(resized, input.data_ptr<float>());
      auto outputs = module_.forward({input.to(device_)}).toTuple();
      torch::Tensor head = outputs->elements()[0].toTensor().to(torch::kCPU).contiguous();
      torch::Tensor embedding = outputs->elements()[1].toTensor().to(torch::kCPU).contiguous();
      StudentOutput out;
      out.detections = DecodeHead(head[0], arch_.num_classes, options_.score_threshold, options_.max_detections * 4);
      out.detections = NonMaxSuppression(std::move(out.detections), options_.nms_iou, options_.max_detections);
      const float sx = static_cast<float>(bgr.cols) / arch_.input_width;
      const float sy = static_cast<float>(bgr.rows) / arch_.input_height;
      ScaleDetections(&out.detections, sx, sy);
      for (Detection& d : out.detections) {
        d.box.x1 = std::clamp(d.box.x1, 0.0f, static_cast<float>(bgr.cols));
        d.box.x2 = std::clamp(d.box.x2, 0.0f, static_cast<float>(bgr.cols));
        d.box.y1 = std::clamp(d.box.y1, 0.0f, static_cast<float>(bgr.rows));
        d.box.y2 = std::clamp(d.box.y2, 0.0f, static_cast<float>(bgr.rows));
      }
      const float norm = std::max(embedding.norm().item<float>(), 1e-12f);
      const float* e = embedding.data_ptr<float>();
      out.embedding.assign(e, e + embedding.numel());
      for (float& value : out.embedding) value /= norm;
      return out;
    } catch (const c10::Error& e) {
      return Status::Internal(std::string("student inference failed: ") + e.what_without_backtrace());
    }
  }
  const StudentArchitecture& architecture() const override { return arch_; }
  const InferenceOptions& options() const override { return options_; }

 private:
  StudentArchitecture arch_;
  InferenceOptions options_;
  // forward() on a frozen module does not mutate it; the interpreter is thread-safe.
  mutable torch::jit::Module module_;
  torch::Device device_;
};

}  // namespace

void ImageToInput(const cv::Mat& bgr, float* dst) {
  const int plane = bgr.rows * bgr.cols;
  // (v / 255 - 0.45) / 0.25, per channel, BGR order kept.
  constexpr float kScale = 1.0f / (255.0f * 0.25f);
  constexpr float kShift = -0.45f / 0.25f;
  for (int y = 0; y < bgr.rows; ++y) {
    const uint8_t* row = bgr.ptr<uint8_t>(y);
    const int base = y * bgr.cols;
    for (int x = 0; x < bgr.cols; ++x) {
      dst[base + x] = row[3 * x] * kScale + kShift;
      dst[plane + base + x] = row[3 * x + 1] * kScale + kShift;
      dst[2 * plane + base + x] = row[3 * x + 2] * kScale + kShift;
    }
  }
}

Detections DecodeHead(const torch::Tensor& head_chw, int num_classes, float score_threshold, int max_detections) {
  torch::Tensor head = head_chw.to(torch::kCPU).contiguous();
  const int h = head.size(1), w = head.size(2);
  const float* data = head.data_ptr<float>();
  const float* size_w = data + num_classes * h * w;
  const float* size_h = size_w + h * w;
  const float* off_x = size_h + h * w;
  const float* off_y = off_x + h * w;
  const float threshold = std::clamp(score_threshold, 1e-6f, 1.0f - 1e-6f);
  const float logit_threshold = std::log(threshold / (1.0f - threshold));
  constexpr float kStride = StudentArchitecture::kOutputStride;
  Detections out;
  for (int c = 0; c < num_classes; ++c) {
    const float* heat = data + c * h * w;
    for (int y = 0; y < h; ++y) {
      for (int x = 0; x < w; ++x) {
        const float v = heat[y * w + x];
        if (v < logit_threshold) continue;
        // A peak is a local maximum of its 3x3 neighbourhood (CenterNet's max-pool NMS).
        bool peak = true;
        for (int dy = -1; dy <= 1 && peak; ++dy)
          for (int dx = -1; dx <= 1; ++dx) {
            const int yy = y + dy, xx = x + dx;
            if ((dy || dx) && yy >= 0 && yy < h && xx >= 0 && xx < w && heat[yy * w + xx] > v) {
              peak = false;
              break;
            }
          }
        if (!peak) continue;
        const int i = y * w + x;
        const float cx = (x + off_x[i]) * kStride, cy = (y + off_y[i]) * kStride;
        // Sizes are predicted as log(cells): a fresh network starts near one cell, and
        // Adam reaches large boxes in a few steps instead of hundreds.
        const float bw = std::exp(std::clamp(size_w[i], -4.0f, 6.0f)) * kStride;
        const float bh = std::exp(std::clamp(size_h[i], -4.0f, 6.0f)) * kStride;
        out.push_back({{cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2}, 1.0f / (1.0f + std::exp(-v)), c});
      }
    }
  }
  std::sort(out.begin(), out.end(), [](const Detection& a, const Detection& b) { return a.score > b.score; });
  if (max_detections > 0 && static_cast<int>(out.size()) > max_detections) out.resize(max_detections);
  return out;
}

StatusOr<std::shared_ptr<const StudentDetector>> StudentModel::MakeDetector(const InferenceOptions& options) const {
  if (options.device == ComputeDevice::kCuda && !torch::cuda::is_available())
    return Status::FailedPrecondition("device 'cuda' requested but no CUDA device is available");
  try {
    torch::NoGradGuard no_grad;
    const torch::Device device = TorchDevice(options.device);
    StudentNetImpl& net = *impl_->net;
    torch::jit::Module module("StudentInference");
    for (size_t i = 0; i < net.spec().nodes.size(); ++i) {
      if (!net.convs()[i]) continue;
      auto [w, b] = FoldBatchNorm(net.convs()[i], net.norms()[i]);
      module.register_parameter("w" + std::to_string(i), w.to(device), /*is_buffer=*/false);
      module.register_parameter("b" + std::to_string(i), b.to(device), /*is_buffer=*/false);
    }
    module.define(InferenceScript(net.spec()));
    module.eval();
    torch::jit::Module frozen = torch::jit::freeze(module);
    // On CPU this swaps in oneDNN convolutions with prepacked weights and fused ReLUs.
    if (device.is_cpu()) frozen = torch::jit::optimize_for_inference(frozen);
    // The graph executor profiles the first calls and then optimises the graph: those calls
    // ran 5-20x slower than the rest (docs/detector.md, speed). They happen here, on the
    // thread that builds the snapshot (the uplink's on an edge), not on a camera's frames.
    c10::InferenceMode guard;
    const torch::Tensor blank = torch::zeros({1, 3, impl_->arch.input_height, impl_->arch.input_width}).to(device);
    for (int i = 0; i < kWarmupCalls; ++i) frozen.forward({blank});
    return std::shared_ptr<const StudentDetector>(
        std::make_shared<TorchScriptDetector>(impl_->arch, options, std::move(frozen)));
  } catch (const c10::Error& e) {
    return Status::Internal(std::string("building the student inference graph: ") + e.what_without_backtrace());
  }
}

}  // namespace sd
