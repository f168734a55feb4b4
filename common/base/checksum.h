// The one checksum of the project: FNV-1a 64. Trivial, dependency-free and plenty for telling
// a torn or corrupted file from a good one (it is not meant to resist an adversary).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace sd {

inline constexpr uint64_t kFnv1a64Basis = 14695981039346656037ULL;

// FNV-1a 64 of `data`, continuing from `hash` (so a stream can be hashed piece by piece:
// Fnv1a64(b, Fnv1a64(a)) == Fnv1a64(a + b)).
inline uint64_t Fnv1a64(std::string_view data, uint64_t hash = kFnv1a64Basis) {
  for (unsigned char c : data) hash = (hash ^ c) * 1099511628211ULL;
  return hash;
}

// 16 lower-case hex digits.
inline std::string Hex64(uint64_t v) {
  char hex[17];
  std::snprintf(hex, sizeof(hex), "%016llx", static_cast<unsigned long long>(v));
  return hex;
}

}  // namespace sd
