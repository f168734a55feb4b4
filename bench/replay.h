// The offline replay behind streamdistill-bench: the stream goes past the start student once
// (its detections and embedding per frame, and the uplink bytes of the message the edge would
// send), then each run samples it with the edge's Sampler, fine-tunes the start student on the
// queried frames with the server's trainer and scores it on held-out frames.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/student/student.h"
#include "common/eval/student_eval.h"
#include "common/student/student_trainer.h"
#include "edge/frame_encoding.h"
#include "edge/sample_feeder.h"
#include "edge/sampler.h"

namespace sd {

struct StreamFrame {
  int64_t index = 0;
  double time_s = 0;           // capture time: index / fps
  StudentOutput student;       // the start student's output on the full frame
  int64_t uplink_bytes = 0;    // the SampledFrame message plus gRPC's 5-byte frame header
  TrainingSample sample;       // kept at 1.25x the student input, with the reference labels
};

struct Stream {
  std::vector<StreamFrame> frames;
  double fps = 10;
  double student_ms = 0;  // mean inference time of the start student per frame, this pass
  double duration_s() const { return frames.size() / fps; }
};

struct StreamSpec {
  std::string uri;
  int64_t begin = 0, end = 0;                 // frames [begin, end) of the source
  const std::vector<Detections>* labels;      // reference labels by frame index
  int keep_width = 0;                         // width of the kept training copy
  FrameEncodingOptions upload;
};

StatusOr<Stream> ReplayStream(const StreamSpec& spec, const StudentDetector& start,
                              const std::function<void(int64_t done, int64_t total)>& progress = {});

// The sampler options of one run: `base` with the strategy, a total budget spread over the
// stream, and the seed. Each strategy's own knob is set so that it would want somewhat more
// frames than the budget (kWishSlack), so that the budget, not a fixed threshold, decides how
// many frames go: every strategy then sends about the same number and is compared at equal cost.
// first_n has no rate limit (it takes the stream's first frames); ams_adaptive starts at the
// budget's rate and may go below it (AMS saves bandwidth while the teacher's labels agree).
SamplerOptions RunSamplerOptions(const SamplerOptions& base, SamplerStrategy strategy, int budget, uint64_t seed,
                                 int64_t stream_frames, double stream_seconds);
constexpr double kWishSlack = 1.5;

struct Sampled {
  std::vector<size_t> positions;  // into Stream::frames, in the order they were sent
  int64_t uplink_bytes = 0;
  double sampler_us_per_frame = 0;  // Offer and collection, per frame of the stream
};

// One pass of a Sampler made from `options` over a stream, a frame at a time, as the edge runs
// it: every frame offered with a student's output on it (no cold start: it is a trained
// model), taken and released frames sent in order. AMS's agreement is fed as the server
// computes it: the teacher labels of each sent frame against the previous one's.
class SamplingPass {
 public:
  static StatusOr<SamplingPass> Create(const Stream& stream, const SamplerOptions& options);
  // Stream positions go in order; `student` is the output of whichever student the edge runs.
  void Offer(size_t position, const StudentOutput& student);
  const Sampled& sampled() const { return out_; }
  // Sampled::sampler_us_per_frame over the frames offered so far.
  Sampled Finish();

 private:
  SamplingPass(const Stream& stream, std::unique_ptr<Sampler> sampler)
      : stream_(&stream), sampler_(std::move(sampler)), feeder_(sampler_.get()) {}
  void Send(size_t position);

  const Stream* stream_;
  std::unique_ptr<Sampler> sampler_;
  SampleFeeder<size_t> feeder_;  // drives sampler_ (the object, not the pointer, moves with the pass)
  Sampled out_;
  const Detections* previous_labels_ = nullptr;
  size_t offered_ = 0;
  std::chrono::steady_clock::duration sampling_{};
};

// A SamplingPass with the start student's outputs recorded in the stream.
StatusOr<Sampled> SampleStream(const Stream& stream, const SamplerOptions& options);

// `model` scored on each held-out set (one result per set, in order), its score threshold
// lowered to 0.01 so the whole precision-recall curve counts.
StatusOr<std::vector<EvalResult>> EvaluateEach(const StudentModel& model, const InferenceOptions& inference,
                                               const std::vector<std::vector<LabelledFrame>>& evals);

// Copies `start`, trains it `training.total_steps` steps on the samples and scores it on `eval`
// (score threshold lowered to 0.01 so the whole precision-recall curve counts).
StatusOr<EvalResult> FineTuneAndEvaluate(const std::string& start_weights, const std::vector<TrainingSample>& samples,
                                         const TrainerOptions& training, const InferenceOptions& inference,
                                         const std::vector<LabelledFrame>& eval);
// The same, scored on each of several held-out sets (one result per set, in order).
StatusOr<std::vector<EvalResult>> FineTuneAndEvaluateEach(const std::string& start_weights,
                                                          const std::vector<TrainingSample>& samples,
                                                          const TrainerOptions& training,
                                                          const InferenceOptions& inference,
                                                          const std::vector<std::vector<LabelledFrame>>& evals);

}  // namespace sd
