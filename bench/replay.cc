#include "bench/replay.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include <opencv2/imgproc.hpp>

#include "common/video/frame_source.h"
#include "common/link/grpc_status.h"
#include "server/labeler.h"

namespace sd {

StatusOr<Stream> ReplayStream(const StreamSpec& spec, const StudentDetector& start,
                              const std::function<void(int64_t, int64_t)>& progress) {
  FrameSourceOptions options;
  options.uri = spec.uri;
  options.start_frame = spec.begin;
  options.end_frame = spec.end;
  SD_ASSIGN_OR_RETURN(auto source, OpenFrameSource(options));
  Stream stream;
  stream.fps = source->fps() > 0 ? source->fps() : 10;
  const int64_t total = spec.end - spec.begin;
  stream.frames.reserve(total);
  std::chrono::steady_clock::duration inference{};
  Frame frame;
  while (true) {
    SD_ASSIGN_OR_RETURN(bool got, source->Next(&frame));
    if (!got) break;
    if (frame.index >= static_cast<int64_t>(spec.labels->size()))
      return Status::InvalidArgument(spec.uri + ": frame " + std::to_string(frame.index) + " has no label");
    StreamFrame out;
    out.index = frame.index;
    out.time_s = (frame.index - spec.begin) / stream.fps;
    const auto t0 = std::chrono::steady_clock::now();
    SD_ASSIGN_OR_RETURN(out.student, start.Detect(frame.bgr));
    inference += std::chrono::steady_clock::now() - t0;
    SD_ASSIGN_OR_RETURN(std::string message, EncodeSampledFrame(frame.bgr, frame.index, out.time_s, out.student,
                                                                /*model_version=*/1, spec.upload));
    out.uplink_bytes = static_cast<int64_t>(message.size()) + kGrpcFramingBytes;
    out.sample.boxes = (*spec.labels)[frame.index];
    out.sample.bgr = frame.bgr.clone();
    if (spec.keep_width > 0 && frame.bgr.cols > spec.keep_width) {
      const float scale = static_cast<float>(spec.keep_width) / frame.bgr.cols;
      cv::resize(frame.bgr, out.sample.bgr, cv::Size(), scale, scale, cv::INTER_AREA);
      ScaleDetections(&out.sample.boxes, scale, scale);
    }
    stream.frames.push_back(std::move(out));
    if (progress) progress(stream.frames.size(), total);
  }
  if (static_cast<int64_t>(stream.frames.size()) != total)
    return Status::InvalidArgument(spec.uri + ": expected frames [" + std::to_string(spec.begin) + ", " +
                                   std::to_string(spec.end) + "), the source has only " +
                                   std::to_string(stream.frames.size()));
  stream.student_ms =
      std::chrono::duration<double, std::milli>(inference).count() / std::max<size_t>(1, stream.frames.size());
  return stream;
}

SamplerOptions RunSamplerOptions(const SamplerOptions& base, SamplerStrategy strategy, int budget, uint64_t seed,
                                 int64_t stream_frames, double stream_seconds) {
  SamplerOptions o = base;
  o.strategy = strategy;
  o.seed = seed;
  o.budget_total = budget;
  o.budget_per_minute = budget * 60.0 / stream_seconds;
  const double share = std::min(1.0, static_cast<double>(budget) / stream_frames);
  const double wish = std::min(1.0, kWishSlack * share);
  switch (strategy) {
    case SamplerStrategy::kFirstN:
      o.budget_per_minute = 0;  // the head of the stream, as fast as it comes
      break;
    case SamplerStrategy::kUniform:
      o.uniform_every = std::max<int64_t>(1, stream_frames / budget);
      break;
    case SamplerStrategy::kRandom:
      o.uniform_probability = wish;
      break;
    case SamplerStrategy::kTopConfidence:
    case SamplerStrategy::kDiversity:
      o.percentile = 100.0 * (1.0 - wish);
      break;
    case SamplerStrategy::kLeastConfidence:
      o.percentile = 100.0 * wish;
      break;
    case SamplerStrategy::kTopConfidenceDiversity:
      o.percentile = 100.0 * (1.0 - std::min(1.0, base.gamma * wish));
      break;
    case SamplerStrategy::kAmsAdaptive: {
      const double rate = budget / stream_seconds;
      o.ams_initial_rate = rate;
      o.ams_min_rate = rate / 4;
      o.ams_max_rate = rate * 2;
      break;
    }
    case SamplerStrategy::kPacedConfidenceDiversity:
      break;  // its slots follow the rate budget
  }
  return o;
}

StatusOr<SamplingPass> SamplingPass::Create(const Stream& stream, const SamplerOptions& options) {
  SD_ASSIGN_OR_RETURN(std::unique_ptr<Sampler> sampler, CreateSampler(options));
  return SamplingPass(stream, std::move(sampler));
}

void SamplingPass::Send(size_t position) {
  out_.positions.push_back(position);
  out_.uplink_bytes += stream_->frames[position].uplink_bytes;
  const Detections& labels = stream_->frames[position].sample.boxes;
  if (previous_labels_) sampler_->OnTeacherAgreement(LabelAgreement(*previous_labels_, labels));
  previous_labels_ = &labels;
}

void SamplingPass::Offer(size_t position, const StudentOutput& student) {
  const StreamFrame& f = stream_->frames[position];
  FrameFeatures features;
  features.index = f.index;
  features.time_s = f.time_s;
  features.detections = &student.detections;
  features.embedding = &student.embedding;
  features.model_from_server = true;
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<size_t> send;  // stream positions
  // The payload of a frame is its position: the stream keeps every frame, so nothing fails.
  feeder_.Offer(features, [position]() -> StatusOr<size_t> { return position; }, &send).ok();
  sampling_ += std::chrono::steady_clock::now() - t0;
  ++offered_;
  for (size_t p : send) Send(p);
}

Sampled SamplingPass::Finish() {
  out_.sampler_us_per_frame =
      std::chrono::duration<double, std::micro>(sampling_).count() / std::max<size_t>(1, offered_);
  return out_;
}

StatusOr<Sampled> SampleStream(const Stream& stream, const SamplerOptions& options) {
  SD_ASSIGN_OR_RETURN(SamplingPass pass, SamplingPass::Create(stream, options));
  for (size_t i = 0; i < stream.frames.size(); ++i) pass.Offer(i, stream.frames[i].student);
  return pass.Finish();
}

StatusOr<std::vector<EvalResult>> EvaluateEach(const StudentModel& model, const InferenceOptions& inference,
                                               const std::vector<std::vector<LabelledFrame>>& evals) {
  InferenceOptions options = inference;
  options.score_threshold = 0.01f;
  SD_ASSIGN_OR_RETURN(auto detector, model.MakeDetector(options));
  std::vector<EvalResult> results;
  for (const auto& eval : evals) {
    SD_ASSIGN_OR_RETURN(EvalResult result, EvaluateDetector(*detector, eval));
    results.push_back(result);
  }
  return results;
}

StatusOr<std::vector<EvalResult>> FineTuneAndEvaluateEach(const std::string& start_weights,
                                                          const std::vector<TrainingSample>& samples,
                                                          const TrainerOptions& training,
                                                          const InferenceOptions& inference,
                                                          const std::vector<std::vector<LabelledFrame>>& evals) {
  SD_ASSIGN_OR_RETURN(auto model, StudentModel::FromBytes(start_weights));
  if (!samples.empty()) {
    SD_ASSIGN_OR_RETURN(auto trainer, StudentTrainer::Create(model.get(), training));
    for (int i = 0; i < training.total_steps; ++i) SD_RETURN_IF_ERROR(trainer->Step(samples).status());
  }
  return EvaluateEach(*model, inference, evals);
}

StatusOr<EvalResult> FineTuneAndEvaluate(const std::string& start_weights, const std::vector<TrainingSample>& samples,
                                         const TrainerOptions& training, const InferenceOptions& inference,
                                         const std::vector<LabelledFrame>& eval) {
  SD_ASSIGN_OR_RETURN(auto results, FineTuneAndEvaluateEach(start_weights, samples, training, inference, {eval}));
  return results.front();
}

}  // namespace sd
