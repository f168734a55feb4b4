// Runs the real streamdistill-train binary on broken inputs: each must give one clear error
// line naming the file and the problem, exit code 2, and no crash or stack trace.
#include <gtest/gtest.h>

#include "tests/run_binary.h"

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

namespace {

namespace fs = std::filesystem;

using Result = sd::testing::RunResult;

Result RunTrain(const std::string& args) { return sd::testing::RunBinary("streamdistill-train", args, 120); }

class TrainCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(SD_BINARY_DIR) / "test_tmp" / "train_cli";
    fs::create_directories(dir_);
  }
  std::string WriteConfig(const std::string& name, const std::string& text) {
    const fs::path path = dir_ / name;
    std::ofstream(path) << text;
    return path.string();
  }
  static int Lines(const std::string& s) { return std::count(s.begin(), s.end(), '\n'); }
  fs::path dir_;
};

TEST_F(TrainCliTest, MissingConfigFile) {
  Result r = RunTrain("--config /nonexistent/train.yaml");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.output, "streamdistill-train: error: /nonexistent/train.yaml: config file not found\n");
}

TEST_F(TrainCliTest, MissingVideo) {
  const std::string config = WriteConfig("missing_video.yaml", "video: /nonexistent/video.avi\n");
  Result r = RunTrain("--config " + config);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.output, "streamdistill-train: error: /nonexistent/video.avi: video not found\n");
}

TEST_F(TrainCliTest, WrongTypeUnknownKeyAndBadSyntax) {
  Result wrong = RunTrain("--config " + WriteConfig("wrong_type.yaml", "video: v.avi\ntraining:\n  steps: lots\n"));
  EXPECT_EQ(wrong.exit_code, 2);
  EXPECT_NE(wrong.output.find("wrong_type.yaml: key 'training.steps' (line 3): expected an integer, got 'lots'"),
            std::string::npos)
      << wrong.output;
  EXPECT_EQ(Lines(wrong.output), 1) << wrong.output;

  Result unknown = RunTrain("--config " + WriteConfig("unknown.yaml", "video: v.avi\nstudent:\n  widht: 3\n"));
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_NE(unknown.output.find("unknown.yaml: unknown key 'student.widht' (line 3)"), std::string::npos)
      << unknown.output;

  Result syntax = RunTrain("--config " + WriteConfig("syntax.yaml", "video: [v.avi\n"));
  EXPECT_EQ(syntax.exit_code, 2);
  EXPECT_NE(syntax.output.find("syntax.yaml: invalid YAML"), std::string::npos) << syntax.output;

  Result missing = RunTrain("--config " + WriteConfig("no_video.yaml", "threads: 1\n"));
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.output.find("key 'video': missing required key"), std::string::npos) << missing.output;
}

TEST_F(TrainCliTest, UnreadableModelFiles) {
  const fs::path garbage = dir_ / "garbage.onnx";
  std::ofstream(garbage) << "this is not a model";
  const std::string video = "/usr/share/doc/opencv-doc/examples/data/vtest.avi";
  Result teacher = RunTrain("--config " + WriteConfig("bad_teacher.yaml", "video: " + video +
                                                                               "\nteacher:\n  kind: onnx\n  model: " +
                                                                               garbage.string() + "\n"));
  EXPECT_EQ(teacher.exit_code, 2);
  EXPECT_NE(teacher.output.find(garbage.string()), std::string::npos) << teacher.output;
  EXPECT_EQ(Lines(teacher.output), 1) << teacher.output;

  const fs::path weights = dir_ / "garbage.sdw";
  std::ofstream(weights) << "not weights either";
  Result init = RunTrain("--config " + WriteConfig("bad_weights.yaml",
                                                   "video: " + video + "\ncache_dir: " + (dir_ / "cache").string() +
                                                       "\ntrain_frames: [0, 2]\neval_frames: [2, 4]\n"
                                                       "init_weights: " + weights.string() + "\n"
                                                       "teacher:\n  kind: onnx\n  model: " SD_SOURCE_DIR
                                                       "/tests/data/tiny_yolo.onnx\n"));
  EXPECT_EQ(init.exit_code, 2);
  EXPECT_NE(init.output.find(weights.string() + ": not a streamdistill student weights file"), std::string::npos)
      << init.output;
  EXPECT_EQ(init.output.find("terminate"), std::string::npos);
}

}  // namespace
