// The bench's condition streams (bench/condition_stream.h): each transform does what its name
// says, the made video is the same for the same spec and new for a changed one, and a broken
// stream section names its key.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>

#include "bench/bench_config.h"
#include "bench/condition_stream.h"
#include "common/video/frame_source.h"
#include "tests/scoped_temp_dir.h"

namespace sd {
namespace {

// A 160x120 frame with content that tells left from right and top from bottom: a horizontal
// grey ramp, a bright square near the top left, and a dark bar at the bottom.
cv::Mat Scene(int variant = 0) {
  cv::Mat bgr(120, 160, CV_8UC3);
  for (int x = 0; x < bgr.cols; ++x) bgr.col(x).setTo(cv::Scalar::all(40 + x));
  cv::rectangle(bgr, cv::Rect(20 + variant, 15, 20, 20), cv::Scalar(250, 240, 230), cv::FILLED);
  cv::rectangle(bgr, cv::Rect(0, 100, 160, 10), cv::Scalar(10, 20, 30), cv::FILLED);
  return bgr;
}

double MeanGrey(const cv::Mat& bgr) {
  const cv::Scalar m = cv::mean(bgr);
  return (m[0] + m[1] + m[2]) / 3;
}

bool SameImage(const cv::Mat& a, const cv::Mat& b) {
  return a.size() == b.size() && a.type() == b.type() && cv::norm(a, b, cv::NORM_INF) == 0;
}

TEST(ConditionTransformTest, NoKeysLeaveTheFrameAsItIs) {
  EXPECT_TRUE(SameImage(ApplyCondition(Scene(), Condition{}, 1), Scene()));
}

TEST(ConditionTransformTest, MirrorFlipsLeftAndRight) {
  Condition c;
  c.mirror = true;
  cv::Mat flipped;
  cv::flip(Scene(), flipped, 1);
  EXPECT_TRUE(SameImage(ApplyCondition(Scene(), c, 1), flipped));
}

TEST(ConditionTransformTest, GammaAndGainDarkenTheMidTonesAndKeepBlack) {
  Condition c;
  c.gamma = 2.2;
  const cv::Mat dusk = ApplyCondition(Scene(), c, 1);
  EXPECT_LT(MeanGrey(dusk), 0.6 * MeanGrey(Scene()));
  cv::Mat grey(4, 4, CV_8UC3, cv::Scalar::all(128));
  EXPECT_NEAR(ApplyCondition(grey, c, 1).at<cv::Vec3b>(0, 0)[0], 255 * std::pow(128 / 255.0, 2.2), 0.6);
  cv::Mat black(4, 4, CV_8UC3, cv::Scalar::all(0));
  EXPECT_TRUE(SameImage(ApplyCondition(black, c, 1), black));
  Condition dim;
  dim.gain = 0.5;
  EXPECT_NEAR(ApplyCondition(grey, dim, 1).at<cv::Vec3b>(0, 0)[1], 64, 0.6);
}

TEST(ConditionTransformTest, ShiftMovesTheContentRightAndDown) {
  Condition c;
  c.shift_x = 12;
  c.shift_y = 7;
  const cv::Mat in = Scene(), out = ApplyCondition(in, c, 1);
  // The square's top-left corner (20, 15) is now at (32, 22); the interior moved as a whole.
  const cv::Rect moved(12, 7, in.cols - 12, in.rows - 7);
  EXPECT_TRUE(SameImage(out(moved), in(cv::Rect(0, 0, moved.width, moved.height))));
  EXPECT_EQ(out.at<cv::Vec3b>(22, 32), cv::Vec3b(250, 240, 230));
  EXPECT_NE(out.at<cv::Vec3b>(15, 20), cv::Vec3b(250, 240, 230));
}

TEST(ConditionTransformTest, ZoomEnlargesAboutTheCentre) {
  Condition c;
  c.zoom = 2;
  const cv::Mat in = Scene(), out = ApplyCondition(in, c, 1);
  // A point d from the centre (x 80, y 60) moves to 2d: the square (x 20-39) out of view; the
  // ramp's grey at x = 70 (d = -10) is found at x = 60, the centre's stays.
  EXPECT_NEAR(out.at<cv::Vec3b>(60, 60)[0], in.at<cv::Vec3b>(60, 70)[0], 1);
  EXPECT_NEAR(out.at<cv::Vec3b>(60, 80)[0], in.at<cv::Vec3b>(60, 80)[0], 1);
  cv::Mat square_colour;
  cv::inRange(out, cv::Scalar(250, 240, 230), cv::Scalar(250, 240, 230), square_colour);
  EXPECT_EQ(cv::countNonZero(square_colour), 0);
}

TEST(ConditionTransformTest, BlurSmoothsHazeLiftsBlacksStreaksOnlyBrighten) {
  const cv::Mat in = Scene();
  Condition blur;
  blur.blur = 3;
  cv::Mat in_edges, out_edges;
  cv::Laplacian(in, in_edges, CV_32F);
  cv::Laplacian(ApplyCondition(in, blur, 1), out_edges, CV_32F);
  EXPECT_LT(cv::norm(out_edges), 0.5 * cv::norm(in_edges));

  Condition haze;
  haze.haze = 0.5;
  const cv::Mat hazy = ApplyCondition(in, haze, 1);
  EXPECT_NEAR(hazy.at<cv::Vec3b>(105, 80)[0], 105, 1);  // the dark bar (10) half way to light grey (200)
  EXPECT_NEAR(hazy.at<cv::Vec3b>(20, 25)[0], 225, 1);   // the bright square (250) too

  Condition rain;
  rain.streaks = 0.5;
  const cv::Mat wet = ApplyCondition(in, rain, 7);
  cv::Mat darker;
  cv::compare(wet, in, darker, cv::CMP_LT);
  EXPECT_EQ(cv::countNonZero(darker.reshape(1)), 0);
  EXPECT_GT(cv::norm(wet, in, cv::NORM_L1), 1000);
  EXPECT_TRUE(SameImage(ApplyCondition(in, rain, 7), wet));
  EXPECT_FALSE(SameImage(ApplyCondition(in, rain, 8), wet));
}

TEST(ConditionTransformTest, NoiseHasItsStandardDeviationAndFollowsTheSeed) {
  cv::Mat grey(120, 160, CV_8UC3, cv::Scalar::all(128));
  Condition c;
  c.noise = 8;
  const cv::Mat noisy = ApplyCondition(grey, c, 3);
  cv::Scalar mean, stddev;
  cv::meanStdDev(noisy.reshape(1), mean, stddev);
  EXPECT_NEAR(mean[0], 128, 0.5);
  EXPECT_NEAR(stddev[0], 8, 0.5);
  EXPECT_TRUE(SameImage(ApplyCondition(grey, c, 3), noisy));
  EXPECT_FALSE(SameImage(ApplyCondition(grey, c, 4), noisy));
}

// A 30-frame source video of the scene with the square moving, in `dir`.
std::string WriteSource(const std::string& dir) {
  const std::string path = dir + "/source.avi";
  cv::VideoWriter writer(path, cv::CAP_FFMPEG, cv::VideoWriter::fourcc('F', 'F', 'V', '1'), 10, cv::Size(160, 120));
  for (int i = 0; i < 30; ++i) writer.write(Scene(i));
  return path;
}

constexpr char kStreamSection[] = R"(stream:
  source: SOURCE
  seed: 5
  conditions:
    day: {}
    dusk: {gamma: 2, gain: 0.8, noise: 5}
    moved: {mirror: true, shift: [6, 3], zoom: 1.1}
  segments:
    - {frames: [0, 10], condition: day}
    - {frames: [10, 20], condition: dusk}
    - {frames: [0, 5], condition: moved}
  eval: {frames: [20, 30], conditions: [dusk, day]}
  pretrain: {frames: [5, 10], condition: moved}
)";

std::string WithSource(std::string text, const std::string& source) {
  text.replace(text.find("SOURCE"), 6, source);
  return text;
}

StatusOr<ConditionStreamSpec> ReadSpec(const std::string& text) {
  SD_ASSIGN_OR_RETURN(YamlReader root, YamlReader::FromString(text, "bench.yaml"));
  SD_ASSIGN_OR_RETURN(YamlReader stream, root.Child("stream"));
  ConditionStreamSpec spec;
  SD_RETURN_IF_ERROR(ReadConditionStreamSpec(stream, &spec));
  SD_RETURN_IF_ERROR(root.CheckAllKeysUsed());
  return spec;
}

std::string FileBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::vector<cv::Mat> ReadAll(const std::string& path) {
  FrameSourceOptions options;
  options.uri = path;
  auto frames = ReadFrames(options, 1000);
  return frames.ok() ? *frames : std::vector<cv::Mat>{};
}

TEST(ConditionStreamTest, TheVideoHoldsTheBlocksInOrderTheSameForTheSameSpec) {
  testing::ScopedTempDir dir("sd_conditions");
  const std::string source = WriteSource(dir.path());
  auto spec = ReadSpec(WithSource(kStreamSection, source));
  ASSERT_TRUE(spec.ok()) << spec.status().message();

  const ConditionStreamLayout layout = LayOutConditionStream(*spec, dir.File("cache_a"));
  EXPECT_EQ(layout.train_frames.begin, 0);
  EXPECT_EQ(layout.train_frames.end, 25);
  ASSERT_EQ(layout.eval_sets.size(), 2u);
  EXPECT_EQ(layout.eval_sets[0].name, "dusk");
  EXPECT_EQ(layout.eval_sets[0].frames.begin, 25);
  EXPECT_EQ(layout.eval_sets[1].frames.begin, 35);
  EXPECT_EQ(layout.pretrain_frames.begin, 45);
  EXPECT_EQ(layout.pretrain_frames.end, 50);
  EXPECT_EQ(layout.frames, 50);
  ASSERT_TRUE(WriteConditionStream(*spec, layout).ok());

  // Lossless: frame by frame the source under the block's condition, noise included.
  const std::vector<cv::Mat> made = ReadAll(layout.video);
  ASSERT_EQ(made.size(), 50u);
  EXPECT_TRUE(SameImage(made[3], Scene(3)));                 // day
  EXPECT_LT(MeanGrey(made[12]), MeanGrey(Scene(12)) - 10);   // dusk
  EXPECT_TRUE(SameImage(made[22], ApplyCondition(Scene(2), *spec->Find("moved"), 0)));  // moved, no noise
  EXPECT_TRUE(SameImage(made[35], Scene(20)));  // the day eval block starts at source frame 20

  // The same spec elsewhere: the same file name and the same bytes. Reused where it exists.
  const ConditionStreamLayout again = LayOutConditionStream(*spec, dir.File("cache_b"));
  EXPECT_EQ(std::filesystem::path(again.video).filename(), std::filesystem::path(layout.video).filename());
  ASSERT_TRUE(WriteConditionStream(*spec, again).ok());
  EXPECT_EQ(FileBytes(again.video), FileBytes(layout.video));
  const auto written = std::filesystem::last_write_time(layout.video);
  ASSERT_TRUE(WriteConditionStream(*spec, layout).ok());
  EXPECT_EQ(std::filesystem::last_write_time(layout.video), written);

  // A changed condition: a new file.
  std::string changed = WithSource(kStreamSection, source);
  changed.replace(changed.find("noise: 5"), 8, "noise: 6");
  auto other = ReadSpec(changed);
  ASSERT_TRUE(other.ok());
  EXPECT_NE(LayOutConditionStream(*other, dir.File("cache_a")).video, layout.video);
}

TEST(ConditionStreamTest, TooFewSourceFramesIsAnErrorAndLeavesNoFile) {
  testing::ScopedTempDir dir("sd_conditions");
  std::string text = WithSource(kStreamSection, WriteSource(dir.path()));
  text.replace(text.find("[20, 30]"), 8, "[20, 40]");
  auto spec = ReadSpec(text);
  ASSERT_TRUE(spec.ok()) << spec.status().message();
  const ConditionStreamLayout layout = LayOutConditionStream(*spec, dir.File("cache"));
  const Status written = WriteConditionStream(*spec, layout);
  EXPECT_FALSE(written.ok());
  EXPECT_NE(written.message().find("20-40"), std::string::npos) << written.message();
  EXPECT_FALSE(std::filesystem::exists(layout.video));
}

TEST(ConditionStreamTest, ErrorsNameTheKey) {
  const std::string good = WithSource(kStreamSection, "/nowhere/source.avi");
  ASSERT_TRUE(ReadSpec(good).ok()) << ReadSpec(good).status().message();
  struct Case {
    std::string from, to, key;
  };
  for (const Case& c : std::vector<Case>{
           {"gamma: 2,", "gamma: -1,", "stream.conditions.dusk.gamma"},
           {"shift: [6, 3]", "shift: [6]", "stream.conditions.moved.shift"},
           {"{frames: [10, 20], condition: dusk}", "{frames: [10, 20], condition: night}",
            "stream.segments[1].condition"},
           {"{frames: [10, 20], condition: dusk}", "{frames: [20, 10], condition: dusk}", "stream.segments[1].frames"},
           {"{frames: [10, 20], condition: dusk}", "{frame: [10, 20], condition: dusk}", "stream.segments[1].frames"},
           {"condition: day}\n", "condition: day, colour: red}\n", "stream.segments[0].colour"},
           {"conditions: [dusk, day]", "conditions: [dusk, fog]", "stream.eval.conditions"},
           {"frames: [20, 30]", "frames: [15, 30]", "stream.eval.frames"},
           {"noise: 5}", "noise: 5, snow: 1}", "stream.conditions.dusk.snow"},
           {"day: {}", "day: {empty_share: 1}", "stream.conditions.day.empty_share"},
           {"day: {}", "day: {empty_share: 0.5, empty_period: 1}", "stream.conditions.day.empty_period"},
       }) {
    std::string text = good;
    ASSERT_NE(text.find(c.from), std::string::npos) << c.from;
    text.replace(text.find(c.from), c.from.size(), c.to);
    auto spec = ReadSpec(text);
    ASSERT_FALSE(spec.ok()) << c.to;
    EXPECT_NE(spec.status().message().find("'" + c.key + "'"), std::string::npos) << spec.status().message();
  }
}

TEST(ConditionStreamTest, ConditionValidateNamesTheKeyFirst) {
  EXPECT_TRUE(Condition().Validate().ok());
  Condition c;
  c.haze = 1.5;
  EXPECT_EQ(c.Validate().message(), "haze: must be in [0, 1]");
  c = Condition();
  c.shift_y = -2000;
  EXPECT_EQ(c.Validate().message(), "shift: must be within 1000 pixels");
}

// A 30-frame source in which a "person" (a bright square) crosses an empty street, 5 pixels a
// frame: each pixel sees it in at most 2 frames, so the median of all frames is the street.
std::string WriteCrossingSource(const std::string& dir, cv::Mat* street) {
  *street = Scene(0);
  cv::rectangle(*street, cv::Rect(20, 15, 20, 20), cv::Scalar::all(0), cv::FILLED);
  const std::string path = dir + "/crossing.avi";
  cv::VideoWriter writer(path, cv::CAP_FFMPEG, cv::VideoWriter::fourcc('F', 'F', 'V', '1'), 10, cv::Size(160, 120));
  for (int i = 0; i < 30; ++i) {
    cv::Mat frame = street->clone();
    cv::rectangle(frame, cv::Rect(5 * i, 60, 10, 30), cv::Scalar(250, 240, 230), cv::FILLED);
    writer.write(frame);
  }
  return path;
}

TEST(ConditionStreamTest, AQuietConditionShowsTheEmptyStreetForItsShareOfEachPeriod) {
  testing::ScopedTempDir dir("sd_conditions");
  cv::Mat street;
  const std::string source = WriteCrossingSource(dir.path(), &street);
  auto background = SceneBackground(source, 1);
  ASSERT_TRUE(background.ok()) << background.status().message();
  EXPECT_TRUE(SameImage(*background, street));

  const std::string text = std::string("stream:\n  source: ") + source + R"(
  seed: 5
  conditions:
    day: {}
    quiet: {empty_share: 0.6, empty_period: 10}
  segments:
    - {frames: [0, 20], condition: quiet}
    - {frames: [0, 10], condition: day}
  eval: {frames: [20, 30], conditions: [day]}
)";
  auto spec = ReadSpec(text);
  ASSERT_TRUE(spec.ok()) << spec.status().message();
  const ConditionStreamLayout layout = LayOutConditionStream(*spec, dir.File("cache"));
  ASSERT_TRUE(WriteConditionStream(*spec, layout).ok());
  const std::vector<cv::Mat> made = ReadAll(layout.video);
  ASSERT_EQ(made.size(), 40u);
  FrameSourceOptions options;
  options.uri = source;
  auto frames = ReadFrames(options, 30);
  ASSERT_TRUE(frames.ok());
  const Condition& quiet = *spec->Find("quiet");
  for (int period = 0; period < 2; ++period) {
    int empty = 0, busy_run_starts = 0;
    for (int i = 10 * period; i < 10 * period + 10; ++i) {
      const bool shows_empty = ShowsEmptyScene(quiet, 5, i);
      EXPECT_TRUE(SameImage(made[i], shows_empty ? street : (*frames)[i])) << "frame " << i;
      empty += shows_empty;
      busy_run_starts += !shows_empty && (i == 10 * period || ShowsEmptyScene(quiet, 5, i - 1));
    }
    EXPECT_EQ(empty, 6) << "period " << period;
    EXPECT_EQ(busy_run_starts, 1) << "one busy stretch in period " << period;
  }
  // The plain condition keeps every source frame; no condition is quiet at share 0.
  for (int i = 20; i < 40; ++i) EXPECT_TRUE(SameImage(made[i], (*frames)[i < 30 ? i - 20 : i - 10])) << "frame " << i;
  // Other seeds place the busy stretches elsewhere: they are other streams.
  bool moved = false;
  for (uint64_t seed = 6; seed < 16 && !moved; ++seed)
    for (int i = 0; i < 100; ++i) moved |= ShowsEmptyScene(quiet, seed, i) != ShowsEmptyScene(quiet, 5, i);
  EXPECT_TRUE(moved);
  // A stream made before these keys keeps its file name: an unset share adds nothing to the key.
  EXPECT_EQ(spec->Find("day")->Describe().find("empty"), std::string::npos);
  EXPECT_NE(quiet.Describe().find("empty_share=0.6"), std::string::npos);
}

// A bench config with a stream: the job's video, stream, eval sets and pretrain range are the
// layout's, variants carry their own sampling, and the job's own keys for them are refused.
TEST(ConditionStreamTest, BenchConfigTakesTheLayoutAndVariants) {
  testing::ScopedTempDir dir("sd_conditions");
  const std::string path = dir.File("bench.yaml");
  const std::string text = std::string("cache_dir: ") + dir.File("cache") + "\nlabels: teacher\n" +
                           WithSource(kStreamSection, dir.File("source.avi")) +
                           "pretrain: {frames: 2}\n"
                           "sampling: {coverage_share: 0}\n"
                           "variants:\n  floor: {strategy: top_confidence, coverage_share: 0.25}\n"
                           "grid: {strategies: [uniform, floor], budgets: [5]}\n";
  std::ofstream(path) << text;
  auto config = LoadBenchConfig(path);
  ASSERT_TRUE(config.ok()) << config.status().message();
  EXPECT_TRUE(config->made_stream);
  EXPECT_EQ(config->job.video, config->stream_layout.video);
  EXPECT_EQ(config->job.train_frames.end, 25);
  ASSERT_EQ(config->eval_sets.size(), 2u);
  EXPECT_EQ(config->eval_sets[1].name, "day");
  EXPECT_EQ(config->pretrain.range.begin, 45);
  EXPECT_EQ(GridEntryOptions(*config, "floor").strategy, SamplerStrategy::kTopConfidence);
  EXPECT_DOUBLE_EQ(GridEntryOptions(*config, "floor").coverage_share, 0.25);
  EXPECT_EQ(GridEntryOptions(*config, "uniform").strategy, SamplerStrategy::kUniform);
  EXPECT_DOUBLE_EQ(GridEntryOptions(*config, "uniform").coverage_share, 0);

  std::ofstream(path) << "video: x.avi\n" << text;
  auto both = LoadBenchConfig(path);
  ASSERT_FALSE(both.ok());
  EXPECT_NE(both.status().message().find("'video'"), std::string::npos) << both.status().message();

  std::string unknown = text;
  unknown.replace(unknown.find("[uniform, floor]"), 16, "[uniform, flor]");
  std::ofstream(path) << unknown;
  auto typo = LoadBenchConfig(path);
  ASSERT_FALSE(typo.ok());
  EXPECT_NE(typo.status().message().find("flor"), std::string::npos) << typo.status().message();
}

}  // namespace
}  // namespace sd
