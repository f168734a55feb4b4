#include "common/student/student_trainer.h"

#include <algorithm>
#include <cmath>
#include <random>

#include <opencv2/imgproc.hpp>

#include "common/student/student_net.h"

namespace sd {
namespace {

// CenterNet's Gaussian radius: the largest shift of a box corner that keeps IoU >= 0.7.
float GaussianRadius(float height, float width, float min_overlap = 0.7f) {
  const float a1 = 1, b1 = height + width, c1 = width * height * (1 - min_overlap) / (1 + min_overlap);
  const float r1 = (b1 + std::sqrt(b1 * b1 - 4 * a1 * c1)) / 2;
  const float a2 = 4, b2 = 2 * (height + width), c2 = (1 - min_overlap) * width * height;
  const float r2 = (b2 + std::sqrt(b2 * b2 - 4 * a2 * c2)) / 2;
  const float a3 = 4 * min_overlap, b3 = -2 * min_overlap * (height + width);
  const float c3 = (min_overlap - 1) * width * height;
  const float r3 = (b3 + std::sqrt(b3 * b3 - 4 * a3 * c3)) / 2;
  return std::min({r1, r2, r3});
}

// A Gaussian of height `peak` at (cx, cy), kept where it is above what `heat` holds.
void DrawGaussian(float* heat, int h, int w, int cx, int cy, int radius, float peak) {
  const float sigma = (2 * radius + 1) / 6.0f;
  for (int y = std::max(0, cy - radius); y <= std::min(h - 1, cy + radius); ++y)
    for (int x = std::max(0, cx - radius); x <= std::min(w - 1, cx + radius); ++x) {
      const float g = peak * std::exp(-((x - cx) * (x - cx) + (y - cy) * (y - cy)) / (2 * sigma * sigma));
      heat[y * w + x] = std::max(heat[y * w + x], g);
    }
}

struct Targets {
  torch::Tensor heatmap;  // [B, C, h, w]
  torch::Tensor centre;   // [B, C, h, w]: a box's confidence at its centre cell (1 with hard targets), else 0
  torch::Tensor index;    // [B, K] flat positions (int64)
  torch::Tensor size;     // [B, K, 2] log(width), log(height) in cells
  torch::Tensor offset;   // [B, K, 2]
  torch::Tensor mask;     // [B, K]
};

constexpr int kMaxObjects = 128;

}  // namespace

struct StudentTrainer::Impl {
  StudentModel* model = nullptr;
  TrainerOptions options;
  std::unique_ptr<torch::optim::Adam> optimizer;
  std::mt19937_64 rng;
  int64_t steps = 0;
  torch::Device device = torch::kCPU;

  double LearningRate() const {
    const auto& o = options;
    if (steps < o.warmup_steps) return o.learning_rate * (steps + 1) / static_cast<double>(o.warmup_steps);
    const double span = std::max(1, o.total_steps - o.warmup_steps);
    const double t = std::min(1.0, (steps - o.warmup_steps) / span);
    const double cosine = 0.5 * (1 + std::cos(M_PI * t));
    return o.learning_rate * (o.final_lr_fraction + (1 - o.final_lr_fraction) * cosine);
  }

  float Uniform(float lo, float hi) { return std::uniform_real_distribution<float>(lo, hi)(rng); }

  // A box's target at its centre: 1 with hard targets, else how sure the teacher was (a
  // non-finite or non-positive score counts as barely sure, never as no box).
  float Confidence(const Detection& d) const {
    if (options.soft_target_score <= 0) return 1.0f;
    constexpr float kLeast = 0.05f;
    if (!std::isfinite(d.score)) return kLeast;
    return std::clamp(d.score / options.soft_target_score, kLeast, 1.0f);
  }

  // Scales the frame to the network input with jitter, crops or pads, flips, and changes
  // brightness and contrast; boxes follow the geometry and are clipped.
  TrainingSample Augment(const TrainingSample& in) {
    const StudentArchitecture& arch = model->architecture();
    const float base_x = static_cast<float>(arch.input_width) / in.bgr.cols;
    const float base_y = static_cast<float>(arch.input_height) / in.bgr.rows;
    const float s = Uniform(options.min_scale, options.max_scale);
    const float sx = base_x * s, sy = base_y * s;
    // Random placement of the scaled frame: crops when larger than the input, pads when smaller.
    const float free_x = arch.input_width - in.bgr.cols * sx, free_y = arch.input_height - in.bgr.rows * sy;
    const float tx = free_x < 0 ? Uniform(free_x, 0) : Uniform(0, free_x);
    const float ty = free_y < 0 ? Uniform(free_y, 0) : Uniform(0, free_y);
    const bool flip = options.flip && Uniform(0, 1) < 0.5f;
    cv::Mat affine = (cv::Mat_<double>(2, 3) << sx, 0, tx, 0, sy, ty);
    if (flip) affine = (cv::Mat_<double>(2, 3) << -sx, 0, arch.input_width - tx, 0, sy, ty);
    TrainingSample out;
    cv::warpAffine(in.bgr, out.bgr, affine, cv::Size(arch.input_width, arch.input_height), cv::INTER_LINEAR,
                   cv::BORDER_CONSTANT, cv::Scalar(114, 114, 114));
    const float gain = Uniform(1 - options.contrast, 1 + options.contrast);
    const float bias = Uniform(-options.brightness, options.brightness) * 255 + (1 - gain) * 127.5f;
    out.bgr.convertTo(out.bgr, CV_8UC3, gain, bias);
    for (const Detection& d : in.boxes) {
      Detection t = d;
      float x1 = d.box.x1 * sx + tx, x2 = d.box.x2 * sx + tx;
      if (flip) std::tie(x1, x2) = std::make_pair(arch.input_width - x2, arch.input_width - x1);
      const float full_area = (x2 - x1) * (d.box.y2 - d.box.y1) * sy * sy;
      t.box = {std::clamp(x1, 0.0f, float(arch.input_width)), std::clamp(d.box.y1 * sy + ty, 0.0f, float(arch.input_height)),
               std::clamp(x2, 0.0f, float(arch.input_width)), std::clamp(d.box.y2 * sy + ty, 0.0f, float(arch.input_height))};
      // Objects mostly cut off by the crop would teach the network to fire on fragments.
      if (t.box.area() >= 0.4f * full_area && t.box.width() >= 2 && t.box.height() >= 2) out.boxes.push_back(t);
    }
    return out;
  }

  Targets MakeTargets(const std::vector<TrainingSample>& batch) const {
    const StudentArchitecture& arch = model->architecture();
    const int stride = StudentArchitecture::kOutputStride;
    const int h = arch.input_height / stride, w = arch.input_width / stride, b = batch.size();
    Targets t;
    t.heatmap = torch::zeros({b, arch.num_classes, h, w});
    t.centre = torch::zeros({b, arch.num_classes, h, w});
    t.index = torch::zeros({b, kMaxObjects}, torch::kInt64);
    t.size = torch::zeros({b, kMaxObjects, 2});
    t.offset = torch::zeros({b, kMaxObjects, 2});
    t.mask = torch::zeros({b, kMaxObjects});
    float* heat = t.heatmap.data_ptr<float>();
    float* centre = t.centre.data_ptr<float>();
    int64_t* index = t.index.data_ptr<int64_t>();
    float* size = t.size.data_ptr<float>();
    float* offset = t.offset.data_ptr<float>();
    float* mask = t.mask.data_ptr<float>();
    for (int i = 0; i < b; ++i) {
      int k = 0;
      for (const Detection& d : batch[i].boxes) {
        if (k == kMaxObjects || d.class_id < 0 || d.class_id >= arch.num_classes) continue;
        const float bw = d.box.width() / stride, bh = d.box.height() / stride;
        const float cx = (d.box.x1 + d.box.x2) / (2.0f * stride), cy = (d.box.y1 + d.box.y2) / (2.0f * stride);
        const int ix = std::clamp(static_cast<int>(cx), 0, w - 1), iy = std::clamp(static_cast<int>(cy), 0, h - 1);
        const int radius = std::max(0, static_cast<int>(GaussianRadius(std::ceil(bh), std::ceil(bw))));
        const float confidence = Confidence(d);
        const int plane = (i * arch.num_classes + d.class_id) * h * w;
        DrawGaussian(heat + plane, h, w, ix, iy, radius, confidence);
        centre[plane + iy * w + ix] = std::max(centre[plane + iy * w + ix], confidence);
        const int slot = i * kMaxObjects + k;
        index[slot] = iy * w + ix;
        size[2 * slot] = std::log(std::max(bw, 0.05f));
        size[2 * slot + 1] = std::log(std::max(bh, 0.05f));
        offset[2 * slot] = cx - ix;
        offset[2 * slot + 1] = cy - iy;
        mask[slot] = 1;
        ++k;
      }
    }
    return t;
  }
};

Status TrainerOptions::Validate() const {
  auto invalid = [](const std::string& problem) { return Status::InvalidArgument(problem); };
  if (batch_size < 1) return invalid("batch_size: must be >= 1");
  if (!(learning_rate > 0)) return invalid("learning_rate: must be > 0");
  if (warmup_steps < 1) return invalid("warmup_steps: must be >= 1");
  if (total_steps < 1) return invalid("total_steps: must be >= 1");
  if (!(min_scale > 0) || min_scale > max_scale) return invalid("min_scale: need 0 < min_scale <= max_scale");
  if (!(soft_target_score >= 0)) return invalid("soft_target_score: must be >= 0 (0: hard targets)");
  return Status::Ok();
}

StudentTrainer::StudentTrainer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
StudentTrainer::~StudentTrainer() = default;

TrainingSample ShrinkForStudent(const TrainingSample& sample, const StudentArchitecture& arch, float scale) {
  if (sample.bgr.empty()) return sample;
  // The larger of the two factors, so that both sides keep at least `scale` x the input.
  const double factor = std::max(scale * arch.input_width / static_cast<double>(sample.bgr.cols),
                                 scale * arch.input_height / static_cast<double>(sample.bgr.rows));
  if (factor >= 1) return sample;
  TrainingSample out;
  const cv::Size size(std::max(1, static_cast<int>(std::lround(sample.bgr.cols * factor))),
                      std::max(1, static_cast<int>(std::lround(sample.bgr.rows * factor))));
  cv::resize(sample.bgr, out.bgr, size, 0, 0, cv::INTER_AREA);
  out.boxes = sample.boxes;
  ScaleDetections(&out.boxes, static_cast<float>(size.width) / sample.bgr.cols,
                  static_cast<float>(size.height) / sample.bgr.rows);
  return out;
}

StatusOr<std::unique_ptr<StudentTrainer>> StudentTrainer::Create(StudentModel* model, const TrainerOptions& options) {
  SD_RETURN_IF_ERROR(options.Validate().WithContext("training"));
  if (options.device == ComputeDevice::kCuda && !torch::cuda::is_available())
    return Status::FailedPrecondition("training device 'cuda' requested but no CUDA device is available");
  auto impl = std::make_unique<Impl>();
  impl->model = model;
  impl->options = options;
  impl->rng.seed(options.seed);
  impl->device = TorchDevice(options.device);
  StudentNet& net = model->impl().net;
  net->to(impl->device);
  impl->optimizer = std::make_unique<torch::optim::Adam>(
      net->parameters(), torch::optim::AdamOptions(options.learning_rate).weight_decay(options.weight_decay));
  return std::unique_ptr<StudentTrainer>(new StudentTrainer(std::move(impl)));
}

int64_t StudentTrainer::steps_done() const { return impl_->steps; }

TrainingSample StudentTrainer::AugmentForTest(const TrainingSample& sample) { return impl_->Augment(sample); }

StatusOr<StepStats> StudentTrainer::Step(const std::vector<TrainingSample>& data) {
  if (data.empty()) return Status::FailedPrecondition("no training samples");
  Impl& s = *impl_;
  const StudentArchitecture& arch = s.model->architecture();
  const int b = s.options.batch_size;
  std::vector<TrainingSample> batch;
  batch.reserve(b);
  std::uniform_int_distribution<size_t> pick(0, data.size() - 1);
  for (int i = 0; i < b; ++i) {
    const TrainingSample& sample = data[pick(s.rng)];
    if (sample.bgr.empty() || sample.bgr.type() != CV_8UC3)
      return Status::InvalidArgument("training sample is not an 8-bit BGR image");
    batch.push_back(s.Augment(sample));
  }
  try {
    torch::Tensor input = torch::empty({b, 3, arch.input_height, arch.input_width});
    const int64_t plane = 3LL * arch.input_height * arch.input_width;
    for (int i = 0; i < b; ++i) ImageToInput(batch[i].bgr, input.data_ptr<float>() + i * plane);
    Targets t = s.MakeTargets(batch);
    input = input.to(s.device);
    StudentNet& net = s.model->impl().net;
    net->train();
    torch::Tensor head = net->forward(input).first;
    const int c = arch.num_classes;
    torch::Tensor heat = torch::sigmoid(head.slice(1, 0, c)).clamp(1e-4, 1 - 1e-4);
    torch::Tensor gt = t.heatmap.to(s.device);
    // CenterNet's focal loss. At a box's centre the target is its confidence c (1 with hard
    // targets): the positive term weighs c and a soft centre is also pulled down by 1 - c, so
    // the student learns to be as sure as the teacher was; elsewhere the penalty fades near boxes.
    torch::Tensor centre = t.centre.to(s.device);
    torch::Tensor pos = centre.gt(0).to(torch::kFloat);
    torch::Tensor neg_weight = torch::pow(1 - gt, 4);
    torch::Tensor pos_loss = ((centre * torch::log(heat) * torch::pow(1 - heat, 2) +
                               (1 - centre) * torch::log(1 - heat) * torch::pow(heat, 2)) * pos).sum();
    torch::Tensor neg_loss = (torch::log(1 - heat) * torch::pow(heat, 2) * neg_weight * (1 - pos)).sum();
    torch::Tensor num_pos = pos.sum().clamp_min(1);
    torch::Tensor heat_loss = -(pos_loss + neg_loss) / num_pos;

    // Gather the regression outputs at each object's centre cell.
    torch::Tensor regression = head.slice(1, c, c + 4).flatten(2);  // [B, 4, h*w]
    torch::Tensor index = t.index.to(s.device).unsqueeze(1).expand({b, 4, kMaxObjects});
    torch::Tensor at_objects = regression.gather(2, index).permute({0, 2, 1});  // [B, K, 4]
    torch::Tensor mask = t.mask.to(s.device).unsqueeze(2);
    torch::Tensor mask_sum = mask.sum().clamp_min(1) * 2;
    torch::Tensor size_loss = (torch::abs(at_objects.slice(2, 0, 2) - t.size.to(s.device)) * mask).sum() / mask_sum;
    torch::Tensor offset_loss = (torch::abs(at_objects.slice(2, 2, 4) - t.offset.to(s.device)) * mask).sum() / mask_sum;
    torch::Tensor loss = heat_loss + s.options.size_loss_weight * size_loss + s.options.offset_loss_weight * offset_loss;

    const double lr = s.LearningRate();
    for (auto& group : s.optimizer->param_groups())
      static_cast<torch::optim::AdamOptions&>(group.options()).lr(lr);
    s.optimizer->zero_grad();
    loss.backward();
    s.optimizer->step();
    ++s.steps;
    StepStats stats;
    stats.step = s.steps;
    stats.loss = loss.item<double>();
    stats.heatmap_loss = heat_loss.item<double>();
    stats.size_loss = size_loss.item<double>();
    stats.offset_loss = offset_loss.item<double>();
    stats.learning_rate = lr;
    return stats;
  } catch (const c10::Error& e) {
    return Status::Internal(std::string("training step failed: ") + e.what_without_backtrace());
  }
}

}  // namespace sd
