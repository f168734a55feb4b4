#include "common/student/student.h"

#include <torch/script.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <opencv2/imgproc.hpp>

#include "common/base/checksum.h"
#include "common/student/student_net.h"

namespace sd {
namespace {

constexpr char kWeightsMagic[8] = {'S', 'D', 'S', 'T', 'U', 'D', '0', '1'};

// ---- graph ------------------------------------------------------------------------------

class GraphBuilder {
 public:
  GraphBuilder() { spec_.nodes.push_back(GraphNode{}); }  // node 0: the input image

  int Conv(int a, int in, int out, int kernel, int stride, int groups = 1, bool bn_relu = true) {
    GraphNode n;
    n.op = bn_relu ? GraphNode::Op::kConvBnRelu : GraphNode::Op::kConvBias;
    n.a = a;
    n.in_channels = in;
    n.out_channels = out;
    n.kernel = kernel;
    n.stride = stride;
    n.groups = groups;
    return Push(n);
  }
  int Block(int a, int in, int out, int stride, bool separable) {
    if (!separable) return Conv(a, in, out, 3, stride);
    return Conv(Conv(a, in, in, 3, stride, in), in, out, 1, 1);
  }
  int Add(int a, int b) { return Push(GraphNode{GraphNode::Op::kAdd, a, b}); }
  int UpsampleTo(int a, int like) { return Push(GraphNode{GraphNode::Op::kUpsampleTo, a, like}); }
  GraphSpec& spec() { return spec_; }

 private:
  int Push(const GraphNode& n) {
    spec_.nodes.push_back(n);
    return static_cast<int>(spec_.nodes.size()) - 1;
  }
  GraphSpec spec_;
};

}  // namespace

// Backbone of five stride-2 stages, a small top-down pyramid back to stride 4, and one
// shared head block. Depthwise-separable blocks keep the per-frame cost a few ms on a CPU.
GraphSpec BuildGraph(const StudentArchitecture& arch) {
  const auto& c = arch.channels;
  const bool sep = arch.block == "separable";
  GraphBuilder g;
  int x = g.Block(g.Conv(0, 3, c[0], 3, 2), c[0], c[0], 1, sep);              // /2
  const int s4 = g.Block(g.Block(x, c[0], c[1], 2, sep), c[1], c[1], 1, sep);   // /4
  const int s8 = g.Block(g.Block(s4, c[1], c[2], 2, sep), c[2], c[2], 1, sep);  // /8
  const int s16 = g.Block(g.Block(s8, c[2], c[3], 2, sep), c[3], c[3], 1, sep);
  const int s32 = g.Block(g.Block(s16, c[3], c[4], 2, sep), c[4], c[4], 1, sep);
  const int n = c[2];
  int p = g.Add(g.Conv(s16, c[3], n, 1, 1), g.UpsampleTo(g.Conv(s32, c[4], n, 1, 1), s16));
  p = g.Add(g.Conv(s8, c[2], n, 1, 1), g.UpsampleTo(p, s8));
  p = g.Add(g.Conv(s4, c[1], c[1], 1, 1), g.UpsampleTo(g.Conv(p, n, c[1], 1, 1), s4));
  const int h = g.Block(p, c[1], c[1], 1, sep);
  g.spec().head = g.Conv(h, c[1], arch.num_classes + 4, 1, 1, 1, /*bn_relu=*/false);
  g.spec().embedding = s32;
  return g.spec();
}

StudentNetImpl::StudentNetImpl(const StudentArchitecture& arch) : spec_(BuildGraph(arch)) {
  for (size_t i = 0; i < spec_.nodes.size(); ++i) {
    const GraphNode& n = spec_.nodes[i];
    const bool is_conv = n.op == GraphNode::Op::kConvBnRelu || n.op == GraphNode::Op::kConvBias;
    if (!is_conv) {
      convs_.emplace_back(nullptr);
      norms_.emplace_back(nullptr);
      continue;
    }
    const bool bn = n.op == GraphNode::Op::kConvBnRelu;
    auto conv = torch::nn::Conv2d(torch::nn::Conv2dOptions(n.in_channels, n.out_channels, n.kernel)
                                      .stride(n.stride)
                                      .padding(n.kernel / 2)
                                      .groups(n.groups)
                                      .bias(!bn));
    convs_.push_back(register_module("conv" + std::to_string(i), conv));
    norms_.push_back(bn ? register_module("bn" + std::to_string(i), torch::nn::BatchNorm2d(n.out_channels))
                        : torch::nn::BatchNorm2d(nullptr));
  }
  // CenterNet's prior: start the heatmap near 0.1 so the focal loss is stable early on.
  torch::NoGradGuard no_grad;
  auto& head_bias = convs_[spec_.head]->bias;
  head_bias.zero_();
  head_bias.slice(0, 0, arch.num_classes).fill_(-2.19);
}

std::pair<torch::Tensor, torch::Tensor> StudentNetImpl::forward(const torch::Tensor& input) {
  std::vector<torch::Tensor> v(spec_.nodes.size());
  v[0] = input;
  for (size_t i = 1; i < spec_.nodes.size(); ++i) {
    const GraphNode& n = spec_.nodes[i];
    switch (n.op) {
      case GraphNode::Op::kConvBnRelu: v[i] = torch::relu(norms_[i]->forward(convs_[i]->forward(v[n.a]))); break;
      case GraphNode::Op::kConvBias: v[i] = convs_[i]->forward(v[n.a]); break;
      case GraphNode::Op::kAdd: v[i] = v[n.a] + v[n.b]; break;
      case GraphNode::Op::kUpsampleTo:
        v[i] = torch::upsample_nearest2d(v[n.a], {v[n.b].size(2), v[n.b].size(3)}, c10::optional<double>(),
                                         c10::optional<double>());
        break;
      case GraphNode::Op::kInput: break;
    }
  }
  return {v[spec_.head], v[spec_.embedding].mean({2, 3})};
}

// ---- architecture -------------------------------------------------------------------------

Status StudentArchitecture::Validate() const {
  if (input_width <= 0 || input_height <= 0 || input_width % 32 || input_height % 32)
    return Status::InvalidArgument("student input size must be positive multiples of 32, got " +
                                   std::to_string(input_width) + "x" + std::to_string(input_height));
  if (num_classes < 1 || num_classes > 1000)
    return Status::InvalidArgument("student classes must be in 1..1000, got " + std::to_string(num_classes));
  if (channels.size() != 5) return Status::InvalidArgument("student channels must list 5 widths (stem and 4 stages)");
  for (int c : channels)
    if (c < 4 || c > 2048) return Status::InvalidArgument("student channel widths must be in 4..2048");
  if (block != "separable" && block != "conv")
    return Status::InvalidArgument("student block must be 'separable' or 'conv', got '" + block + "'");
  return Status::Ok();
}

std::string StudentArchitecture::Fingerprint() const {
  std::ostringstream out;
  out << "centernet-v1 " << input_width << "x" << input_height << " c" << num_classes << " ";
  for (size_t i = 0; i < channels.size(); ++i) out << (i ? "-" : "") << channels[i];
  out << " " << block;
  return out.str();
}

namespace {

StatusOr<StudentArchitecture> ParseFingerprint(const std::string& text) {
  StudentArchitecture arch;
  std::istringstream in(text);
  std::string version, size, classes, channels;
  in >> version >> size >> classes >> channels >> arch.block;
  char x = 0;
  std::istringstream size_in(size);
  size_in >> arch.input_width >> x >> arch.input_height;
  if (version != "centernet-v1" || x != 'x' || classes.size() < 2 || classes[0] != 'c')
    return Status::InvalidArgument("unknown student architecture '" + text + "'");
  arch.num_classes = std::atoi(classes.c_str() + 1);
  arch.channels.clear();
  std::istringstream ch_in(channels);
  for (std::string part; std::getline(ch_in, part, '-');) arch.channels.push_back(std::atoi(part.c_str()));
  SD_RETURN_IF_ERROR(arch.Validate().WithContext("student architecture '" + text + "'"));
  return arch;
}

// ---- weights serialization ---------------------------------------------------------------
// Layout: magic, architecture fingerprint, then every parameter and buffer by name (sorted,
// so the order does not depend on registration), each as name, dtype, shape and raw bytes,
// then an FNV-1a checksum of all that precedes it. Raw bytes make the round trip bit-exact.

// The weights format's checksum is FNV-1a 64 from a basis that lost a digit (1469598103934665603
// instead of kFnv1a64Basis) when it was first written; it stays, or every stored checkpoint,
// deployed model and weights checksum would stop matching.
constexpr uint64_t kWeightsFnvBasis = 1469598103934665603ull;
uint64_t Fnv1a(const char* data, size_t size) { return Fnv1a64(std::string_view(data, size), kWeightsFnvBasis); }

template <typename T>
void Put(std::string* out, T value) {
  out->append(reinterpret_cast<const char*>(&value), sizeof(T));
}

class Reader {
 public:
  explicit Reader(const std::string& bytes) : bytes_(bytes) {}
  template <typename T>
  bool Get(T* value) {
    if (pos_ + sizeof(T) > bytes_.size()) return false;
    std::memcpy(value, bytes_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return true;
  }
  bool GetBytes(size_t n, std::string* out) {
    if (pos_ + n > bytes_.size()) return false;
    out->assign(bytes_.data() + pos_, n);
    pos_ += n;
    return true;
  }
  bool CopyTo(void* dst, size_t n) {
    if (pos_ + n > bytes_.size()) return false;
    std::memcpy(dst, bytes_.data() + pos_, n);
    pos_ += n;
    return true;
  }

 private:
  const std::string& bytes_;
  size_t pos_ = 0;
};

std::map<std::string, torch::Tensor> NamedState(StudentNetImpl& net) {
  std::map<std::string, torch::Tensor> state;
  for (auto& p : net.named_parameters()) state[p.key()] = p.value();
  for (auto& b : net.named_buffers()) state[b.key()] = b.value();
  return state;
}

int8_t DtypeCode(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat32: return 0;
    case torch::kInt64: return 1;
    default: return -1;
  }
}

std::string Serialize(const StudentArchitecture& arch, StudentNetImpl& net) {
  std::string out(kWeightsMagic, sizeof(kWeightsMagic));
  const std::string fp = arch.Fingerprint();
  Put<uint32_t>(&out, fp.size());
  out += fp;
  auto state = NamedState(net);
  Put<uint32_t>(&out, state.size());
  for (auto& [name, tensor] : state) {
    torch::Tensor t = tensor.detach().to(torch::kCPU).contiguous();
    Put<uint32_t>(&out, name.size());
    out += name;
    Put<int8_t>(&out, DtypeCode(t.scalar_type()));
    Put<uint32_t>(&out, t.dim());
    for (int64_t d : t.sizes()) Put<int64_t>(&out, d);
    out.append(static_cast<const char*>(t.data_ptr()), t.nbytes());
  }
  Put<uint64_t>(&out, Fnv1a(out.data(), out.size()));
  return out;
}

StatusOr<StudentArchitecture> ReadArchitecture(const std::string& bytes) {
  if (bytes.size() < sizeof(kWeightsMagic) + 12 || std::memcmp(bytes.data(), kWeightsMagic, sizeof(kWeightsMagic)))
    return Status::InvalidArgument("not a streamdistill student weights file");
  uint64_t stored = 0;
  std::memcpy(&stored, bytes.data() + bytes.size() - 8, 8);
  if (stored != Fnv1a(bytes.data(), bytes.size() - 8))
    return Status::DataLoss("student weights checksum mismatch (truncated or corrupt)");
  Reader r(bytes);
  std::string magic, fp;
  uint32_t fp_size = 0;
  if (!r.GetBytes(sizeof(kWeightsMagic), &magic) || !r.Get(&fp_size) || !r.GetBytes(fp_size, &fp))
    return Status::DataLoss("student weights header is truncated");
  return ParseFingerprint(fp);
}

Status Deserialize(const std::string& bytes, const StudentArchitecture& arch, StudentNetImpl& net) {
  SD_ASSIGN_OR_RETURN(StudentArchitecture stored_arch, ReadArchitecture(bytes));
  if (stored_arch.Fingerprint() != arch.Fingerprint())
    return Status::InvalidArgument("weights are for '" + stored_arch.Fingerprint() + "', model is '" +
                                   arch.Fingerprint() + "'");
  Reader r(bytes);
  std::string skip;
  uint32_t fp_size = 0, count = 0;
  r.GetBytes(sizeof(kWeightsMagic), &skip);
  r.Get(&fp_size);
  r.GetBytes(fp_size, &skip);
  auto state = NamedState(net);
  if (!r.Get(&count) || count != state.size())
    return Status::InvalidArgument("weights hold " + std::to_string(count) + " tensors, model has " +
                                   std::to_string(state.size()));
  // Decode everything before touching the model, so a bad file leaves it unchanged.
  std::vector<std::pair<torch::Tensor, torch::Tensor>> copies;
  // With the count equal to the model's, no name twice means every tensor is set: a file that
  // repeated one and left another out used to load, keeping the missing one's old values
  // (found by fuzz/checkpoint_fuzz.cc).
  std::set<std::string> seen;
  for (uint32_t i = 0; i < count; ++i) {
    uint32_t name_size = 0, dims = 0;
    int8_t dtype = 0;
    std::string name;
    if (!r.Get(&name_size) || !r.GetBytes(name_size, &name) || !r.Get(&dtype) || !r.Get(&dims))
      return Status::DataLoss("student weights are truncated");
    auto it = state.find(name);
    if (it == state.end()) return Status::InvalidArgument("weights hold unknown tensor '" + name + "'");
    if (!seen.insert(name).second) return Status::InvalidArgument("weights hold tensor '" + name + "' twice");
    // The rank is checked before it sizes anything: a corrupt count made this allocate up to
    // 32 GB (found by fuzz/checkpoint_fuzz.cc).
    if (dims != static_cast<uint32_t>(it->second.dim()))
      return Status::InvalidArgument("tensor '" + name + "' has the wrong shape or type");
    std::vector<int64_t> shape(dims);
    for (auto& d : shape)
      if (!r.Get(&d)) return Status::DataLoss("student weights are truncated");
    const torch::Tensor& target = it->second;
    if (shape != target.sizes().vec() || dtype != DtypeCode(target.scalar_type()))
      return Status::InvalidArgument("tensor '" + name + "' has the wrong shape or type");
    torch::Tensor value = torch::empty(shape, torch::TensorOptions().dtype(target.scalar_type()));
    if (!r.CopyTo(value.data_ptr(), value.nbytes())) return Status::DataLoss("student weights are truncated");
    copies.emplace_back(target, value);
  }
  torch::NoGradGuard no_grad;
  for (auto& [target, value] : copies) target.copy_(value);
  return Status::Ok();
}

// ---- inference snapshot ------------------------------------------------------------------

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
        device_(options_.device == "cuda" ? torch::kCUDA : torch::kCPU) {}

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

// ---- StudentModel -------------------------------------------------------------------------

StudentModel::StudentModel(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
StudentModel::~StudentModel() = default;

StatusOr<std::unique_ptr<StudentModel>> StudentModel::Create(const StudentArchitecture& arch, uint64_t seed) {
  SD_RETURN_IF_ERROR(arch.Validate());
  auto impl = std::make_unique<Impl>();
  impl->arch = arch;
  {
    // Seed only the initialisation; a generator of our own would be cleaner, but
    // torch::nn modules draw from the default one.
    torch::manual_seed(seed);
    impl->net = StudentNet(arch);
  }
  return std::unique_ptr<StudentModel>(new StudentModel(std::move(impl)));
}

StatusOr<std::unique_ptr<StudentModel>> StudentModel::FromBytes(const std::string& bytes) {
  SD_ASSIGN_OR_RETURN(StudentArchitecture arch, ReadArchitecture(bytes));
  SD_ASSIGN_OR_RETURN(auto model, Create(arch, 0));
  SD_RETURN_IF_ERROR(model->LoadWeights(bytes));
  return model;
}

StatusOr<std::unique_ptr<StudentModel>> StudentModel::LoadFromFile(const std::string& path, Env* env) {
  StatusOr<std::string> bytes = env->ReadFile(path);
  if (!bytes.ok()) {
    if (bytes.status().code() == Status::Code::kNotFound)
      return Status::NotFound(path + ": cannot open student weights file");
    return bytes.status();
  }
  if (IsDeployedWeights(*bytes)) {  // the edge's deployed model: the weights inside it
    StatusOr<DeployedWeights> deployed = DecodeDeployedWeights(*bytes);
    if (!deployed.ok()) return deployed.status().WithContext(path);
    *bytes = std::move(deployed->weights);
  }
  auto model = FromBytes(*bytes);
  if (!model.ok()) return model.status().WithContext(path);
  return model;
}

const StudentArchitecture& StudentModel::architecture() const { return impl_->arch; }

int64_t StudentModel::NumParameters() const {
  int64_t n = 0;
  for (const auto& p : impl_->net->parameters()) n += p.numel();
  return n;
}

std::string StudentModel::SerializeWeights() const { return Serialize(impl_->arch, *impl_->net); }

Status StudentModel::LoadWeights(const std::string& bytes) {
  try {
    return Deserialize(bytes, impl_->arch, *impl_->net);
  } catch (const c10::Error& e) {
    return Status::Internal(std::string("loading student weights: ") + e.what_without_backtrace());
  }
}

// ---- deployed weights ----------------------------------------------------------------------
// Layout: magic, version (u64), checksum length (u32) and text, weights length (u64) and
// bytes (the SerializeWeights format), then FNV-1a 64 (kFnv1a64Basis) of all that precedes.

namespace {
constexpr char kDeployedMagic[8] = {'S', 'D', 'D', 'E', 'P', 'L', '0', '1'};
}  // namespace

bool IsDeployedWeights(const std::string& bytes) {
  return bytes.size() >= sizeof(kDeployedMagic) &&
         std::memcmp(bytes.data(), kDeployedMagic, sizeof(kDeployedMagic)) == 0;
}

std::string EncodeDeployedWeights(const DeployedWeights& deployed) {
  std::string out(kDeployedMagic, sizeof(kDeployedMagic));
  Put<uint64_t>(&out, deployed.version);
  Put<uint32_t>(&out, static_cast<uint32_t>(deployed.weights_checksum.size()));
  out += deployed.weights_checksum;
  Put<uint64_t>(&out, deployed.weights.size());
  out += deployed.weights;
  Put<uint64_t>(&out, Fnv1a64(out));
  return out;
}

StatusOr<DeployedWeights> DecodeDeployedWeights(const std::string& bytes) {
  if (!IsDeployedWeights(bytes)) return Status::InvalidArgument("not a deployed weights file");
  if (bytes.size() < sizeof(kDeployedMagic) + 8 + 4 + 8 + 8) return Status::DataLoss("deployed weights: truncated");
  uint64_t stored = 0;
  std::memcpy(&stored, bytes.data() + bytes.size() - 8, 8);
  if (stored != Fnv1a64(std::string_view(bytes.data(), bytes.size() - 8)))
    return Status::DataLoss("deployed weights: checksum mismatch (truncated or corrupt)");
  const std::string body = bytes.substr(0, bytes.size() - 8);
  Reader r(body);
  DeployedWeights d;
  std::string magic;
  uint32_t checksum_size = 0;
  uint64_t weights_size = 0;
  if (!r.GetBytes(sizeof(kDeployedMagic), &magic) || !r.Get(&d.version) || !r.Get(&checksum_size) ||
      !r.GetBytes(checksum_size, &d.weights_checksum) || !r.Get(&weights_size) ||
      weights_size != body.size() - sizeof(kDeployedMagic) - 8 - 4 - checksum_size - 8 ||
      !r.GetBytes(weights_size, &d.weights))
    return Status::DataLoss("deployed weights: malformed");
  return d;
}

Status StudentModel::SaveToFile(const std::string& path, Env* env) const {
  return WriteFileDurably(env, path, SerializeWeights()).WithContext("saving student weights");
}

namespace {
std::vector<torch::Tensor> FloatTensors(StudentNetImpl& net) {
  std::vector<torch::Tensor> tensors;
  for (auto& [name, tensor] : NamedState(net))
    if (tensor.scalar_type() == torch::kFloat32) tensors.push_back(tensor);
  return tensors;
}
}  // namespace

int64_t StudentModel::FlatSize() const {
  int64_t n = 0;
  for (const auto& t : FloatTensors(*impl_->net)) n += t.numel();
  return n;
}

std::vector<size_t> StudentModel::TensorSizes() const {
  std::vector<size_t> sizes;
  for (const auto& t : FloatTensors(*impl_->net)) sizes.push_back(static_cast<size_t>(t.numel()));
  return sizes;
}

std::vector<bool> StudentModel::StatisticsMask() const {
  std::vector<bool> mask;
  for (auto& [name, tensor] : NamedState(*impl_->net))
    if (tensor.scalar_type() == torch::kFloat32) mask.insert(mask.end(), tensor.numel(), !tensor.requires_grad());
  return mask;
}

std::vector<float> StudentModel::GradientMagnitudes() const {
  std::vector<float> flat;
  flat.reserve(FlatSize());
  for (const auto& t : FloatTensors(*impl_->net)) {
    if (!t.requires_grad() || !t.grad().defined()) {
      flat.insert(flat.end(), t.numel(), 0.0f);
      continue;
    }
    torch::Tensor g = t.grad().detach().abs().to(torch::kCPU).contiguous();
    flat.insert(flat.end(), g.data_ptr<float>(), g.data_ptr<float>() + g.numel());
  }
  return flat;
}

std::vector<float> StudentModel::FlatWeights() const {
  std::vector<float> flat;
  flat.reserve(FlatSize());
  for (const auto& t : FloatTensors(*impl_->net)) {
    torch::Tensor c = t.detach().to(torch::kCPU).contiguous();
    flat.insert(flat.end(), c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
  }
  return flat;
}

Status StudentModel::SetFlatWeights(const std::vector<float>& flat) {
  if (static_cast<int64_t>(flat.size()) != FlatSize())
    return Status::InvalidArgument("flat weights hold " + std::to_string(flat.size()) + " numbers, model has " +
                                   std::to_string(FlatSize()));
  torch::NoGradGuard no_grad;
  size_t offset = 0;
  for (auto& t : FloatTensors(*impl_->net)) {
    torch::Tensor src = torch::from_blob(const_cast<float*>(flat.data() + offset), t.sizes(), torch::kFloat32);
    t.copy_(src);
    offset += t.numel();
  }
  return Status::Ok();
}

std::string WeightsChecksum(const std::vector<float>& flat) {
  const uint64_t h = Fnv1a(reinterpret_cast<const char*>(flat.data()), flat.size() * sizeof(float));
  char buf[32];
  std::snprintf(buf, sizeof(buf), "fnv1a64:%016llx", static_cast<unsigned long long>(h));
  return buf;
}

StatusOr<std::shared_ptr<const StudentDetector>> StudentModel::MakeDetector(const InferenceOptions& options) const {
  if (options.device != "cpu" && options.device != "cuda")
    return Status::InvalidArgument("device must be 'cpu' or 'cuda', got '" + options.device + "'");
  if (options.device == "cuda" && !torch::cuda::is_available())
    return Status::FailedPrecondition("device 'cuda' requested but no CUDA device is available");
  try {
    torch::NoGradGuard no_grad;
    const torch::Device device = options.device == "cuda" ? torch::kCUDA : torch::kCPU;
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

void SetTorchThreads(int threads) {
  if (threads > 0) torch::set_num_threads(threads);
}

}  // namespace sd
