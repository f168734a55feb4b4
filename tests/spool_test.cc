#include "edge/spool.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <thread>

#include <gtest/gtest.h>

#include "edge/frame_sequence.h"
#include "streamdistill.pb.h"
#include "tests/scoped_temp_dir.h"

namespace sd {
namespace {

namespace fs = std::filesystem;

// A fresh directory per test, removed afterwards.
class TempDir : public testing::ScopedTempDir {
 public:
  TempDir() : ScopedTempDir("sd_spool_test") {}
};

std::unique_ptr<Spool> OpenOrDie(const SpoolOptions& options) {
  StatusOr<std::unique_ptr<Spool>> s = Spool::Open(options);
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  return s.ok() ? std::move(*s) : nullptr;
}

std::string Payload(uint64_t seq, size_t size = 100) {
  std::string p(size, '\0');
  for (size_t i = 0; i < size; ++i) p[i] = static_cast<char>(seq * 7 + i);
  return p;
}

// Pushes a frame under a fresh sequence; returns the sequence.
uint64_t PushNew(Spool* spool, size_t size = 100) {
  const uint64_t seq = spool->NextSequence();
  EXPECT_TRUE(spool->Push(seq, Payload(seq, size)).ok());
  return seq;
}

std::vector<std::string> FrameFiles(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() == ".frame") out.push_back(e.path().filename().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

TEST(SpoolTest, PushReadRemove) {
  TempDir dir;
  std::unique_ptr<Spool> spool = OpenOrDie({dir.File("spool")});
  ASSERT_NE(spool, nullptr);
  EXPECT_EQ(spool->pending_count(), 0);
  const uint64_t a = spool->NextSequence();
  const uint64_t b = spool->NextSequence();
  EXPECT_EQ(a, 1u);
  EXPECT_EQ(b, 2u);
  const std::string binary("\x00\x01\xff\n\r bytes \x00", 14);
  ASSERT_TRUE(spool->Push(a, binary).ok());
  ASSERT_TRUE(spool->Push(b, "").ok());  // an empty message is still a frame
  EXPECT_EQ(spool->pending_count(), 2);
  EXPECT_EQ(spool->pending_bytes(), 14);

  StatusOr<std::string> got = spool->Read(a);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(*got, binary);
  got = spool->Read(b);
  ASSERT_TRUE(got.ok());
  EXPECT_TRUE(got->empty());

  // Pushing a pending sequence again or sequence 0 is refused.
  EXPECT_EQ(spool->Push(a, "x").code(), Status::Code::kAlreadyExists);
  EXPECT_EQ(spool->Push(0, "x").code(), Status::Code::kInvalidArgument);

  ASSERT_TRUE(spool->Remove(a).ok());
  EXPECT_EQ(spool->Read(a).status().code(), Status::Code::kNotFound);
  EXPECT_TRUE(spool->Remove(a).ok());    // twice: fine
  EXPECT_TRUE(spool->Remove(999).ok());  // never pushed: fine
  EXPECT_EQ(spool->Pending(), std::vector<uint64_t>{b});
  EXPECT_EQ(spool->pending_bytes(), 0);
  ASSERT_TRUE(spool->Remove(b).ok());
  EXPECT_TRUE(FrameFiles(dir.File("spool")).empty());
  EXPECT_EQ(spool->dropped(), 0);
}

TEST(SpoolTest, PendingIsAscendingWhateverThePushOrder) {
  TempDir dir;
  std::unique_ptr<Spool> spool = OpenOrDie({dir.path()});
  for (uint64_t seq : {5, 3, 9, 1, 7}) ASSERT_TRUE(spool->Push(seq, Payload(seq)).ok());
  EXPECT_EQ(spool->Pending(), (std::vector<uint64_t>{1, 3, 5, 7, 9}));
  EXPECT_EQ(spool->NextPendingAfter(0), 1u);
  EXPECT_EQ(spool->NextPendingAfter(3), 5u);
  EXPECT_EQ(spool->NextPendingAfter(4), 5u);
  EXPECT_FALSE(spool->NextPendingAfter(9).has_value());
  // Sequences pushed by hand are not handed out again.
  EXPECT_EQ(spool->NextSequence(), 10u);
}

TEST(SpoolTest, BoundsDropTheOldest) {
  TempDir dir;
  SpoolOptions options{dir.path()};
  options.max_frames = 5;
  options.max_bytes = 1000;
  std::unique_ptr<Spool> spool = OpenOrDie(options);
  std::vector<uint64_t> seqs;
  for (int i = 0; i < 8; ++i) seqs.push_back(PushNew(spool.get(), 100));
  // Frame bound: the three oldest went.
  EXPECT_EQ(spool->Pending(), std::vector<uint64_t>(seqs.begin() + 3, seqs.end()));
  EXPECT_EQ(spool->dropped(), 3);
  EXPECT_EQ(FrameFiles(dir.path()).size(), 5u);
  EXPECT_EQ(spool->Read(seqs[0]).status().code(), Status::Code::kNotFound);

  // Byte bound: a 700-byte frame pushes out just enough old ones to fit (5*100 + 700 > 1000).
  const uint64_t big = PushNew(spool.get(), 700);
  EXPECT_EQ(spool->Pending(), (std::vector<uint64_t>{seqs[5], seqs[6], seqs[7], big}));
  EXPECT_EQ(spool->pending_bytes(), 1000);
  EXPECT_EQ(spool->dropped(), 5);
  StatusOr<std::string> got = spool->Read(big);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(*got, Payload(big, 700));

  // A frame bigger than the whole spool is refused and drops nothing.
  const uint64_t huge = spool->NextSequence();
  EXPECT_EQ(spool->Push(huge, std::string(1001, 'h')).code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(spool->pending_count(), 4);
  EXPECT_EQ(spool->dropped(), 5);
}

TEST(SpoolTest, ReopenKeepsPendingFramesAndSequenceKeepsRising) {
  TempDir dir;
  SpoolOptions options{dir.File("s")};
  uint64_t last = 0;
  {
    std::unique_ptr<Spool> spool = OpenOrDie(options);
    for (int i = 0; i < 4; ++i) last = PushNew(spool.get());
    ASSERT_TRUE(spool->Remove(1).ok());
  }
  {
    std::unique_ptr<Spool> spool = OpenOrDie(options);
    EXPECT_EQ(spool->Pending(), (std::vector<uint64_t>{2, 3, 4}));
    EXPECT_EQ(spool->pending_bytes(), 300);
    for (uint64_t seq : spool->Pending()) {
      StatusOr<std::string> got = spool->Read(seq);
      ASSERT_TRUE(got.ok()) << got.status().ToString();
      EXPECT_EQ(*got, Payload(seq));
    }
    const uint64_t next = spool->NextSequence();
    EXPECT_GT(next, last);
    last = next;
    // Empty the spool entirely: the counter must still not go back.
    for (uint64_t seq : spool->Pending()) ASSERT_TRUE(spool->Remove(seq).ok());
    EXPECT_EQ(spool->pending_count(), 0);
  }
  {
    std::unique_ptr<Spool> spool = OpenOrDie(options);
    EXPECT_EQ(spool->pending_count(), 0);
    const uint64_t next = spool->NextSequence();
    EXPECT_GT(next, last);
    // The server's view can push the counter up, never down.
    spool->AdvanceSequence(next + 1000);
    EXPECT_EQ(spool->NextSequence(), next + 1000);
    spool->AdvanceSequence(50);
    EXPECT_EQ(spool->NextSequence(), next + 1001);
    last = next + 1001;
  }
  {
    std::unique_ptr<Spool> spool = OpenOrDie(options);
    const uint64_t next = spool->NextSequence();
    EXPECT_GT(next, last);
    // Numbers come from leases: a restart may skip some, never more than one lease.
    EXPECT_LE(next, last + Spool::kSequenceLease);
  }
  // A lost or garbled counter file falls back to the pending frames.
  {
    std::unique_ptr<Spool> spool = OpenOrDie(options);
    ASSERT_TRUE(spool->Push(5000, "x").ok());
  }
  std::ofstream(fs::path(options.dir) / "sequence", std::ios::trunc) << "garbage";
  {
    std::unique_ptr<Spool> spool = OpenOrDie(options);
    EXPECT_EQ(spool->NextSequence(), 5001u);
  }
  // Many numbers in one run, then a restart: still rising.
  {
    std::unique_ptr<Spool> spool = OpenOrDie(options);
    for (uint64_t i = 0; i < 3 * Spool::kSequenceLease + 5; ++i) last = spool->NextSequence();
  }
  {
    std::unique_ptr<Spool> spool = OpenOrDie(options);
    EXPECT_GT(spool->NextSequence(), last);
  }
}

// A counter file or frame name beyond the range the server stores (INT64_MAX) is garbled or
// foreign: the counter must not wrap to 0 and hand out numbers again (found by fuzz/spool_fuzz.cc).
TEST(SpoolTest, OutOfRangeSequencesDoNotWrapTheCounter) {
  TempDir dir;
  SpoolOptions options{dir.path()};
  std::ofstream(dir.File("sequence"), std::ios::trunc) << "18446744073709551615\n";
  std::ofstream(dir.File("18446744073709551615.frame"), std::ios::binary) << "foreign";
  std::unique_ptr<Spool> spool = OpenOrDie(options);
  EXPECT_EQ(spool->pending_count(), 0);
  const uint64_t first = spool->NextSequence();
  EXPECT_EQ(first, 1u);
  EXPECT_GT(spool->NextSequence(), first);
  EXPECT_EQ(spool->Push(Spool::kMaxSequence + 1, "x").code(), Status::Code::kInvalidArgument);
  spool->AdvanceSequence(std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(spool->NextSequence(), Spool::kMaxSequence);
}

TEST(SpoolTest, ReopenWithSmallerBoundsDropsOldest) {
  TempDir dir;
  SpoolOptions options{dir.path()};
  {
    std::unique_ptr<Spool> spool = OpenOrDie(options);
    for (int i = 0; i < 6; ++i) PushNew(spool.get());
  }
  options.max_frames = 2;
  std::unique_ptr<Spool> spool = OpenOrDie(options);
  EXPECT_EQ(spool->Pending(), (std::vector<uint64_t>{5, 6}));
  EXPECT_EQ(spool->dropped(), 4);
  EXPECT_EQ(FrameFiles(dir.path()).size(), 2u);
}

TEST(SpoolTest, CorruptAndPartialFilesAreIgnoredAtOpen) {
  TempDir dir;
  SpoolOptions options{dir.path()};
  {
    std::unique_ptr<Spool> spool = OpenOrDie(options);
    for (int i = 0; i < 3; ++i) PushNew(spool.get(), 200);
  }
  const std::vector<std::string> files = FrameFiles(dir.path());
  ASSERT_EQ(files.size(), 3u);
  // A crash mid-write: a temp file that never got renamed.
  std::ofstream(dir.File("00000000000000000004.frame.tmp"), std::ios::binary) << "half a fr";
  // A frame file cut short (e.g. copied by hand): its header says more than it holds.
  fs::resize_file(dir.File(files[1]), 150);
  // Garbage with a frame's name, and an empty one.
  std::ofstream(dir.File("00000000000000000007.frame"), std::ios::binary) << "not a spool frame at all, really";
  std::ofstream(dir.File("00000000000000000008.frame"), std::ios::binary);
  // Files that are not ours stay untouched.
  std::ofstream(dir.File("README"), std::ios::binary) << "hello";
  std::ofstream(dir.File("12.frame"), std::ios::binary) << "wrong name width";

  std::unique_ptr<Spool> spool = OpenOrDie(options);
  EXPECT_EQ(spool->Pending(), (std::vector<uint64_t>{1, 3}));
  EXPECT_EQ(spool->pending_bytes(), 400);
  EXPECT_FALSE(fs::exists(dir.File("00000000000000000004.frame.tmp")));
  EXPECT_FALSE(fs::exists(dir.File(files[1])));
  EXPECT_FALSE(fs::exists(dir.File("00000000000000000007.frame")));
  EXPECT_TRUE(fs::exists(dir.File("README")));
  EXPECT_TRUE(fs::exists(dir.File("12.frame")));
  StatusOr<std::string> got = spool->Read(3);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(*got, Payload(3, 200));
  EXPECT_GT(spool->NextSequence(), 3u);

  // Bit rot inside a payload (same size): Open cannot tell cheaply, Read can.
  {
    std::fstream f(dir.File(files[0]), std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(100);
    f.put('\x42');
  }
  StatusOr<std::string> rotten = spool->Read(1);
  ASSERT_FALSE(rotten.ok());
  EXPECT_EQ(rotten.status().code(), Status::Code::kDataLoss) << rotten.status().ToString();
  EXPECT_TRUE(spool->Remove(1).ok());
}

TEST(SpoolTest, BadOptionsAreRefused) {
  EXPECT_EQ(Spool::Open({""}).status().code(), Status::Code::kInvalidArgument);
  TempDir dir;
  SpoolOptions o{dir.path()};
  o.max_frames = 0;
  EXPECT_EQ(Spool::Open(o).status().code(), Status::Code::kInvalidArgument);
  o.max_frames = 1;
  o.max_bytes = 0;
  EXPECT_EQ(Spool::Open(o).status().code(), Status::Code::kInvalidArgument);
  // A regular file where the directory should be.
  std::ofstream(dir.File("file")) << "x";
  EXPECT_FALSE(Spool::Open({dir.File("file")}).ok());
}

TEST(SpoolTest, CaptureAndNetworkThreadsTogether) {
  TempDir dir;
  SpoolOptions options{dir.path()};
  options.max_frames = 50;
  std::unique_ptr<Spool> spool = OpenOrDie(options);
  const int frames = 150;
  std::atomic<bool> done{false};
  std::atomic<int> read_ok{0}, read_errors{0};
  std::thread network([&] {
    while (!done || spool->pending_count() > 0) {
      for (uint64_t seq : spool->Pending()) {
        StatusOr<std::string> got = spool->Read(seq);
        if (got.ok()) {
          if (*got == Payload(seq)) ++read_ok;
          else ++read_errors;
        } else if (got.status().code() != Status::Code::kNotFound) {
          ++read_errors;  // NotFound: dropped meanwhile, fine
        }
        EXPECT_TRUE(spool->Remove(seq).ok());
      }
    }
  });
  std::vector<uint64_t> pushed;
  for (int i = 0; i < frames; ++i) pushed.push_back(PushNew(spool.get()));
  done = true;
  network.join();
  EXPECT_EQ(read_errors, 0);
  // Every frame was delivered or dropped (a frame dropped after it was read counts twice).
  EXPECT_GE(read_ok + spool->dropped(), frames);
  EXPECT_LE(read_ok, frames);
  EXPECT_GT(read_ok, 0);
  EXPECT_EQ(spool->pending_count(), 0);
  EXPECT_TRUE(FrameFiles(dir.path()).empty());
  for (size_t i = 1; i < pushed.size(); ++i) ASSERT_GT(pushed[i], pushed[i - 1]);
}

// A sampled frame is serialized once (EncodeSampledFrame); the spool's sequence is appended to
// those bytes instead of parsing and serializing the frame again.
TEST(FrameSequenceTest, AppendedSequenceParsesAsTheFrameWithItsSequence) {
  streamdistill::v1::SampledFrame frame;
  frame.set_frame_index(1234);
  frame.set_capture_time_s(41.5);
  frame.set_jpeg(std::string(5000, '\xff'));
  frame.set_source_width(1920);
  frame.set_source_height(1080);
  frame.set_image_score(0.75f);
  for (int i = 0; i < 32; ++i) frame.add_embedding(0.01f * i);
  frame.set_model_version(7);
  for (uint64_t sequence : {uint64_t{1}, uint64_t{127}, uint64_t{128}, uint64_t{300000}, Spool::kMaxSequence}) {
    std::string bytes = frame.SerializeAsString();
    SetFrameSequence(sequence, &bytes);
    streamdistill::v1::SampledFrame parsed;
    ASSERT_TRUE(parsed.ParseFromString(bytes)) << sequence;
    EXPECT_EQ(parsed.sequence(), sequence);
    streamdistill::v1::SampledFrame expected = frame;
    expected.set_sequence(sequence);
    // The same message: serialized again, both come out byte for byte the same.
    EXPECT_EQ(parsed.SerializeAsString(), expected.SerializeAsString()) << sequence;
  }
}

}  // namespace
}  // namespace sd
