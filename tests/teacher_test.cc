#include "common/teacher/teacher.h"

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include <cmath>

#include "tests/scoped_temp_dir.h"
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>
#include <torch/script.h>

#include "common/eval/map_eval.h"
#include "common/teacher/yolo_decode.h"

namespace sd {
namespace {

namespace fs = std::filesystem;

const char kVideo[] = "/usr/share/doc/opencv-doc/examples/data/vtest.avi";
const char kDpmModel[] = "/usr/share/doc/opencv-doc/examples/dpm/data/inriaperson.xml";
const std::string kOnnxFixture = std::string(SD_SOURCE_DIR) + "/tests/data/tiny_yolo.onnx";

// A fresh directory per test, removed afterwards.
class TempDir : public testing::ScopedTempDir {
 public:
  TempDir() : ScopedTempDir("sd_teacher_test") {}
};

std::string WriteGarbage(const TempDir& dir, const std::string& name) {
  const std::string path = dir.File(name);
  std::ofstream out(path, std::ios::binary);
  for (int i = 0; i < 4096; ++i) out.put(static_cast<char>((i * 131 + 7) % 251));
  return path;
}

std::vector<cv::Mat> ReadFrames(int count) {
  std::vector<cv::Mat> frames;
  cv::VideoCapture capture(kVideo);
  for (cv::Mat f; static_cast<int>(frames.size()) < count && capture.read(f);) frames.push_back(f.clone());
  return frames;
}

void ExpectBox(const Detection& d, float x1, float y1, float x2, float y2, float score, int cls) {
  EXPECT_NEAR(d.box.x1, x1, 1e-3);
  EXPECT_NEAR(d.box.y1, y1, 1e-3);
  EXPECT_NEAR(d.box.x2, x2, 1e-3);
  EXPECT_NEAR(d.box.y2, y2, 1e-3);
  EXPECT_NEAR(d.score, score, 1e-4);
  EXPECT_EQ(d.class_id, cls);
}

// ---------------------------------------------------------------------------------------------
// Options and errors.

TEST(CreateTeacherTest, UnknownKindListsValidKinds) {
  auto t = ParseTeacherKind("yolo");
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), Status::Code::kInvalidArgument);
  EXPECT_NE(t.status().message().find("'yolo'"), std::string::npos) << t.status().ToString();
  EXPECT_NE(t.status().message().find("hog, dpm, torchscript, onnx"), std::string::npos);
}

TEST(CreateTeacherTest, RejectsBadSettings) {
  TeacherOptions o;
  o.hog_win_stride = 5;
  EXPECT_EQ(CreateTeacher(o).status().code(), Status::Code::kInvalidArgument);
  o = TeacherOptions();
  o.hog_scale = 1.0;
  EXPECT_EQ(CreateTeacher(o).status().code(), Status::Code::kInvalidArgument);
  o = TeacherOptions();
  o.nms_iou = 1.5f;
  EXPECT_EQ(CreateTeacher(o).status().code(), Status::Code::kInvalidArgument);
  o = TeacherOptions();
  o.kind = TeacherKind::kOnnx;
  o.model_path = kOnnxFixture;
  o.input_width = 0;
  EXPECT_EQ(CreateTeacher(o).status().code(), Status::Code::kInvalidArgument);
}

TEST(CreateTeacherTest, MissingModelFilesAreNotFoundAndNamed) {
  for (const std::string kind : {"dpm", "torchscript", "onnx"}) {
    TeacherOptions o;
    o.kind = *ParseTeacherKind(kind);
    o.model_path = "/nonexistent/model.bin";
    auto t = CreateTeacher(o);
    ASSERT_FALSE(t.ok()) << kind;
    EXPECT_EQ(t.status().code(), Status::Code::kNotFound) << kind;
    EXPECT_NE(t.status().message().find("/nonexistent/model.bin"), std::string::npos)
        << t.status().ToString();
  }
}

TEST(CreateTeacherTest, CorruptModelFilesGiveErrorsNamingTheFile) {
  TempDir dir;
  for (const std::string kind : {"dpm", "torchscript", "onnx"}) {
    TeacherOptions o;
    o.kind = *ParseTeacherKind(kind);
    o.model_path = WriteGarbage(dir, "garbage." + kind);
    auto t = CreateTeacher(o);
    ASSERT_FALSE(t.ok()) << kind;
    EXPECT_NE(t.status().message().find(o.model_path), std::string::npos) << t.status().ToString();
  }
}

TEST(CreateTeacherTest, LabelRejectsEmptyAndNonBgrFrames) {
  auto t = CreateTeacher(TeacherOptions());
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ((*t)->Label(cv::Mat()).status().code(), Status::Code::kInvalidArgument);
  EXPECT_EQ((*t)->Label(cv::Mat(64, 64, CV_8UC1, cv::Scalar(0))).status().code(),
            Status::Code::kInvalidArgument);
}

TEST(FileContentHashTest, DependsOnContentOnly) {
  TempDir dir;
  auto write = [&](const std::string& name, const std::string& text) {
    std::ofstream(dir.File(name), std::ios::binary) << text;
    return dir.File(name);
  };
  auto a = FileContentHash(write("a", "hello"));
  auto b = FileContentHash(write("b", "hello"));
  auto c = FileContentHash(write("c", "hellp"));
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ(*a, *b);
  EXPECT_NE(*a, *c);
  // FNV-1a 64 of "hello" (reference value).
  EXPECT_EQ(*a, "fnv1a64=a430d84680aabd0b,size=5");
  EXPECT_EQ(FileContentHash(dir.File("missing")).status().code(), Status::Code::kNotFound);
}

// ---------------------------------------------------------------------------------------------
// Letterbox geometry and YOLO decoding, independent of any model.

TEST(LetterboxTest, MatchesYoloV8Geometry) {
  Letterbox g = ComputeLetterbox(768, 576, 640, 640);
  EXPECT_FLOAT_EQ(g.scale, 640.0f / 768.0f);
  EXPECT_EQ(g.resized_width, 640);
  EXPECT_EQ(g.resized_height, 480);
  EXPECT_EQ(g.pad_x, 0);
  EXPECT_EQ(g.pad_y, 80);
  // An odd leftover goes right/bottom.
  g = ComputeLetterbox(100, 99, 64, 64);
  EXPECT_EQ(g.resized_height, 63);
  EXPECT_EQ(g.pad_y, 0);
  const cv::Mat out = ApplyLetterbox(cv::Mat(99, 100, CV_8UC3, cv::Scalar(1, 2, 3)), g);
  EXPECT_EQ(out.size(), cv::Size(64, 64));
  EXPECT_EQ(out.at<cv::Vec3b>(0, 0), cv::Vec3b(1, 2, 3));
  EXPECT_EQ(out.at<cv::Vec3b>(63, 0), cv::Vec3b(114, 114, 114));
}

TEST(DecodeYoloOutputTest, RejectsWrongShapeAndClassMap) {
  const std::vector<float> data(6 * 2, 0.0f);
  const Letterbox g = ComputeLetterbox(64, 64, 64, 64);
  EXPECT_EQ(DecodeYoloOutput(data.data(), {6, 2}, g, {}).status().code(),
            Status::Code::kInvalidArgument);
  EXPECT_EQ(DecodeYoloOutput(data.data(), {1, 4, 3}, g, {}).status().code(),
            Status::Code::kInvalidArgument);
  YoloDecodeOptions o;
  o.class_map = {0, 1, 2};
  EXPECT_EQ(DecodeYoloOutput(data.data(), {1, 6, 2}, g, o).status().code(),
            Status::Code::kInvalidArgument);
}

TEST(DecodeYoloOutputTest, OptionsValidateNamingTheFieldFirst) {
  EXPECT_TRUE(YoloDecodeOptions().Validate().ok());
  YoloDecodeOptions o;
  o.nms_iou = 1.5f;
  EXPECT_EQ(o.Validate().message().rfind("nms_iou: must be in [0, 1]", 0), 0u) << o.Validate().message();
  o = YoloDecodeOptions();
  o.class_map = {0, -2};
  EXPECT_EQ(o.Validate().message(), "class_map: entries must be >= -1, got -2");
  o = YoloDecodeOptions();
  o.score_threshold = NAN;
  EXPECT_EQ(o.Validate().message(), "score_threshold: must be finite");
}

// ---------------------------------------------------------------------------------------------
// HOG.

TEST(HogTeacherTest, FindsPeopleInSampleVideo) {
  if (!fs::exists(kVideo)) GTEST_SKIP() << kVideo << " not installed (opencv-doc)";
  auto t = CreateTeacher(TeacherOptions());
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  const std::vector<cv::Mat> frames = ReadFrames(3);
  ASSERT_EQ(frames.size(), 3u);
  for (const cv::Mat& frame : frames) {
    const auto start = std::chrono::steady_clock::now();
    auto found = (*t)->Label(frame);
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    ASSERT_TRUE(found.ok()) << found.status().ToString();
    std::cout << "hog: " << found->size() << " boxes in " << ms << " ms\n";
    EXPECT_GE(found->size(), 1u);
    EXPECT_LE(found->size(), 10u);
    for (const Detection& d : *found) {
      EXPECT_EQ(d.class_id, 0);
      EXPECT_GE(d.score, 0.5f);
      EXPECT_GE(d.box.height(), 100.0f);
      EXPECT_LE(d.box.height(), 450.0f);
      EXPECT_GE(d.box.x1, 0.0f);
      EXPECT_LE(d.box.x2, static_cast<float>(frame.cols));
      EXPECT_LE(d.box.y2, static_cast<float>(frame.rows));
    }
  }
}

TEST(HogTeacherTest, FingerprintReflectsSettings) {
  TeacherOptions o;
  auto a = CreateTeacher(o);
  auto b = CreateTeacher(o);
  o.score_threshold = 0.3f;
  auto c = CreateTeacher(o);
  o = TeacherOptions();
  o.threads = 2;  // does not change the output
  auto d = CreateTeacher(o);
  cv::setNumThreads(1);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok() && d.ok());
  EXPECT_EQ((*a)->Fingerprint(), (*b)->Fingerprint());
  EXPECT_NE((*a)->Fingerprint(), (*c)->Fingerprint());
  EXPECT_EQ((*a)->Fingerprint(), (*d)->Fingerprint());
  EXPECT_NE((*c)->Fingerprint().find("min_weight=0.3 "), std::string::npos) << (*c)->Fingerprint();
  EXPECT_EQ((*a)->Fingerprint().find('\n'), std::string::npos);
}

// A frame sent at half resolution: HOG alone misses people that fall below its window; with
// min_width it finds them again, in the small frame's coordinates, where they are on the full
// frame (scaled down).
TEST(HogTeacherTest, MinWidthLabelsAHalfResolutionFrameLikeTheFullOne) {
  if (!fs::exists(kVideo)) GTEST_SKIP() << kVideo << " not installed (opencv-doc)";
  const cv::Mat full = ReadFrames(1).at(0);
  cv::Mat half;
  cv::resize(full, half, cv::Size(full.cols / 2, full.rows / 2), 0, 0, cv::INTER_AREA);
  auto plain = CreateTeacher(TeacherOptions());
  TeacherOptions o;
  o.min_width = full.cols;
  auto enlarging = CreateTeacher(o);
  ASSERT_TRUE(plain.ok() && enlarging.ok());
  EXPECT_NE((*plain)->Fingerprint(), (*enlarging)->Fingerprint());
  EXPECT_NE((*enlarging)->Fingerprint().find("min_width=768"), std::string::npos);

  auto on_full = (*plain)->Label(full);
  auto on_half = (*enlarging)->Label(half);
  auto full_again = (*enlarging)->Label(full);  // wide enough: labelled as it is
  ASSERT_TRUE(on_full.ok() && on_half.ok() && full_again.ok());
  ASSERT_GE(on_full->size(), 1u);
  EXPECT_EQ(full_again->size(), on_full->size());
  Detections full_scaled = *on_full;
  ScaleDetections(&full_scaled, 0.5f, 0.5f);
  DetectionEvaluator agreement;
  agreement.AddFrame(*on_half, full_scaled);
  EXPECT_GE(agreement.Compute().map50, 0.5) << on_half->size() << " boxes vs " << on_full->size();
  for (const Detection& d : *on_half) {
    EXPECT_LE(d.box.x2, static_cast<float>(half.cols));
    EXPECT_LE(d.box.y2, static_cast<float>(half.rows));
  }

  o.min_width = -1;
  EXPECT_EQ(CreateTeacher(o).status().code(), Status::Code::kInvalidArgument);
}

// ---------------------------------------------------------------------------------------------
// DPM.

TEST(DpmTeacherTest, LoadsInriaPersonAndRunsOnASmallFrame) {
  if (!fs::exists(kDpmModel) || !fs::exists(kVideo)) GTEST_SKIP() << "opencv-doc examples not installed";
  TeacherOptions o;
  o.kind = TeacherKind::kDpm;
  o.model_path = kDpmModel;
  o.score_threshold = -1.0f;  // DPM scores are margins around 0; keep everything it reports
  auto t = CreateTeacher(o);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_NE((*t)->Fingerprint().find("model=fnv1a64="), std::string::npos);
  cv::Mat small;
  cv::resize(ReadFrames(1).at(0), small, cv::Size(), 0.5, 0.5, cv::INTER_AREA);
  auto found = (*t)->Label(small);
  ASSERT_TRUE(found.ok()) << found.status().ToString();
  for (const Detection& d : *found) {
    EXPECT_GE(d.score, -1.0f);
    EXPECT_GT(d.box.area(), 0.0f);
    EXPECT_LE(d.box.x2, static_cast<float>(small.cols));
  }
}

// ---------------------------------------------------------------------------------------------
// TorchScript, with a module built here whose output depends on the input's size and colour.

// Output [1, 6, 2] (2 classes, 2 candidates) for an input x of size H x W:
//   candidate 0: centre (W/2, H/2), size (W/4, H/2); class 0 = mean R, class 1 = mean B
//   candidate 1: centre (W/2, H/4), size (W/8, H/8); class 0 = mean B, class 1 = mean R
// returned as the first element of a tuple, as some exports do.
std::string SaveTinyTorchScriptDetector(const TempDir& dir) {
  torch::jit::Module m("TinyDetector");
  m.define(R"JIT(
def forward(self, x):
    h = float(x.size(2))
    w = float(x.size(3))
    m = x.mean(dim=[2, 3])[0]
    boxes = torch.tensor([[w / 2.0, w / 2.0], [h / 2.0, h / 4.0], [w / 4.0, w / 8.0], [h / 2.0, h / 8.0]])
    scores = torch.stack([torch.stack([m[0], m[2]]), torch.stack([m[2], m[0]])])
    return (torch.cat([boxes, scores], 0).unsqueeze(0), x)
)JIT");
  const std::string path = dir.File("tiny_detector.pt");
  m.save(path);
  return path;
}

TEST(TorchScriptTeacherTest, DecodesLetterboxedOutputExactly) {
  TempDir dir;
  TeacherOptions o;
  o.kind = TeacherKind::kTorchScript;
  o.model_path = SaveTinyTorchScriptDetector(dir);
  o.input_width = 96;
  o.input_height = 64;
  auto t = CreateTeacher(o);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  // A 100x200 (w x h) red frame: scale 0.32, resized 32x64, padded 32 px left and right with
  // 114. Means: R = 1/3 + 2/3 * 114/255, B = 2/3 * 114/255.
  const cv::Mat red(200, 100, CV_8UC3, cv::Scalar(0, 0, 255));
  const float mean_r = 1.0f / 3 + 2.0f / 3 * 114 / 255, mean_b = 2.0f / 3 * 114 / 255;
  auto found = (*t)->Label(red);
  ASSERT_TRUE(found.ok()) << found.status().ToString();
  ASSERT_EQ(found->size(), 2u);
  // Both score mean R, candidate 0 first (stable order on equal scores).
  // Candidate 0 in the input: (36, 16)-(60, 48) -> frame ((x - 32) / 0.32, y / 0.32).
  ExpectBox((*found)[0], 12.5f, 50.0f, 87.5f, 150.0f, mean_r, 0);
  // Candidate 1: (42, 12)-(54, 20).
  ExpectBox((*found)[1], 31.25f, 37.5f, 68.75f, 62.5f, mean_r, 1);
  EXPECT_LT(mean_b, o.score_threshold);

  o.class_map = {3, -1};  // class 0 -> 3, class 1 dropped
  auto mapped = CreateTeacher(o);
  ASSERT_TRUE(mapped.ok()) << mapped.status().ToString();
  found = (*mapped)->Label(red);
  ASSERT_TRUE(found.ok()) << found.status().ToString();
  ASSERT_EQ(found->size(), 1u);
  ExpectBox((*found)[0], 12.5f, 50.0f, 87.5f, 150.0f, mean_r, 3);
  EXPECT_NE((*t)->Fingerprint(), (*mapped)->Fingerprint());
  EXPECT_NE((*mapped)->Fingerprint().find("class_map=3,-1"), std::string::npos);
}

TEST(TorchScriptTeacherTest, ClassMapOfWrongSizeFailsAtCreation) {
  TempDir dir;
  TeacherOptions o;
  o.kind = TeacherKind::kTorchScript;
  o.model_path = SaveTinyTorchScriptDetector(dir);
  o.input_width = o.input_height = 64;
  o.class_map = {0, 1, 2};
  auto t = CreateTeacher(o);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), Status::Code::kInvalidArgument);
  EXPECT_NE(t.status().message().find(o.model_path), std::string::npos) << t.status().ToString();
}

// ---------------------------------------------------------------------------------------------
// ONNX, with the fixture from scripts/make_onnx_fixture.py (see its candidate table).

class OnnxTeacherTest : public ::testing::Test {
 protected:
  static TeacherOptions Options() {
    TeacherOptions o;
    o.kind = TeacherKind::kOnnx;
    o.model_path = kOnnxFixture;
    o.input_width = o.input_height = 64;
    return o;
  }
  // A 128x64 (w x h) frame letterboxes to 64x32 at scale 0.5 with 16 px of 114 above and below,
  // so a channel at 255 averages 0.5 + 0.5 * 114/255 and one at 0 averages 0.5 * 114/255.
  static constexpr float kHigh = 0.5f + 0.5f * 114 / 255, kLow = 0.5f * 114 / 255;
  static cv::Mat Frame(const cv::Scalar& bgr) { return cv::Mat(64, 128, CV_8UC3, bgr); }
};

TEST_F(OnnxTeacherTest, DecodesRedFrame) {
  auto t = CreateTeacher(Options());
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  auto found = (*t)->Label(Frame(cv::Scalar(0, 0, 255)));
  ASSERT_TRUE(found.ok()) << found.status().ToString();
  ASSERT_EQ(found->size(), 3u);
  // Input boxes map to the frame by ((x - 0) / 0.5, (y - 16) / 0.5).
  ExpectBox((*found)[0], 86, 32, 106, 64, 0.8f, 2);   // candidate 3 (constant 0.8)
  ExpectBox((*found)[1], 44, 2, 84, 62, kHigh, 0);    // candidate 0 (red); 2 lost to NMS
  ExpectBox((*found)[2], 0, 0, 24, 12, 0.7f, 1);      // candidate 4, clipped from (-8, -4)
}

TEST_F(OnnxTeacherTest, DecodesBlueFrameWithClassMap) {
  TeacherOptions o = Options();
  o.class_map = {5, 7, -1};
  auto t = CreateTeacher(o);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  auto found = (*t)->Label(Frame(cv::Scalar(255, 0, 0)));
  ASSERT_TRUE(found.ok()) << found.status().ToString();
  // Red is low now: candidates 0 and 2 fall under 0.5; class 2 (candidate 3) is dropped.
  ASSERT_EQ(found->size(), 2u);
  ExpectBox((*found)[0], 24, 4, 40, 28, kHigh, 7);  // candidate 1 (blue): (12, 18)-(20, 30)
  ExpectBox((*found)[1], 0, 0, 24, 12, 0.7f, 7);    // candidate 4
  EXPECT_LT(kLow, o.score_threshold);
}

TEST_F(OnnxTeacherTest, FingerprintHasModelHashAndSettings) {
  auto a = CreateTeacher(Options());
  TeacherOptions o = Options();
  o.nms_iou = 0.6f;
  auto b = CreateTeacher(o);
  ASSERT_TRUE(a.ok() && b.ok());
  auto hash = FileContentHash(kOnnxFixture);
  ASSERT_TRUE(hash.ok());
  EXPECT_NE((*a)->Fingerprint().find("onnx "), std::string::npos);
  EXPECT_NE((*a)->Fingerprint().find(*hash), std::string::npos) << (*a)->Fingerprint();
  EXPECT_NE((*a)->Fingerprint(), (*b)->Fingerprint());
}

}  // namespace
}  // namespace sd
