// Dataset export (issue 12, part 4): a real store's frames and the teacher's labels come out as
// COCO JSON and YOLO files that standard readers accept, split as the server split them, while
// the server goes on writing to the store.
#include "server/dataset_export.h"

#include <yaml-cpp/yaml.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>

#include "tests/fault_env.h"
#include "common/vision/image_header.h"
#include "server/frame_store.h"
#include "tests/run_binary.h"
#include "tests/scoped_temp_dir.h"

namespace sd {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using sd::testing::ScopedTempDir;

constexpr int kValidationEvery = 4;  // as the server's training.validation_every
const std::vector<std::string> kNames = {"person", "car"};

// The devices of the test store and their image sizes: each its own, so a width or height
// taken from the wrong place shows. "cam_x.2" has the '_' and '.' a device id may contain.
const std::map<std::string, cv::Size> kDevices = {{"camA", {160, 120}}, {"camB", {96, 128}}, {"cam_x.2", {64, 48}}};

// The same bytes for the same (size, seed): an exported image can be compared with what was
// stored even after retention deleted the store's copy.
std::string RealJpeg(cv::Size size, uint64_t seed) {
  cv::Mat image(size, CV_8UC3);
  cv::RNG rng(seed);
  rng.fill(image, cv::RNG::UNIFORM, cv::Scalar::all(0), cv::Scalar::all(255));
  std::vector<uchar> bytes;
  EXPECT_TRUE(cv::imencode(".jpg", image, bytes));
  return std::string(bytes.begin(), bytes.end());
}

// A frame as the server stores it: a real JPEG, the teacher's labels in its pixels, the split
// by the server's rule. Sequence % 3 gives none, one or two boxes; sequence 5 has a box
// reaching past the image (clipped on export) and sequence 7 one wholly outside (dropped).
FrameRecord MakeFrame(const std::string& device, uint64_t sequence) {
  const cv::Size size = kDevices.at(device);
  FrameRecord f;
  f.device_id = device;
  f.sequence = sequence;
  f.frame_index = static_cast<int64_t>(sequence) * 10;
  f.capture_time_s = 1000.0 + static_cast<double>(sequence);
  f.source_width = size.width;
  f.source_height = size.height;
  f.validation = sequence % kValidationEvery == 0;
  for (uint64_t k = 0; k < sequence % 3; ++k) {
    const float x = 3.0f + 7.5f * k + sequence % 5, y = 2.25f + 4.0f * k;
    f.labels.push_back({{x, y, x + size.width / 3.0f, y + size.height / 2.5f}, 0.5f + 0.1f * k, static_cast<int>(k)});
  }
  if (sequence == 5) f.labels.push_back({{-10.0f, 5.0f, size.width + 20.0f, 30.0f}, 0.75f, 1});
  if (sequence == 7) f.labels.push_back({{size.width + 1.0f, 0.0f, size.width + 40.0f, 10.0f}, 0.6f, 0});
  f.jpeg = RealJpeg(size, sequence);
  return f;
}

void PutFrames(FrameStore* store, const std::string& device, uint64_t first, uint64_t last) {
  for (uint64_t s = first; s <= last; ++s) {
    auto put = store->Put(MakeFrame(device, s));
    ASSERT_TRUE(put.ok() && *put) << device << "/" << s << ": " << put.status().ToString();
  }
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string ImageName(const std::string& device, uint64_t sequence) {
  char name[96];
  std::snprintf(name, sizeof(name), "%s_%012llu", device.c_str(), static_cast<unsigned long long>(sequence));
  return name;
}

// What the store holds, by split: (device, sequence) -> the record (labels, split).
using StoredFrames = std::map<std::pair<std::string, uint64_t>, FrameRecord>;

StoredFrames ReadStore(const FrameStore& store, const std::vector<std::string>& devices) {
  StoredFrames out;
  for (const std::string& device : devices) {
    auto frames = store.Since(device, 0, std::numeric_limits<int>::max());
    EXPECT_TRUE(frames.ok()) << frames.status().ToString();
    if (!frames.ok()) continue;
    for (const FrameRecord& f : *frames) out[{device, f.sequence}] = f;
  }
  return out;
}

// The stored box clipped to the image, as [x, y, w, h]; empty when nothing is inside.
std::vector<double> ExpectedBox(const Box& b, int width, int height) {
  const double x1 = std::clamp<double>(b.x1, 0, width), x2 = std::clamp<double>(b.x2, 0, width);
  const double y1 = std::clamp<double>(b.y1, 0, height), y2 = std::clamp<double>(b.y2, 0, height);
  if (x2 <= x1 || y2 <= y1) return {};
  return {x1, y1, x2 - x1, y2 - y1};
}

struct Checked {
  int64_t images = 0, boxes = 0, dropped = 0;
};

// pycocotools' structure (ids unique, every annotation on an existing image, boxes [x,y,w,h]
// with w, h > 0 inside their image, categories present), and every image and box against
// the store: the split is the store's, the bytes are the ones stored, the boxes its labels.
// `complete`: every stored frame of the split must be there (no writes during the export).
void CheckCocoSplit(const std::string& out, const std::string& split, const StoredFrames& stored, bool complete,
                    Checked* checked) {
  SCOPED_TRACE("coco/" + split + ".json");
  json coco;
  try {
    coco = json::parse(ReadAll(out + "/coco/" + split + ".json"));
  } catch (const json::exception& e) {
    FAIL() << e.what();
  }
  ASSERT_TRUE(coco.contains("images") && coco.contains("annotations") && coco.contains("categories")) << coco.dump();
  const json& categories = coco["categories"];
  EXPECT_EQ(categories, json::parse(R"([{"id": 1, "name": "person"}, {"id": 2, "name": "car"}])"));
  std::map<int64_t, json> images;
  std::set<std::pair<std::string, uint64_t>> exported;
  for (const json& image : coco["images"]) {
    const int64_t id = image.at("id");
    EXPECT_TRUE(images.emplace(id, image).second) << "image id " << id << " twice";
    const std::string device = image.at("device_id").get<std::string>();
    const uint64_t sequence = image.at("sequence").get<uint64_t>();
    exported.insert({device, sequence});
    auto it = stored.find({device, sequence});
    if (it == stored.end()) {
      ADD_FAILURE() << "not in the store: " << image.dump();
      continue;
    }
    EXPECT_EQ(it->second.validation, split == "val") << image.dump();
    const std::string file_name = image.at("file_name").get<std::string>();
    EXPECT_EQ(file_name, ImageName(device, sequence) + ".jpg");
    EXPECT_EQ(ReadAll(out + "/images/" + split + "/" + file_name), MakeFrame(device, sequence).jpeg)
        << file_name << ": not the stored bytes";
    EXPECT_EQ(image.at("width").get<int>(), kDevices.at(device).width) << file_name;
    EXPECT_EQ(image.at("height").get<int>(), kDevices.at(device).height) << file_name;
  }
  checked->images = static_cast<int64_t>(images.size());
  for (const auto& [key, frame] : stored) {
    if (complete && frame.validation == (split == "val")) {
      EXPECT_TRUE(exported.count(key)) << key.first << "/" << key.second;
    }
  }

  std::set<int64_t> annotation_ids;
  std::map<int64_t, std::vector<json>> by_image;
  for (const json& a : coco["annotations"]) {
    EXPECT_TRUE(annotation_ids.insert(a.at("id").get<int64_t>()).second) << "annotation id twice: " << a.dump();
    auto image = images.find(a.at("image_id").get<int64_t>());
    if (image == images.end()) {
      ADD_FAILURE() << "annotation on no image: " << a.dump();
      continue;
    }
    const std::vector<double> bbox = a.at("bbox");
    ASSERT_EQ(bbox.size(), 4u) << a.dump();
    EXPECT_GT(bbox[2], 0);
    EXPECT_GT(bbox[3], 0);
    EXPECT_GE(bbox[0], 0);
    EXPECT_GE(bbox[1], 0);
    EXPECT_LE(bbox[0] + bbox[2], image->second.at("width").get<double>() + 1e-3);
    EXPECT_LE(bbox[1] + bbox[3], image->second.at("height").get<double>() + 1e-3);
    EXPECT_NEAR(a.at("area").get<double>(), bbox[2] * bbox[3], 1e-3);
    EXPECT_EQ(a.at("iscrowd"), 0);
    by_image[image->first].push_back(a);
  }
  for (const auto& [id, image] : images) {
    const FrameRecord& frame =
        stored.at({image.at("device_id").get<std::string>(), image.at("sequence").get<uint64_t>()});
    std::vector<json> expected;
    for (const Detection& d : frame.labels) {
      const std::vector<double> box = ExpectedBox(d.box, image.at("width").get<int>(), image.at("height").get<int>());
      if (box.empty()) {
        ++checked->dropped;
        continue;
      }
      expected.push_back({{"category_id", d.class_id + 1}, {"bbox", box}, {"score", d.score}});
    }
    const std::vector<json>& got = by_image[id];
    ASSERT_EQ(got.size(), expected.size()) << image.dump();
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_EQ(got[i].at("category_id"), expected[i].at("category_id"));
      EXPECT_FLOAT_EQ(got[i].at("score").get<float>(), expected[i].at("score").get<float>());
      for (int k = 0; k < 4; ++k) {
        EXPECT_NEAR(got[i]["bbox"][k].get<double>(), expected[i]["bbox"][k].get<double>(), 1e-4);
      }
    }
    checked->boxes += static_cast<int64_t>(got.size());
  }
}

// Every YOLO label file parses as "class cx cy w h" in [0, 1] and says what COCO says.
void CheckYoloSplit(const std::string& out, const std::string& split) {
  SCOPED_TRACE("yolo " + split);
  const json coco = json::parse(ReadAll(out + "/coco/" + split + ".json"));
  std::map<int64_t, std::vector<json>> by_image;
  for (const json& a : coco["annotations"]) by_image[a["image_id"].get<int64_t>()].push_back(a);
  size_t label_files = 0;
  for ([[maybe_unused]] const auto& entry : fs::directory_iterator(out + "/yolo/labels/" + split)) ++label_files;
  EXPECT_EQ(label_files, coco["images"].size());
  for (const json& image : coco["images"]) {
    const std::string name = ImageName(image["device_id"].get<std::string>(), image["sequence"].get<uint64_t>());
    EXPECT_EQ(ReadAll(out + "/yolo/images/" + split + "/" + name + ".jpg"),
              ReadAll(out + "/images/" + split + "/" + name + ".jpg"));
    std::ifstream labels(out + "/yolo/labels/" + split + "/" + name + ".txt");
    ASSERT_TRUE(labels.good()) << name;
    const double width = image["width"].get<double>(), height = image["height"].get<double>();
    const std::vector<json>& boxes = by_image[image["id"].get<int64_t>()];
    std::string line;
    size_t i = 0;
    for (; std::getline(labels, line); ++i) {
      std::istringstream fields(line);
      int cls = -1;
      double cx, cy, w, h;
      std::string rest;
      ASSERT_TRUE(fields >> cls >> cx >> cy >> w >> h) << name << ": '" << line << "'";
      EXPECT_FALSE(fields >> rest) << name << ": '" << line << "'";
      for (double v : {cx, cy, w, h}) {
        EXPECT_GE(v, 0) << line;
        EXPECT_LE(v, 1) << line;
      }
      ASSERT_LT(i, boxes.size()) << name << ": more YOLO lines than COCO boxes";
      const json& bbox = boxes[i]["bbox"];
      EXPECT_EQ(cls + 1, boxes[i]["category_id"].get<int>());
      EXPECT_NEAR(cx, (bbox[0].get<double>() + bbox[2].get<double>() / 2) / width, 2e-6);
      EXPECT_NEAR(cy, (bbox[1].get<double>() + bbox[3].get<double>() / 2) / height, 2e-6);
      EXPECT_NEAR(w, bbox[2].get<double>() / width, 2e-6);
      EXPECT_NEAR(h, bbox[3].get<double>() / height, 2e-6);
    }
    EXPECT_EQ(i, boxes.size()) << name;
  }
}

// Python's json module reads the files and checks what pycocotools' COCO() indexes on.
constexpr char kPythonCocoCheck[] = R"(
import json, sys
for path in sys.argv[1:]:
    with open(path) as f:
        d = json.load(f)
    for key in ("images", "annotations", "categories"):
        assert isinstance(d[key], list), key
    images = {im["id"]: im for im in d["images"]}
    assert len(images) == len(d["images"]), "image ids not unique"
    for im in d["images"]:
        assert isinstance(im["file_name"], str) and im["width"] > 0 and im["height"] > 0, im
    categories = {c["id"] for c in d["categories"]}
    assert categories and len(categories) == len(d["categories"]), d["categories"]
    assert all(isinstance(c["name"], str) and c["name"] for c in d["categories"])
    ids = set()
    for a in d["annotations"]:
        assert a["id"] not in ids, a
        ids.add(a["id"])
        im = images[a["image_id"]]
        x, y, w, h = a["bbox"]
        assert w > 0 and h > 0 and x >= 0 and y >= 0, a
        assert x + w <= im["width"] + 1e-3 and y + h <= im["height"] + 1e-3, (a, im)
        assert abs(a["area"] - w * h) <= 1e-3 and a["iscrowd"] == 0, a
        assert a["category_id"] in categories, a
    print(path.rsplit("/", 1)[-1], len(images), "images", len(ids), "annotations ok")
)";

class ExportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = FrameStore::Open(store_dir_.path());
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    server_store_ = std::move(store).value();
    for (const auto& [device, size] : kDevices) PutFrames(server_store_.get(), device, 1, 12);
  }

  std::unique_ptr<FrameStore> OpenReader() {
    auto reader = FrameStore::OpenReadOnly(store_dir_.path());
    EXPECT_TRUE(reader.ok()) << reader.status().ToString();
    return reader.ok() ? std::move(reader).value() : nullptr;
  }

  ExportOptions Options() const {
    ExportOptions options;
    options.out_dir = out_.path() + "/dataset";
    options.class_names = kNames;
    return options;
  }

  std::vector<std::string> AllDevices() const {
    std::vector<std::string> devices;
    for (const auto& [device, size] : kDevices) devices.push_back(device);
    return devices;
  }

  ScopedTempDir store_dir_{"export_store"};
  ScopedTempDir out_{"export_out"};
  std::unique_ptr<FrameStore> server_store_;  // the server's: open and writable throughout
};

TEST_F(ExportTest, CocoAndYoloHoldTheStoredFramesLabelsAndSplit) {
  auto reader = OpenReader();
  ASSERT_TRUE(reader);
  const ExportOptions options = Options();
  auto summary = ExportDataset(*reader, options);
  ASSERT_TRUE(summary.ok()) << summary.status().ToString();

  const StoredFrames stored = ReadStore(*server_store_, AllDevices());
  ASSERT_EQ(stored.size(), 36u);
  Checked train, val;
  CheckCocoSplit(options.out_dir, "train", stored, /*complete=*/true, &train);
  CheckCocoSplit(options.out_dir, "val", stored, /*complete=*/true, &val);
  CheckYoloSplit(options.out_dir, "train");
  CheckYoloSplit(options.out_dir, "val");

  // 3 devices x sequences 1..12: 4, 8 and 12 are held out.
  EXPECT_EQ(train.images, 27);
  EXPECT_EQ(val.images, 9);
  EXPECT_EQ(summary->train.frames, 27);
  EXPECT_EQ(summary->validation.frames, 9);
  EXPECT_EQ(summary->train.boxes, train.boxes);
  EXPECT_EQ(summary->validation.boxes, val.boxes);
  EXPECT_EQ(summary->boxes_dropped, 3) << "sequence 7's box outside the image, per device";
  EXPECT_EQ(train.dropped + val.dropped, 3);
  // Sequences 3, 6, 9 and 12 have no box (sequence % 3 == 0), per device: kept as negatives.
  EXPECT_EQ(summary->train.frames_without_boxes + summary->validation.frames_without_boxes, 12);
  EXPECT_EQ(summary->skipped_pruned, 0);
  EXPECT_NE(summary->ToString().find("exported 36 frames: train 27 with "), std::string::npos) << summary->ToString();

  const YAML::Node data = YAML::LoadFile(options.out_dir + "/yolo/data.yaml");
  EXPECT_EQ(fs::path(data["path"].as<std::string>()), fs::absolute(options.out_dir + "/yolo").lexically_normal());
  EXPECT_EQ(data["train"].as<std::string>(), "images/train");
  EXPECT_EQ(data["val"].as<std::string>(), "images/val");
  EXPECT_EQ(data["nc"].as<int>(), 2);
  EXPECT_EQ(data["names"][0].as<std::string>(), "person");
  EXPECT_EQ(data["names"][1].as<std::string>(), "car");
}

TEST_F(ExportTest, PythonsJsonReaderAcceptsTheCocoFiles) {
  if (!fs::exists("/usr/bin/python3")) GTEST_SKIP() << "no /usr/bin/python3 (scripts/setup.sh installs it)";
  auto reader = OpenReader();
  ASSERT_TRUE(reader);
  const ExportOptions options = Options();
  ASSERT_TRUE(ExportDataset(*reader, options).ok());
  const std::string script = out_.File("check_coco.py");
  std::ofstream(script) << kPythonCocoCheck;
  const auto run = sd::testing::RunCommand("/usr/bin/python3 " + script + " " + options.out_dir + "/coco/train.json " +
                                           options.out_dir + "/coco/val.json");
  EXPECT_EQ(run.exit_code, 0) << run.output;
  EXPECT_NE(run.output.find("train.json 27 images"), std::string::npos) << run.output;
  EXPECT_NE(run.output.find("val.json 9 images"), std::string::npos) << run.output;
}

TEST_F(ExportTest, OneDeviceOneSplitOneFormat) {
  auto reader = OpenReader();
  ASSERT_TRUE(reader);
  ExportOptions options = Options();
  options.devices = {"camB"};
  options.coco = false;
  options.train = false;
  auto summary = ExportDataset(*reader, options);
  ASSERT_TRUE(summary.ok()) << summary.status().ToString();
  EXPECT_EQ(summary->train.frames, 0);
  EXPECT_EQ(summary->validation.frames, 3);
  std::set<std::string> files;
  for (const auto& entry : fs::recursive_directory_iterator(options.out_dir))
    if (entry.is_regular_file()) files.insert(fs::relative(entry.path(), options.out_dir).string());
  const std::set<std::string> expected = {
      "yolo/data.yaml",
      "yolo/images/val/camB_000000000004.jpg",  "yolo/labels/val/camB_000000000004.txt",
      "yolo/images/val/camB_000000000008.jpg",  "yolo/labels/val/camB_000000000008.txt",
      "yolo/images/val/camB_000000000012.jpg",  "yolo/labels/val/camB_000000000012.txt",
  };
  EXPECT_EQ(files, expected);
  const YAML::Node data = YAML::LoadFile(options.out_dir + "/yolo/data.yaml");
  EXPECT_FALSE(data["train"]) << "no train split was exported";
  EXPECT_EQ(data["val"].as<std::string>(), "images/val");
}

TEST_F(ExportTest, WithoutClassNamesEveryLabelledClassGetsOne) {
  auto reader = OpenReader();
  ASSERT_TRUE(reader);
  ExportOptions options = Options();
  options.class_names.clear();
  options.yolo = false;
  ASSERT_TRUE(ExportDataset(*reader, options).ok());
  const json coco = json::parse(ReadAll(options.out_dir + "/coco/train.json"));
  EXPECT_EQ(coco["categories"], json::parse(R"([{"id": 1, "name": "class0"}, {"id": 2, "name": "class1"}])"));
}

TEST_F(ExportTest, ErrorsSayWhatIsWrong) {
  auto reader = OpenReader();
  ASSERT_TRUE(reader);
  ExportOptions options = Options();
  options.devices = {"camA", "nope"};
  auto unknown = ExportDataset(*reader, options);
  EXPECT_EQ(unknown.status().code(), Status::Code::kNotFound);
  EXPECT_NE(unknown.status().message().find("no device 'nope'"), std::string::npos) << unknown.status().ToString();
  EXPECT_FALSE(fs::exists(options.out_dir)) << "nothing is written for a request that cannot be met";

  options = Options();
  fs::create_directories(options.out_dir);
  std::ofstream(options.out_dir + "/old.txt") << "an earlier export";
  auto not_empty = ExportDataset(*reader, options);
  EXPECT_EQ(not_empty.status().code(), Status::Code::kFailedPrecondition) << not_empty.status().ToString();
  EXPECT_NE(not_empty.status().message().find("not empty"), std::string::npos);

  options.out_dir = out_.File("a_file");
  std::ofstream(options.out_dir) << "x";
  options.out_dir += "/dataset";
  auto under_a_file = ExportDataset(*reader, options);
  EXPECT_FALSE(under_a_file.ok());
  EXPECT_NE(under_a_file.status().message().find("a_file"), std::string::npos) << under_a_file.status().ToString();

  FaultEnv full;
  full.SetDiskFull(true, ".jpg");
  options = Options();
  options.out_dir = out_.File("full");
  options.env = &full;
  auto disk_full = ExportDataset(*reader, options);
  EXPECT_EQ(disk_full.status().code(), Status::Code::kResourceExhausted) << disk_full.status().ToString();
  EXPECT_NE(disk_full.status().message().find("No space left"), std::string::npos);
  EXPECT_FALSE(fs::exists(options.out_dir + "/coco/train.json")) << "a failed export must not look whole";

  options = Options();
  options.out_dir = out_.File("one_name");
  options.class_names = {"person"};  // camA's sequence 2 has a box of class 1
  auto unnamed = ExportDataset(*reader, options);
  EXPECT_EQ(unnamed.status().code(), Status::Code::kInvalidArgument);
  EXPECT_NE(unnamed.status().message().find("class 1"), std::string::npos) << unnamed.status().ToString();

  auto no_store = FrameStore::OpenReadOnly(out_.File("no_store"));
  EXPECT_EQ(no_store.status().code(), Status::Code::kNotFound);
  EXPECT_NE(no_store.status().message().find("no frame store"), std::string::npos) << no_store.status().ToString();
}

// Pauses the export at its first output file until the test lets it go on: the export is
// then mid-way (the first device listed, its first image read), and the server writes.
class PausingEnv : public EnvWrapper {
 public:
  explicit PausingEnv(std::function<void()> at_pause) : EnvWrapper(Env::Default()), at_pause_(std::move(at_pause)) {}
  StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path) override {
    if (!paused_) {
      paused_ = true;
      at_pause_();
    }
    return EnvWrapper::NewWritableFile(path);
  }

 private:
  std::function<void()> at_pause_;
  bool paused_ = false;  // only the export's thread writes through this Env
};

TEST_F(ExportTest, TheServerKeepsWritingWhileAnExportRuns) {
  // The server's writer: camB frames, one after the other, until the export is done.
  std::mutex mu;
  std::condition_variable stored_more;
  int64_t written = 0;
  Status writer_error;
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    for (uint64_t sequence = 13; !stop; ++sequence) {
      auto put = server_store_->Put(MakeFrame("camB", sequence));
      std::lock_guard<std::mutex> lock(mu);
      if (!put.ok()) {
        writer_error = put.status();
        stored_more.notify_all();
        return;
      }
      ++written;
      stored_more.notify_all();
    }
  });

  const StoredFrames before = ReadStore(*server_store_, AllDevices());
  StoredFrames camA_pruned;
  auto at_pause = [&] {
    // Mid-export: the server stores more frames (waits for nothing the export holds) ...
    std::unique_lock<std::mutex> lock(mu);
    const int64_t target = written + 5;
    EXPECT_TRUE(stored_more.wait_for(lock, std::chrono::seconds(60),
                                     [&] { return written >= target || !writer_error.ok(); }))
        << "the server could not store frames while the export ran";
    lock.unlock();
    // ... and its retention deletes frames of the device the export has listed already.
    const StoredFrames camA = ReadStore(*server_store_, {"camA"});
    auto pruned = server_store_->Prune("camA", RetentionBounds{/*max_frames=*/6, 0, 0}, PruneKeep{2, 1});
    ASSERT_TRUE(pruned.ok()) << pruned.status().ToString();
    const StoredFrames camA_left = ReadStore(*server_store_, {"camA"});
    for (const auto& [key, frame] : camA)
      if (!camA_left.count(key)) camA_pruned[key] = frame;
  };
  PausingEnv env(at_pause);
  auto reader = OpenReader();
  ASSERT_TRUE(reader);
  ExportOptions options = Options();
  options.env = &env;
  auto summary = ExportDataset(*reader, options);
  stop = true;
  writer.join();
  ASSERT_TRUE(summary.ok()) << summary.status().ToString();
  EXPECT_TRUE(writer_error.ok()) << writer_error.ToString();
  ASSERT_EQ(camA_pruned.size(), 6u);

  // camA was listed before the pause and its first frame read: the frames retention deleted
  // after that are skipped and counted. camB was listed after the writer's frames: whatever
  // of them the listing saw is exported whole. cam_x.2 is untouched.
  std::set<std::pair<std::string, uint64_t>> expected_skipped;
  for (const auto& [key, frame] : camA_pruned)
    if (key.second != 1) expected_skipped.insert(key);
  EXPECT_EQ(summary->skipped_pruned, static_cast<int64_t>(expected_skipped.size()));
  const StoredFrames after = ReadStore(*server_store_, AllDevices());
  StoredFrames exportable = after;
  if (camA_pruned.count({"camA", 1})) exportable[{"camA", 1}] = camA_pruned.at({"camA", 1});
  std::set<std::pair<std::string, uint64_t>> exported;
  for (const std::string split : {"train", "val"}) {
    const json coco = json::parse(ReadAll(options.out_dir + "/coco/" + split + ".json"));
    for (const json& image : coco["images"])
      exported.insert({image["device_id"].get<std::string>(), image["sequence"].get<uint64_t>()});
    Checked checked;
    CheckCocoSplit(options.out_dir, split, exportable, /*complete=*/false, &checked);
  }
  for (const auto& [key, frame] : before) {
    const bool skipped = expected_skipped.count(key) > 0;
    EXPECT_EQ(exported.count(key) > 0, !skipped) << key.first << "/" << key.second;
  }
  int64_t new_frames = 0;
  for (const auto& key : exported) new_frames += before.count(key) == 0;
  EXPECT_GE(new_frames, 5) << "camB's frames stored during the pause, before camB was listed";
}

TEST_F(ExportTest, TheBinaryExportsBesideTheServerAndFailsClearly) {
  const std::string out = out_.File("bin");
  auto run = sd::testing::RunBinary(
      "streamdistill-export", "--store " + store_dir_.path() + " --out " + out + " --device camA --device cam_x.2");
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_NE(run.output.find("exported 24 frames: train 18 with "), std::string::npos) << run.output;
  // No config: the classes are named after the labels' ids.
  const json coco = json::parse(ReadAll(out + "/coco/val.json"));
  EXPECT_EQ(coco["categories"][1]["name"], "class1");
  CheckYoloSplit(out, "train");
  CheckYoloSplit(out, "val");

  // With the server's config: its storage_dir and class names.
  const std::string config = out_.File("server.yaml");
  std::ofstream(config) << "storage_dir: " << store_dir_.path() << "\ndevices: {camA: {token: camA-token-0123}}\n"
                        << "student: {classes: 2, class_names: [person, car]}\n";
  const std::string out2 = out_.File("bin2");
  run = sd::testing::RunBinary("streamdistill-export",
                               "--config " + config + " --out " + out2 + " --format coco --split train");
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_NE(run.output.find("exported 27 frames"), std::string::npos) << run.output;
  const StoredFrames all = ReadStore(*server_store_, AllDevices());
  Checked train;
  CheckCocoSplit(out2, "train", all, /*complete=*/true, &train);
  EXPECT_EQ(train.images, 27);
  EXPECT_FALSE(fs::exists(out2 + "/coco/val.json"));
  EXPECT_FALSE(fs::exists(out2 + "/yolo"));

  run = sd::testing::RunBinary("streamdistill-export", "--store " + out_.File("missing") + " --out " + out_.File("x"));
  EXPECT_EQ(run.exit_code, 1) << run.output;
  EXPECT_NE(run.output.find("no frame store here"), std::string::npos) << run.output;
  run = sd::testing::RunBinary("streamdistill-export",
                               "--store " + store_dir_.path() + " --device camZ --out " + out_.File("x"));
  EXPECT_EQ(run.exit_code, 1) << run.output;
  EXPECT_NE(run.output.find("no device 'camZ'"), std::string::npos) << run.output;
  run = sd::testing::RunBinary("streamdistill-export", "--store " + store_dir_.path() + " --out " + out);
  EXPECT_EQ(run.exit_code, 1) << run.output;
  EXPECT_NE(run.output.find("not empty"), std::string::npos) << run.output;
  run = sd::testing::RunBinary("streamdistill-export", "--out " + out_.File("x"));
  EXPECT_EQ(run.exit_code, 2) << run.output;
  EXPECT_NE(run.output.find("--config"), std::string::npos) << run.output;
  run = sd::testing::RunBinary("streamdistill-export", "--store " + store_dir_.path() + " --format voc --out x");
  EXPECT_EQ(run.exit_code, 2) << run.output;
}

}  // namespace
}  // namespace sd
