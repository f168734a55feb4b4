// Student weights files (common/student/student.h: StudentModel::FromBytes / LoadWeights; the
// server's version checkpoints models/<device>/v<ver>.sdw use the same format).
//
// The input is a weights file. It is loaded as it is (mostly stopped by the trailing FNV-1a
// checksum), then again with the checksum recomputed, so the mutations reach the header,
// architecture and tensor parsing behind it. The model is the tiny TinyStudent(): a file
// naming another architecture is parsed and refused by the fingerprint check, never built (a
// valid file may legitimately name a model of hundreds of MB).
// Property: two models that start from different weights and both accept the same bytes end up
// with bit-identical weights (the file sets every tensor: no missing or duplicated one).
#include <cstring>
#include <string>

#include "fuzz/fuzz_util.h"

namespace {

uint64_t Fnv1a(const char* data, size_t size) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < size; ++i) h = (h ^ static_cast<unsigned char>(data[i])) * 1099511628211ull;
  return h;
}

sd::StudentModel& Model(uint64_t seed) {
  static std::unique_ptr<sd::StudentModel> models[2];
  auto& m = models[seed & 1];
  if (!m) m = std::move(sd::StudentModel::Create(sd::fuzz::TinyStudent(), seed)).value();
  return *m;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  sd::fuzz::QuietLogs();
  sd::SetTorchThreads(1);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string bytes(reinterpret_cast<const char*>(data), size);
  (void)Model(0).LoadWeights(bytes);
  if (size < 8) return 0;
  const uint64_t sum = Fnv1a(bytes.data(), size - 8);
  std::memcpy(bytes.data() + size - 8, &sum, 8);

  // Fresh, different starting weights each time, so leftovers of an earlier input do not count.
  sd::StudentModel& a = Model(0);
  sd::StudentModel& b = Model(1);
  SD_FUZZ_CHECK(a.SetFlatWeights(std::vector<float>(a.FlatSize(), 1.0f)).ok());
  SD_FUZZ_CHECK(b.SetFlatWeights(std::vector<float>(b.FlatSize(), -1.0f)).ok());
  const bool a_ok = a.LoadWeights(bytes).ok();
  const bool b_ok = b.LoadWeights(bytes).ok();
  SD_FUZZ_CHECK(a_ok == b_ok);
  if (!a_ok) return 0;
  const std::vector<float> wa = a.FlatWeights(), wb = b.FlatWeights();
  SD_FUZZ_CHECK(wa.size() == wb.size() && std::memcmp(wa.data(), wb.data(), wa.size() * sizeof(float)) == 0);
  sd::StatusOr<std::unique_ptr<sd::StudentModel>> loaded = sd::StudentModel::FromBytes(bytes);
  SD_FUZZ_CHECK(loaded.ok());
  const std::vector<float> wl = (*loaded)->FlatWeights();
  SD_FUZZ_CHECK(std::memcmp(wl.data(), wa.data(), wa.size() * sizeof(float)) == 0);
  return 0;
}
