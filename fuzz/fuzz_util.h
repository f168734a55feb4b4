// Shared pieces of the libFuzzer targets (fuzz/*_fuzz.cc) and of the seed writer
// (fuzz/make_seeds.cc), so both agree on each target's input layout.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>

#include "common/link/update_codec.h"
#include "common/student/student.h"

namespace sd::fuzz {

// A failed property: stops the run with a crash libFuzzer records (and saves the input of).
#define SD_FUZZ_CHECK(cond)                                                          \
  do {                                                                               \
    if (!(cond)) {                                                                   \
      std::fprintf(stderr, "%s:%d: fuzz property failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                  \
    }                                                                                \
  } while (0)

// Parsers log what they reject; a fuzzer feeds them millions of bad inputs.
inline void QuietLogs() { spdlog::set_level(spdlog::level::off); }

inline void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// update_decode: the receiver's current weights, n of them (1..64), the same on both sides.
inline std::vector<float> UpdateBase(size_t n) {
  std::vector<float> base(n);
  for (size_t i = 0; i < n; ++i) base[i] = 0.37f * static_cast<float>(static_cast<int>(i % 7) - 3);
  return base;
}
inline constexpr UpdateEncoding kUpdateEncodings[4] = {UpdateEncoding::kFullFp32, UpdateEncoding::kFullFp16,
                                                       UpdateEncoding::kSparse, UpdateEncoding::kInt8};

// checkpoint: the smallest valid student, so one load costs microseconds, not milliseconds.
inline StudentArchitecture TinyStudent() {
  StudentArchitecture arch;
  arch.input_width = 32;
  arch.input_height = 32;
  arch.channels = {4, 4, 4, 4, 4};
  return arch;
}

// label_cache: the key the target expects (seeds are written with it).
inline const char kLabelKey[] = "video=fnv1a64:0123456789abcdef teacher=hog-fuzz";

}  // namespace sd::fuzz
