#include "common/config/yaml_reader.h"

#include <gtest/gtest.h>

#include "common/config/yaml_overlay.h"

namespace sd {
namespace {

YamlReader Parse(const std::string& text) {
  auto reader = YamlReader::FromString(text, "test.yaml");
  EXPECT_TRUE(reader.ok()) << reader.status().ToString();
  return *reader;
}

TEST(YamlReaderTest, ReadsTypedValuesAndKeepsDefaults) {
  YamlReader r = Parse("a: 3\nb: 0.5\nname: hog\nlist: [1, 2]\nsub:\n  flag: true\n");
  int a = 0, missing = 7;
  double b = 0;
  std::string name;
  std::vector<int> list;
  bool flag = false;
  ASSERT_TRUE(r.Get("a", &a).ok());
  ASSERT_TRUE(r.Get("b", &b).ok());
  ASSERT_TRUE(r.Get("name", &name).ok());
  ASSERT_TRUE(r.Get("list", &list).ok());
  ASSERT_TRUE(r.Get("missing", &missing).ok());
  auto sub = r.Child("sub");
  ASSERT_TRUE(sub.ok());
  ASSERT_TRUE(sub->Get("flag", &flag).ok());
  EXPECT_EQ(a, 3);
  EXPECT_DOUBLE_EQ(b, 0.5);
  EXPECT_EQ(name, "hog");
  EXPECT_EQ(list, (std::vector<int>{1, 2}));
  EXPECT_EQ(missing, 7);
  EXPECT_TRUE(flag);
  EXPECT_TRUE(r.CheckAllKeysUsed().ok());
}

TEST(YamlReaderTest, WrongTypeNamesFileKeyAndLine) {
  YamlReader r = Parse("training:\n  steps: many\n");
  auto training = r.Child("training");
  ASSERT_TRUE(training.ok());
  int steps = 0;
  Status s = training->Get("steps", &steps);
  EXPECT_EQ(s.code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(s.message(), "test.yaml: key 'training.steps' (line 2): expected an integer, got 'many'");
}

TEST(YamlReaderTest, UnknownKeyIsAnError) {
  YamlReader r = Parse("student:\n  widht: 3\n  classes: 1\n");
  int classes = 0;
  ASSERT_TRUE(r.Child("student")->Get("classes", &classes).ok());
  Status s = r.CheckAllKeysUsed();
  EXPECT_EQ(s.message(), "test.yaml: unknown key 'student.widht' (line 2)");
}

// An options struct's Validate() names its field first; Check turns that into the key's error.
TEST(YamlReaderTest, CheckMapsAValidateFieldToTheKeyAndLine) {
  YamlReader r = Parse("limits:\n  stream_backlog: 4\n  max_image_width: 0\n");
  auto limits = r.Child("limits");
  ASSERT_TRUE(limits.ok());
  EXPECT_TRUE(limits->Check(Status::Ok()).ok());
  EXPECT_EQ(limits->Check(Status::InvalidArgument("stream_backlog: must be >= 8")).message(),
            "test.yaml: key 'limits.stream_backlog' (line 2): must be >= 8");
  EXPECT_EQ(limits->Check(Status::InvalidArgument("image.max_width: must be in [1, 65535]"),
                          {{"image.max_width", "max_image_width"}})
                .message(),
            "test.yaml: key 'limits.max_image_width' (line 3): must be in [1, 65535]");
  // A message that does not start with a field keeps its text, after the file's name.
  EXPECT_EQ(limits->Check(Status::InvalidArgument("round iterations must be >= 1")).message(),
            "test.yaml: round iterations must be >= 1");
}

TEST(YamlReaderTest, MissingRequiredKeyAndBadSyntax) {
  YamlReader r = Parse("a: 1\n");
  std::string video;
  Status s = r.Require("video", &video);
  EXPECT_EQ(s.message(), "test.yaml: key 'video': missing required key");
  auto bad = YamlReader::FromString("a: [1, 2\n", "bad.yaml");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("bad.yaml: invalid YAML"), std::string::npos);
  auto missing = YamlReader::FromFile("/nonexistent/config.yaml");
  EXPECT_EQ(missing.status().code(), Status::Code::kNotFound);
}

// A document laid over another (bench `base:`, the fleet's runs): maps merge key by key,
// lists and scalars replace, and neither input changes.
TEST(YamlOverlayTest, MapsMergeListsAndScalarsReplace) {
  const YAML::Node base = YAML::Load("a: 1\nsub: {x: 1, y: 2}\nlist: [1, 2]\n");
  const YAML::Node over = YAML::Load("sub: {y: 3, z: 4}\nlist: [5]\nb: 2\n");
  YamlReader r = Parse(EmitYaml(MergeYaml(base, over)));
  int a = 0, b = 0, x = 0, y = 0, z = 0;
  std::vector<int> list;
  ASSERT_TRUE(r.Get("a", &a).ok());
  ASSERT_TRUE(r.Get("b", &b).ok());
  ASSERT_TRUE(r.Get("list", &list).ok());
  auto sub = r.Child("sub");
  ASSERT_TRUE(sub.ok());
  ASSERT_TRUE(sub->Get("x", &x).ok() && sub->Get("y", &y).ok() && sub->Get("z", &z).ok());
  EXPECT_EQ(a, 1);
  EXPECT_EQ(b, 2);
  EXPECT_EQ(x, 1);
  EXPECT_EQ(y, 3);
  EXPECT_EQ(z, 4);
  EXPECT_EQ(list, std::vector<int>{5});
  EXPECT_EQ(base["sub"]["y"].as<int>(), 2);
  EXPECT_FALSE(base["b"]);
}

TEST(YamlOverlayTest, MissingFileIsNamed) {
  auto missing = LoadYamlWithBase("/nonexistent/bench.yaml", "a bench config");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), Status::Code::kNotFound);
  EXPECT_NE(missing.status().message().find("/nonexistent/bench.yaml"), std::string::npos);
}

}  // namespace
}  // namespace sd
