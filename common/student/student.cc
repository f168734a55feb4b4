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
  const bool sep = arch.block == StudentBlock::kSeparable;
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

namespace {

StatusOr<StudentArchitecture> ParseFingerprint(const std::string& text) {
  StudentArchitecture arch;
  std::istringstream in(text);
  std::string version, size, classes, channels, block;
  in >> version >> size >> classes >> channels >> block;
  char x = 0;
  std::istringstream size_in(size);
  size_in >> arch.input_width >> x >> arch.input_height;
  if (version != "centernet-v1" || x != 'x' || classes.size() < 2 || classes[0] != 'c')
    return Status::InvalidArgument("unknown student architecture '" + text + "'");
  StatusOr<StudentBlock> parsed_block = ParseStudentBlock(block);
  if (!parsed_block.ok()) return parsed_block.status().WithContext("student architecture '" + text + "'");
  arch.block = *parsed_block;
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

}  // namespace

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

void SetTorchThreads(int threads) {
  if (threads > 0) torch::set_num_threads(threads);
}

}  // namespace sd
