// The edge spool's files as a restart finds them (edge/spool.h): a frame file and the
// `sequence` counter file, in a fresh directory per input; Spool::Open, then every pending
// frame is read, a new frame pushed and everything removed.
//
// Input: [u8 mode][u8 k][k bytes: the sequence file][rest: the frame file]
//   mode & 1   write the sequence file
//   mode & 2   write the rest as 00000000000000000007.frame
//   mode & 4   also leave a .tmp file behind (a crashed write)
//   mode & 8   fix the frame file's header (magic, size, checksum) so Read gets to the payload
//   mode & 16  tight bounds (1 frame, 64 bytes), so Open drops frames
//   mode & 32  name the frame file with the largest sequence, 18446744073709551615
// Properties: Open never fails on bad files (it drops them); the bounds hold; NextSequence
// rises and is above every pending frame; a pushed frame reads back.
#include <filesystem>
#include <string>

#include "edge/spool.h"
#include "fuzz/fuzz_util.h"
#include "tests/scoped_temp_dir.h"

namespace {

uint64_t Fnv1a64(const std::string& s, size_t from) {
  uint64_t hash = 14695981039346656037ULL;
  for (size_t i = from; i < s.size(); ++i) hash = (hash ^ static_cast<unsigned char>(s[i])) * 1099511628211ULL;
  return hash;
}

void PutLe64(std::string* s, size_t at, uint64_t v) {
  for (int i = 0; i < 8; ++i) (*s)[at + i] = static_cast<char>((v >> (8 * i)) & 0xff);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  sd::fuzz::QuietLogs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const uint8_t mode = data[0];
  const size_t k = std::min<size_t>(data[1], size - 2);
  const std::string sequence(reinterpret_cast<const char*>(data + 2), k);
  std::string frame(reinterpret_cast<const char*>(data + 2 + k), size - 2 - k);
  if ((mode & 8) && frame.size() >= 24) {
    frame.replace(0, 8, "SDSPOOL1");
    PutLe64(&frame, 8, frame.size() - 24);
    PutLe64(&frame, 16, Fnv1a64(frame, 24));
  }

  sd::testing::ScopedTempDir dir("sd_fuzz_spool");
  if (mode & 1) sd::fuzz::WriteFile(dir.File("sequence"), sequence);
  if (mode & 2) {
    const char* name = (mode & 32) ? "18446744073709551615.frame" : "00000000000000000007.frame";
    sd::fuzz::WriteFile(dir.File(name), frame);
  }
  if (mode & 4) sd::fuzz::WriteFile(dir.File("00000000000000000009.frame.tmp"), frame);

  sd::SpoolOptions options;
  options.dir = dir.path();
  if (mode & 16) {
    options.max_frames = 1;
    options.max_bytes = 64;
  }
  sd::StatusOr<std::unique_ptr<sd::Spool>> opened = sd::Spool::Open(options);
  SD_FUZZ_CHECK(opened.ok());
  sd::Spool& spool = **opened;
  SD_FUZZ_CHECK(!std::filesystem::exists(dir.File("00000000000000000009.frame.tmp")));
  uint64_t highest = 0;
  int64_t bytes = 0;
  for (uint64_t seq : spool.Pending()) {
    highest = seq;
    sd::StatusOr<std::string> read = spool.Read(seq);
    if (read.ok()) bytes += static_cast<int64_t>(read->size());
  }
  SD_FUZZ_CHECK(bytes <= spool.pending_bytes());
  SD_FUZZ_CHECK(spool.pending_count() <= options.max_frames && spool.pending_bytes() <= options.max_bytes);
  const uint64_t next = spool.NextSequence();
  SD_FUZZ_CHECK(next > highest);
  SD_FUZZ_CHECK(spool.Push(next, "frame").ok());
  SD_FUZZ_CHECK(spool.Read(next).ok());
  SD_FUZZ_CHECK(spool.NextSequence() > next);
  for (uint64_t seq : spool.Pending()) SD_FUZZ_CHECK(spool.Remove(seq).ok());
  SD_FUZZ_CHECK(spool.pending_count() == 0 && spool.pending_bytes() == 0);
  return 0;
}
