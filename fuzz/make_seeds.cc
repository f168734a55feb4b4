// Writes the seed corpora of the fuzz targets with the real writers (EncodeUpdate,
// Spool::Push, StudentModel::SerializeWeights, SaveLabels), in each target's input layout
// (fuzz/*_fuzz.cc), plus a few edge cases. The committed fuzz/corpus/ came from
//   build-asan/fuzz-seeds fuzz/corpus
// Rerun it when a format changes; a target's finds (regressions) live beside these seeds.
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include <opencv2/imgcodecs.hpp>

#include "common/teacher/label_cache.h"
#include "common/link/model_update.h"
#include "common/link/update_codec.h"
#include "edge/spool.h"
#include "fuzz/fuzz_util.h"
#include "streamdistill.pb.h"
#include "tests/scoped_temp_dir.h"

namespace fs = std::filesystem;
using sd::fuzz::WriteFile;

namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string Byte(int b) { return std::string(1, static_cast<char>(b)); }

std::string Le(uint64_t v, int bytes) {
  std::string s;
  for (int i = 0; i < bytes; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  return s;
}

// update_decode's chunk records for `payload` cut into `pieces`.
std::string ChunkRecords(uint8_t version, const std::string& payload, size_t pieces) {
  std::string out;
  sd::ModelUpdate update;
  update.payload = payload;
  const size_t step = payload.size() / pieces + 1;
  const uint32_t count = sd::UpdateChunkCount(update, step);
  for (uint32_t i = 0; i < count; ++i) {
    const std::string data = sd::MakeUpdateChunk(update, i, step).data();
    out += Byte(version) + Byte(static_cast<int>(i)) + Byte(static_cast<int>(count)) + Le(payload.size(), 4) +
           Le(data.size(), 2) + data;
  }
  return out;
}

void UpdateSeeds(const fs::path& dir) {
  for (int e = 0; e < 4; ++e) {
    const sd::UpdateEncoding encoding = sd::fuzz::kUpdateEncodings[e];
    for (size_t n : {16, 64}) {
      const std::vector<float> base = sd::fuzz::UpdateBase(n);
      std::vector<float> target = base;
      // n=16: most weights change (sparse picks the bitmask); n=64: two do (varint gaps).
      for (size_t i = 0; i < n; ++i)
        if (n == 16 ? i % 4 != 0 : i % 31 == 5) target[i] += 0.01f * static_cast<float>(i + 1);
      const std::vector<size_t> sizes = {n / 2, n - n / 2};
      for (bool zstd : {false, true}) {
        if (zstd && e != 0) continue;  // one compressed seed is enough (zstd packs any body)
        std::vector<float> t = target;
        if (zstd) std::fill(t.begin(), t.end(), 0.5f);  // compressible
        const std::string payload = sd::EncodeUpdate(encoding, base, t, sizes, zstd).value();
        const std::string name = std::string(sd::UpdateEncodingName(encoding)) + "-n" + std::to_string(n) + (zstd ? "-zstd" : "");
        WriteFile((dir / name).string(), Byte(e) + Byte(static_cast<int>(n - 1)) + payload);
        if (n == 16) {
          WriteFile((dir / (name + "-chunks")).string(),
                    Byte(e | 4) + Byte(static_cast<int>(n - 1)) + ChunkRecords(5, payload, 3));
        }
      }
    }
  }
  // Edge cases: an empty payload, a chunk sequence that restarts after a wrong index.
  WriteFile((dir / "empty").string(), Byte(0) + Byte(15));
  const std::vector<float> base = sd::fuzz::UpdateBase(4);
  const std::string p = sd::EncodeUpdate(sd::UpdateEncoding::kFullFp32, base, base, {}, false).value();
  const std::string restart = Byte(1) + Byte(1) + Byte(2) + Le(p.size(), 4) + Le(3, 2) + p.substr(0, 3);
  WriteFile((dir / "chunks-restart").string(), Byte(4) + Byte(3) + restart + ChunkRecords(2, p, 2));
}

void SpoolSeeds(const fs::path& dir) {
  sd::testing::ScopedTempDir tmp("sd_fuzz_seeds");
  sd::SpoolOptions options;
  options.dir = tmp.path();
  auto spool = sd::Spool::Open(options).value();
  const uint64_t seq = spool->NextSequence();  // writes the counter file
  (void)seq;
  if (!spool->Push(7, "an encoded frame message: jpeg bytes, timestamps, camera id").ok()) std::abort();
  const std::string counter = ReadFile(tmp.File("sequence"));
  const std::string frame = ReadFile(tmp.File("00000000000000000007.frame"));
  auto seed = [&](const std::string& name, int mode, const std::string& seqfile, const std::string& framefile) {
    WriteFile((dir / name).string(), Byte(mode) + Byte(static_cast<int>(seqfile.size())) + seqfile + framefile);
  };
  seed("frame-and-counter", 0x03, counter, frame);
  seed("frame-fixed-header", 0x0a, "", frame);
  seed("torn-frame", 0x02, "", frame.substr(0, frame.size() - 5));
  seed("tight-bounds", 0x13, counter, frame);
  seed("temp-leftover", 0x06, "", frame);
  seed("counter-garbled", 0x01, "12x\n", "");
  seed("counter-largest", 0x01, "18446744073709551615\n", "");
  seed("frame-largest-sequence", 0x22, "", frame);
}

void CheckpointSeeds(const fs::path& dir) {
  const auto model = sd::StudentModel::Create(sd::fuzz::TinyStudent(), 3).value();
  const std::string bytes = model->SerializeWeights();
  WriteFile((dir / "tiny").string(), bytes);
  WriteFile((dir / "tiny-truncated").string(), bytes.substr(0, bytes.size() / 3));
  sd::StudentArchitecture conv = sd::fuzz::TinyStudent();
  conv.block = sd::StudentBlock::kConv;
  WriteFile((dir / "other-architecture").string(), sd::StudentModel::Create(conv, 3).value()->SerializeWeights());
}

void LabelSeeds(const fs::path& dir) {
  sd::Detection a;
  a.box = {10.5f, 20.25f, 50.0f, 80.125f};
  a.score = 0.875f;
  sd::Detection b = a;
  b.class_id = 2;
  b.score = -1.5e-7f;
  b.box.x1 = -3.0f;
  const std::vector<sd::Detections> labels = {{}, {a, b}, {a}};
  auto save = [&](const std::string& name, const std::vector<sd::Detections>& l) {
    if (!sd::SaveLabels((dir / name).string(), sd::fuzz::kLabelKey, l).ok()) std::abort();
  };
  save("three-frames", labels);
  save("no-frames", {});
  sd::Detection nan = a;
  nan.score = std::numeric_limits<float>::quiet_NaN();
  nan.box.x2 = std::numeric_limits<float>::infinity();
  save("nan-and-inf", {{nan}});
  std::string text = ReadFile((dir / "three-frames").string());
  WriteFile((dir / "truncated").string(), text.substr(0, text.size() - 7));
  text.replace(text.find(" 1 "), 3, " 2 ");
  WriteFile((dir / "other-version").string(), text);
}

std::string Jpeg(int width, int height) {
  cv::Mat image(height, width, CV_8UC3, cv::Scalar(60, 120, 180));
  std::vector<uchar> bytes;
  if (!cv::imencode(".jpg", image, bytes)) std::abort();
  return std::string(bytes.begin(), bytes.end());
}

// Real JPEGs, and the header cases the server must refuse: another format, a truncated one,
// and a bomb (a tiny JPEG whose frame header claims 30000x30000).
void JpegHeaderSeeds(const fs::path& dir) {
  const std::string small = Jpeg(16, 16);
  WriteFile((dir / "16x16").string(), small);
  WriteFile((dir / "1x1").string(), Jpeg(1, 1));
  WriteFile((dir / "truncated").string(), small.substr(0, 40));
  WriteFile((dir / "png-magic").string(), std::string("\x89PNG\r\n\x1a\n", 8) + std::string(16, '\0'));
  std::string bomb = small;
  const size_t sof = bomb.find("\xff\xc0");
  if (sof == std::string::npos) std::abort();
  bomb[sof + 5] = bomb[sof + 7] = static_cast<char>(30000 >> 8);
  bomb[sof + 6] = bomb[sof + 8] = static_cast<char>(30000 & 0xff);
  WriteFile((dir / "bomb-30000").string(), bomb);
}

// edge_session's records: [u16 length LE][an EdgeMessage].
std::string Record(const streamdistill::v1::EdgeMessage& m) {
  const std::string bytes = m.SerializeAsString();
  return Le(bytes.size(), 2) + bytes;
}

void EdgeSessionSeeds(const fs::path& dir) {
  streamdistill::v1::EdgeMessage frame;
  frame.mutable_frame()->set_sequence(1);
  frame.mutable_frame()->set_frame_index(10);
  frame.mutable_frame()->set_capture_time_s(1.5);
  frame.mutable_frame()->set_jpeg(Jpeg(32, 24));
  frame.mutable_frame()->set_source_width(32);
  frame.mutable_frame()->set_source_height(24);
  frame.mutable_frame()->set_image_score(0.5f);
  frame.mutable_frame()->add_embedding(0.25f);
  streamdistill::v1::EdgeMessage resend = frame;  // a duplicate, then the next one
  streamdistill::v1::EdgeMessage second = frame;
  second.mutable_frame()->set_sequence(2);
  streamdistill::v1::EdgeMessage request;
  request.mutable_model_request()->set_have_version(0);
  request.mutable_model_request()->set_full(true);
  streamdistill::v1::EdgeMessage result;
  result.mutable_update_result()->set_version(1);
  result.mutable_update_result()->set_message("could not apply\nversion 1");
  streamdistill::v1::EdgeMessage hello;
  hello.mutable_hello()->set_device_id("cam1");
  hello.mutable_hello()->set_token("wrong");
  WriteFile((dir / "frames").string(), Byte(1) + Record(frame) + Record(resend) + Record(second));
  WriteFile((dir / "requests").string(), Byte(1) + Record(request) + Record(request) + Record(request) + Record(result));
  WriteFile((dir / "hello-twice").string(), Byte(1) + Record(hello));
  WriteFile((dir / "no-hello").string(), Byte(0) + Record(frame));
  WriteFile((dir / "malformed").string(), Byte(1) + Le(4, 2) + std::string("\x12\xff\xff\x0f", 4));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: fuzz-seeds OUT_DIR (writes OUT_DIR/<target>/...)\n";
    return 2;
  }
  sd::fuzz::QuietLogs();
  const fs::path out = argv[1];
  for (const char* t : {"update_decode", "spool", "checkpoint", "label_cache", "jpeg_header", "edge_session"})
    fs::create_directories(out / t);
  JpegHeaderSeeds(out / "jpeg_header");
  EdgeSessionSeeds(out / "edge_session");
  UpdateSeeds(out / "update_decode");
  SpoolSeeds(out / "spool");
  CheckpointSeeds(out / "checkpoint");
  LabelSeeds(out / "label_cache");
  std::cout << "seeds written under " << out << "\n";
  return 0;
}
