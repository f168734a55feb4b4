// Weights for the update codec's tests (update_codec_test, delta_codec_test, model_update_test).
#pragma once

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

namespace sd {
namespace testing {

inline uint32_t Bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, sizeof(b));
  return b;
}

inline std::vector<float> RandomWeights(size_t n, uint64_t seed, float scale = 0.2f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> w(n);
  for (float& v : w) v = normal(rng);
  return w;
}

}  // namespace testing
}  // namespace sd
