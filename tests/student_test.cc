#include "common/student/student.h"

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>

#include <opencv2/imgproc.hpp>

#include "common/student/student_net.h"
#include "common/student/student_trainer.h"

namespace sd {
namespace {

StudentArchitecture SmallArch() {
  StudentArchitecture arch;
  arch.input_width = 128;
  arch.input_height = 96;
  arch.channels = {8, 8, 16, 16, 32};
  arch.num_classes = 2;
  return arch;
}

std::unique_ptr<StudentModel> MakeModel(const StudentArchitecture& arch, uint64_t seed = 1) {
  auto model = StudentModel::Create(arch, seed);
  EXPECT_TRUE(model.ok()) << model.status().ToString();
  return std::move(model).value();
}

TEST(StudentArchitectureTest, ValidatesAndFingerprints) {
  StudentArchitecture arch;
  EXPECT_TRUE(arch.Validate().ok());
  EXPECT_EQ(arch.Fingerprint(), "centernet-v1 384x288 c1 16-32-64-128-256 separable");
  arch.input_width = 100;
  EXPECT_EQ(arch.Validate().code(), Status::Code::kInvalidArgument);
  EXPECT_FALSE(ParseStudentBlock("transformer").ok());
  EXPECT_EQ(*ParseStudentBlock("conv"), StudentBlock::kConv);
  EXPECT_EQ(StudentBlockName(StudentBlock::kConv), std::string("conv"));
}

TEST(StudentModelTest, WeightsRoundTripBitExact) {
  auto model = MakeModel(SmallArch(), 7);
  const std::string bytes = model->SerializeWeights();
  auto copy = StudentModel::FromBytes(bytes);
  ASSERT_TRUE(copy.ok()) << copy.status().ToString();
  EXPECT_EQ((*copy)->SerializeWeights(), bytes);
  EXPECT_EQ((*copy)->architecture().Fingerprint(), SmallArch().Fingerprint());

  const std::string path = std::string(SD_BINARY_DIR) + "/student_roundtrip.sdw";
  ASSERT_TRUE(model->SaveToFile(path).ok());
  auto loaded = StudentModel::LoadFromFile(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_EQ((*loaded)->SerializeWeights(), bytes);
  std::filesystem::remove(path);
}

TEST(StudentModelTest, FlatWeightsRoundTripAndChecksum) {
  auto a = MakeModel(SmallArch(), 1);
  auto b = MakeModel(SmallArch(), 2);
  std::vector<float> flat = a->FlatWeights();
  ASSERT_EQ(static_cast<int64_t>(flat.size()), a->FlatSize());
  EXPECT_GT(a->FlatSize(), a->NumParameters());  // BatchNorm statistics are included
  EXPECT_NE(WeightsChecksum(flat), WeightsChecksum(b->FlatWeights()));
  ASSERT_TRUE(b->SetFlatWeights(flat).ok());
  EXPECT_EQ(WeightsChecksum(b->FlatWeights()), WeightsChecksum(flat));
  flat.pop_back();
  EXPECT_EQ(b->SetFlatWeights(flat).code(), Status::Code::kInvalidArgument);
}

TEST(StudentModelTest, DifferentSeedsGiveDifferentWeights) {
  EXPECT_NE(MakeModel(SmallArch(), 1)->SerializeWeights(), MakeModel(SmallArch(), 2)->SerializeWeights());
  EXPECT_EQ(MakeModel(SmallArch(), 3)->SerializeWeights(), MakeModel(SmallArch(), 3)->SerializeWeights());
}

TEST(StudentModelTest, CorruptTruncatedOrMismatchedWeightsAreRejectedAndChangeNothing) {
  auto model = MakeModel(SmallArch(), 1);
  const std::string original = model->SerializeWeights();
  std::string other = MakeModel(SmallArch(), 2)->SerializeWeights();

  std::string corrupt = other;
  corrupt[corrupt.size() / 2] ^= 0x40;
  EXPECT_EQ(model->LoadWeights(corrupt).code(), Status::Code::kDataLoss);
  EXPECT_FALSE(model->LoadWeights(other.substr(0, other.size() - 100)).ok());
  EXPECT_FALSE(model->LoadWeights("garbage").ok());

  StudentArchitecture wider = SmallArch();
  wider.channels = {8, 8, 16, 16, 64};
  Status mismatch = model->LoadWeights(MakeModel(wider)->SerializeWeights());
  EXPECT_EQ(mismatch.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(mismatch.message().find("weights are for"), std::string::npos);
  EXPECT_EQ(model->SerializeWeights(), original);

  auto missing = StudentModel::LoadFromFile("/nonexistent/student.sdw");
  EXPECT_EQ(missing.status().code(), Status::Code::kNotFound);
}

// The frozen, BatchNorm-folded inference graph must compute what the training graph does.
TEST(StudentDetectorTest, SnapshotMatchesTrainingGraph) {
  auto model = MakeModel(SmallArch(), 5);
  StudentNet& net = model->impl().net;
  {
    // Non-trivial BatchNorm statistics, so that folding is really exercised.
    torch::NoGradGuard no_grad;
    for (auto& buffer : net->named_buffers())
      if (buffer.key().find("running_var") != std::string::npos) buffer.value().uniform_(0.5, 2.0);
      else if (buffer.key().find("running_mean") != std::string::npos) buffer.value().uniform_(-0.2, 0.2);
  }
  net->eval();
  cv::Mat frame(96, 128, CV_8UC3);
  cv::randu(frame, 0, 255);
  torch::Tensor input = torch::empty({1, 3, 96, 128});
  ImageToInput(frame, input.data_ptr<float>());
  auto [head, embedding] = net->forward(input);

  InferenceOptions options;
  options.score_threshold = 0.0f;
  options.max_detections = 10000;
  options.nms_iou = 1.0f;
  auto detector = model->MakeDetector(options);
  ASSERT_TRUE(detector.ok()) << detector.status().ToString();
  auto out = (*detector)->Detect(frame);
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  Detections expected = DecodeHead(head[0].detach(), 2, 0.0f, 0);
  for (Detection& d : expected) d.box.x1 = std::max(d.box.x1, 0.0f);  // the detector clips to the frame
  ASSERT_EQ(out->detections.size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_NEAR(out->detections[i].score, expected[i].score, 1e-4);
    EXPECT_NEAR(out->detections[i].box.x1, expected[i].box.x1, 1e-2);
  }
  ASSERT_EQ(out->embedding.size(), 32u);
  torch::Tensor e = embedding[0] / embedding[0].norm();
  for (int i = 0; i < 32; ++i) EXPECT_NEAR(out->embedding[i], e[i].item<float>(), 1e-4);
}

TEST(StudentDetectorTest, DecodesPeaksToBoxes) {
  // Two classes, 4x6 output cells: one peak for class 1 at cell (x=3, y=2).
  torch::Tensor head = torch::full({2 + 4, 4, 6}, -10.0f);
  head[1][2][3] = 2.0f;            // sigmoid ~ 0.881
  head[1][2][2] = 1.0f;            // a neighbour, not a peak
  head[2][2][3] = std::log(5.0f);   // width 5 cells
  head[3][2][3] = std::log(10.0f);  // height 10 cells
  head[4][2][3] = 0.5f;            // x offset
  head[5][2][3] = 0.25f;           // y offset
  Detections d = DecodeHead(head, 2, 0.5f, 0);
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].class_id, 1);
  EXPECT_NEAR(d[0].score, 1.0 / (1.0 + std::exp(-2.0)), 1e-6);
  // centre (3.5, 2.25) cells * 4 = (14, 9) px; size 20 x 40 px.
  EXPECT_NEAR(d[0].box.x1, 4.0f, 1e-4);
  EXPECT_NEAR(d[0].box.x2, 24.0f, 1e-4);
  EXPECT_NEAR(d[0].box.y1, -11.0f, 1e-4);
  EXPECT_NEAR(d[0].box.y2, 29.0f, 1e-4);
}

TEST(StudentDetectorTest, RejectsBadFramesAndMapsToSourceSize) {
  auto model = MakeModel(SmallArch());
  InferenceOptions options;
  options.score_threshold = 0.01f;
  auto detector = model->MakeDetector(options);
  ASSERT_TRUE(detector.ok());
  EXPECT_EQ((*detector)->Detect(cv::Mat()).status().code(), Status::Code::kInvalidArgument);
  EXPECT_FALSE((*detector)->Detect(cv::Mat(10, 10, CV_8UC1)).ok());
  cv::Mat big(384, 512, CV_8UC3, cv::Scalar(40, 80, 120));
  auto out = (*detector)->Detect(big);
  ASSERT_TRUE(out.ok());
  for (const Detection& d : out->detections) {
    EXPECT_GE(d.box.x1, 0);
    EXPECT_LE(d.box.x2, 512);
    EXPECT_LE(d.box.y2, 384);
  }
  EXPECT_EQ(ParseComputeDevice("gpu").status().code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(*ParseComputeDevice("cuda"), ComputeDevice::kCuda);
}

std::vector<TrainingSample> BoxScene() {
  std::vector<TrainingSample> data;
  for (int i = 0; i < 4; ++i) {
    TrainingSample s;
    s.bgr = cv::Mat(120, 160, CV_8UC3, cv::Scalar(60, 60, 60));
    const float x = 20 + 25 * i;
    cv::rectangle(s.bgr, cv::Rect(x, 30, 24, 48), cv::Scalar(230, 230, 230), cv::FILLED);
    s.boxes.push_back({{x, 30, x + 24, 78}, 1, 0});
    data.push_back(s);
  }
  return data;
}

TEST(StudentTrainerTest, SameSeedSameWeightsAndLossFalls) {
  SetTorchThreads(1);
  TrainerOptions options;
  options.batch_size = 4;
  options.warmup_steps = 5;
  options.total_steps = 80;
  options.learning_rate = 3e-3f;
  auto data = BoxScene();
  std::string weights[2];
  double first = 0, last = 0;
  for (int run = 0; run < 2; ++run) {
    auto model = MakeModel(SmallArch(), 11);
    auto trainer = StudentTrainer::Create(model.get(), options);
    ASSERT_TRUE(trainer.ok()) << trainer.status().ToString();
    double sum_first = 0, sum_last = 0;
    for (int i = 0; i < 80; ++i) {
      auto stats = (*trainer)->Step(data);
      ASSERT_TRUE(stats.ok()) << stats.status().ToString();
      if (i < 10) sum_first += stats->loss;
      if (i >= 70) sum_last += stats->loss;
    }
    weights[run] = model->SerializeWeights();
    first = sum_first / 10;
    last = sum_last / 10;
  }
  EXPECT_EQ(weights[0], weights[1]);
  EXPECT_LT(last, 0.75 * first) << "loss did not fall: " << first << " -> " << last;
}

TEST(StudentTrainerTest, AugmentationKeepsBoxesOnTheObject) {
  auto model = MakeModel(SmallArch(), 1);
  TrainerOptions options;
  auto trainer = StudentTrainer::Create(model.get(), options);
  ASSERT_TRUE(trainer.ok());
  TrainingSample sample = BoxScene()[1];
  for (int i = 0; i < 20; ++i) {
    TrainingSample out = (*trainer)->AugmentForTest(sample);
    ASSERT_EQ(out.bgr.cols, 128);
    ASSERT_EQ(out.bgr.rows, 96);
    for (const Detection& d : out.boxes) {
      // The box centre must land on the bright rectangle, whatever flip and scale were drawn.
      const cv::Vec3b centre = out.bgr.at<cv::Vec3b>((d.box.y1 + d.box.y2) / 2, (d.box.x1 + d.box.x2) / 2);
      EXPECT_GT(centre[0], 150) << "iteration " << i;
    }
  }
}

// A bright rectangle the teacher was sure of (score 2) and a grey one it was not (0.3), at
// several places, for soft distillation targets.
std::vector<TrainingSample> SureAndUnsureScene() {
  std::vector<TrainingSample> data;
  for (int i = 0; i < 4; ++i) {
    TrainingSample s;
    s.bgr = cv::Mat(120, 160, CV_8UC3, cv::Scalar(40, 40, 40));
    const float x = 10 + 12 * i, y = 20 + 8 * i;
    cv::rectangle(s.bgr, cv::Rect(x, y, 24, 48), cv::Scalar(235, 235, 235), cv::FILLED);
    cv::rectangle(s.bgr, cv::Rect(x + 70, y, 24, 48), cv::Scalar(140, 140, 140), cv::FILLED);
    s.boxes.push_back({{x, y, x + 24, y + 48}, 2.0f, 0});
    s.boxes.push_back({{x + 70, y, x + 94, y + 48}, 0.3f, 0});
    data.push_back(s);
  }
  return data;
}

// The student's best score on a box whose centre lies within 8 px of `box`'s.
double ScoreAt(const StudentDetector& detector, const TrainingSample& sample, const Box& box) {
  auto out = detector.Detect(sample.bgr);
  EXPECT_TRUE(out.ok());
  double best = 0;
  const float cx = (box.x1 + box.x2) / 2, cy = (box.y1 + box.y2) / 2;
  for (const Detection& d : out->detections)
    if (std::abs((d.box.x1 + d.box.x2) / 2 - cx) < 8 && std::abs((d.box.y1 + d.box.y2) / 2 - cy) < 8)
      best = std::max<double>(best, d.score);
  return best;
}

TEST(StudentTrainerTest, SoftTargetsTeachHowSureTheTeacherWas) {
  SetTorchThreads(1);
  const auto data = SureAndUnsureScene();
  double sure[2], unsure[2];
  for (const float soft_target_score : {0.0f, 2.0f}) {
    TrainerOptions options;
    options.batch_size = 4;
    options.warmup_steps = 5;
    options.total_steps = 150;
    options.learning_rate = 5e-3f;
    options.flip = false;
    options.soft_target_score = soft_target_score;
    auto model = MakeModel(SmallArch(), 5);
    auto trainer = StudentTrainer::Create(model.get(), options);
    ASSERT_TRUE(trainer.ok()) << trainer.status().ToString();
    for (int i = 0; i < 150; ++i) ASSERT_TRUE((*trainer)->Step(data).ok());
    InferenceOptions inference;
    inference.score_threshold = 0.01f;
    auto detector = model->MakeDetector(inference);
    ASSERT_TRUE(detector.ok());
    const int k = soft_target_score > 0;
    sure[k] = unsure[k] = 0;
    for (const TrainingSample& s : data) {
      sure[k] += ScoreAt(**detector, s, s.boxes[0].box) / data.size();
      unsure[k] += ScoreAt(**detector, s, s.boxes[1].box) / data.size();
    }
  }
  // How far training gets in 150 steps differs between builds (gcc: hard targets reach 0.45 /
  // 0.43 on the sure / unsure box, soft 0.40 / 0.20; clang with sanitizers: hard 0.32 / 0.22),
  // so each run's unsure box is compared with its own sure one. Hard targets: both are peaks of
  // 1 and the student is about as sure of both. Soft targets: the unsure box's peak is 0.15, and
  // the student is relatively less sure of it than with hard targets.
  const double hard_ratio = unsure[0] / std::max(sure[0], 1e-6), soft_ratio = unsure[1] / std::max(sure[1], 1e-6);
  const std::string scores = "hard: sure " + std::to_string(sure[0]) + ", unsure " + std::to_string(unsure[0]) +
                             "; soft: sure " + std::to_string(sure[1]) + ", unsure " + std::to_string(unsure[1]);
  EXPECT_GT(sure[0], 0.2) << scores;
  EXPECT_GT(sure[1], 0.2) << scores;
  EXPECT_GT(hard_ratio, 0.6) << scores;
  EXPECT_LT(soft_ratio, 0.65) << scores;
  EXPECT_LT(soft_ratio, hard_ratio) << scores;

  TrainerOptions bad;
  bad.soft_target_score = -1;
  EXPECT_FALSE(bad.Validate().ok());
}

TEST(StudentTrainerTest, RejectsBadOptionsAndData) {
  auto model = MakeModel(SmallArch(), 1);
  TrainerOptions bad;
  bad.batch_size = 0;
  EXPECT_EQ(StudentTrainer::Create(model.get(), bad).status().code(), Status::Code::kInvalidArgument);
  auto trainer = StudentTrainer::Create(model.get(), TrainerOptions());
  ASSERT_TRUE(trainer.ok());
  EXPECT_EQ((*trainer)->Step({}).status().code(), Status::Code::kFailedPrecondition);
  TrainingSample gray{cv::Mat(10, 10, CV_8UC1), {}};
  EXPECT_EQ((*trainer)->Step({gray}).status().code(), Status::Code::kInvalidArgument);
}

}  // namespace
}  // namespace sd
