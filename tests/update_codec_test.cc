#include "common/link/update_codec.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <numeric>
#include <random>

#include <gtest/gtest.h>

#include "common/link/model_update.h"
#include <zstd.h>

#include "common/student/student.h"

namespace sd {
namespace {

uint32_t Bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, sizeof(b));
  return b;
}

std::vector<float> RandomWeights(size_t n, uint64_t seed, float scale = 0.2f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> w(n);
  for (float& v : w) v = normal(rng);
  return w;
}

TEST(Fp16Test, RoundsToNearestEvenIncludingEdgeCases) {
  struct Case {
    float in;
    uint16_t half;
  };
  const float inf = std::numeric_limits<float>::infinity();
  const Case cases[] = {
      {0.0f, 0x0000},
      {-0.0f, 0x8000},
      {1.0f, 0x3c00},
      {-2.0f, 0xc000},
      {65504.0f, 0x7bff},                               // largest half
      {65519.0f, 0x7bff},                               // below the midpoint to inf
      {65520.0f, 0x7c00},                               // the midpoint: ties to even = inf
      {1e6f, 0x7c00},                                   // overflow
      {inf, 0x7c00},
      {-inf, 0xfc00},
      {1e-8f, 0x0000},                                  // < half the smallest denormal
      {-1e-8f, 0x8000},                                 // keeps its sign
      {1e-7f, 0x0002},                                  // 1.68 denormal units -> 2
      {std::ldexp(1.0f, -24), 0x0001},                  // smallest denormal
      {std::ldexp(1.0f, -25), 0x0000},                  // tie between 0 and 1 unit: even (0)
      {std::ldexp(3.0f, -26), 0x0001},                  // 0.75 units
      {std::ldexp(3.0f, -25), 0x0002},                  // 1.5 units: tie, even (2)
      {std::ldexp(1023.0f, -24), 0x03ff},               // largest denormal
      {std::ldexp(2047.0f, -25), 0x0400},               // 1023.5 units: carries into the smallest normal
      {std::ldexp(1.0f, -14), 0x0400},                  // smallest normal
      {1.0f + std::ldexp(1.0f, -11), 0x3c00},           // tie: even (down)
      {1.0f + std::ldexp(3.0f, -11), 0x3c02},           // tie: even (up)
      {1.0f + std::ldexp(1.0f, -11) + std::ldexp(1.0f, -20), 0x3c01},  // just above the tie
      {0.1f, 0x2e66},
      {std::numeric_limits<float>::denorm_min(), 0x0000},  // a float denormal
  };
  for (const Case& c : cases) {
    EXPECT_EQ(FloatToHalf(c.in), c.half) << "in=" << c.in;
  }
  EXPECT_TRUE(std::signbit(HalfToFloat(FloatToHalf(-0.0f))));
  EXPECT_FLOAT_EQ(HalfToFloat(0x2e66), 0.0999755859375f);
  EXPECT_EQ(HalfToFloat(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(HalfToFloat(0x7bff), 65504.0f);
  EXPECT_TRUE(std::isinf(HalfToFloat(0xfc00)) && HalfToFloat(0xfc00) < 0);
  const uint16_t nan_half = FloatToHalf(std::numeric_limits<float>::quiet_NaN());
  EXPECT_EQ(nan_half & 0x7c00, 0x7c00);
  EXPECT_NE(nan_half & 0x03ff, 0);
  EXPECT_TRUE(std::isnan(HalfToFloat(nan_half)));
  // A signalling NaN whose payload lives only in the low bits must not become inf.
  float snan;
  const uint32_t snan_bits = 0x7f800001;
  std::memcpy(&snan, &snan_bits, sizeof(snan));
  EXPECT_TRUE(std::isnan(HalfToFloat(FloatToHalf(snan))));
}

TEST(Fp16Test, EveryHalfRoundTripsThroughFloat) {
  for (uint32_t h = 0; h <= 0xffff; ++h) {
    const float f = HalfToFloat(static_cast<uint16_t>(h));
    if (std::isnan(f)) continue;
    ASSERT_EQ(FloatToHalf(f), h) << std::hex << h;
  }
}

#ifdef __FLT16_MAX__
// The compiler's own conversion (libgcc, round-to-nearest-even) as an independent reference.
TEST(Fp16Test, MatchesCompilerFloat16OnRandomBitPatterns) {
  std::mt19937 rng(7);
  int checked = 0;
  for (int i = 0; i < 2000000; ++i) {
    const uint32_t bits = rng();
    float f;
    std::memcpy(&f, &bits, sizeof(f));
    if (std::isnan(f)) continue;
    const _Float16 ref = static_cast<_Float16>(f);
    uint16_t ref_bits;
    std::memcpy(&ref_bits, &ref, sizeof(ref_bits));
    ASSERT_EQ(FloatToHalf(f), ref_bits) << "bits=0x" << std::hex << bits;
    ++checked;
  }
  // Values near the half range, where the rounding cases live.
  std::uniform_real_distribution<float> near(-70000.0f, 70000.0f);
  std::uniform_real_distribution<float> tiny(-1e-4f, 1e-4f);
  for (int i = 0; i < 200000; ++i) {
    for (float f : {near(rng), tiny(rng)}) {
      const _Float16 ref = static_cast<_Float16>(f);
      uint16_t ref_bits;
      std::memcpy(&ref_bits, &ref, sizeof(ref_bits));
      ASSERT_EQ(FloatToHalf(f), ref_bits) << f;
      ASSERT_EQ(Bits(HalfToFloat(ref_bits)), Bits(static_cast<float>(ref))) << f;
    }
  }
  EXPECT_GT(checked, 1000000);
}
#endif

TEST(UpdateCodecTest, Fp32RoundTripIsBitExact) {
  std::vector<float> w = RandomWeights(10000, 1);
  w.push_back(-0.0f);
  w.push_back(std::numeric_limits<float>::denorm_min());
  w.push_back(std::numeric_limits<float>::max());
  w.push_back(std::numeric_limits<float>::quiet_NaN());
  for (bool zstd : {false, true}) {
    StatusOr<std::string> payload = EncodeUpdate("full_fp32", {}, w, {}, zstd);
    ASSERT_TRUE(payload.ok()) << payload.status().ToString();
    StatusOr<std::vector<float>> back = DecodeUpdate("full_fp32", {}, *payload, w.size());
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    ASSERT_EQ(back->size(), w.size());
    for (size_t i = 0; i < w.size(); ++i) ASSERT_EQ(Bits((*back)[i]), Bits(w[i])) << i;
  }
  // Little-endian on the wire, whatever the host: 1.0f = 0x3f800000.
  StatusOr<std::string> one = EncodeUpdate("full_fp32", {}, {1.0f}, {}, false);
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(*one, std::string("\x00\x00\x00\x80\x3f", 5));
}

TEST(UpdateCodecTest, Fp16DecodesToRoundedWeightsAtAboutHalfTheSize) {
  const std::vector<float> w = RandomWeights(50000, 2);
  StatusOr<std::string> p32 = EncodeUpdate("full_fp32", {}, w, {}, false);
  StatusOr<std::string> p16 = EncodeUpdate("full_fp16", {}, w, {}, false);
  ASSERT_TRUE(p32.ok() && p16.ok());
  EXPECT_EQ(p32->size(), 1 + 4 * w.size());
  EXPECT_EQ(p16->size(), 1 + 2 * w.size());
  const double ratio = static_cast<double>(p16->size()) / p32->size();
  EXPECT_NEAR(ratio, 0.5, 0.01);
  StatusOr<std::vector<float>> back = DecodeUpdate("full_fp16", {}, *p16, w.size());
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  for (size_t i = 0; i < w.size(); ++i) {
    ASSERT_EQ(Bits((*back)[i]), Bits(HalfToFloat(FloatToHalf(w[i])))) << i;
    ASSERT_NEAR((*back)[i], w[i], std::abs(w[i]) * 1e-3 + 1e-7) << i;
  }
  // With zstd allowed, random weights barely compress; the payload is no bigger either way.
  StatusOr<std::string> p16z = EncodeUpdate("full_fp16", {}, w, {}, true);
  ASSERT_TRUE(p16z.ok());
  EXPECT_LE(p16z->size(), p16->size());
  // Decoding is stable: the server can keep the decoded weights as the edge's.
  StatusOr<std::string> again = EncodeUpdate("full_fp16", {}, *back, {}, false);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, *p16);
}

TEST(UpdateCodecTest, Fp16RefusesWeightsBeyondHalfRange) {
  std::vector<float> w = RandomWeights(100, 3);
  w[42] = 70000.0f;
  StatusOr<std::string> p = EncodeUpdate("full_fp16", {}, w, {});
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), Status::Code::kInvalidArgument);
  EXPECT_NE(p.status().message().find("42"), std::string::npos) << p.status().message();
  EXPECT_TRUE(EncodeUpdate("full_fp32", {}, w, {}).ok());
  // Non-finite weights stay what they are (encoding does not invent the overflow).
  w[42] = std::numeric_limits<float>::infinity();
  EXPECT_TRUE(EncodeUpdate("full_fp16", {}, w, {}).ok());
}

TEST(UpdateCodecTest, ZstdUsedWhenItHelpsAndFlagged) {
  const std::vector<float> zeros(100000, 0.0f);
  for (const char* enc : {"full_fp32", "full_fp16"}) {
    StatusOr<std::string> raw = EncodeUpdate(enc, {}, zeros, {}, false);
    StatusOr<std::string> packed = EncodeUpdate(enc, {}, zeros, {}, true);
    ASSERT_TRUE(raw.ok() && packed.ok());
    EXPECT_EQ((*raw)[0], '\x00') << enc;
    EXPECT_EQ((*packed)[0], '\x01') << enc;
    EXPECT_LT(packed->size(), raw->size() / 100) << enc;
    StatusOr<std::vector<float>> back = DecodeUpdate(enc, {}, *packed, zeros.size());
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    EXPECT_EQ(*back, zeros);
  }
  // Too small to gain: stays raw.
  StatusOr<std::string> tiny = EncodeUpdate("full_fp32", {}, {0.5f}, {}, true);
  ASSERT_TRUE(tiny.ok());
  EXPECT_EQ((*tiny)[0], '\x00');
  // An empty model is a valid (raw, header-only) payload.
  StatusOr<std::string> empty = EncodeUpdate("full_fp16", {}, {}, {}, true);
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(*empty, std::string(1, '\0'));
  StatusOr<std::vector<float>> empty_back = DecodeUpdate("full_fp16", {}, *empty, 0);
  ASSERT_TRUE(empty_back.ok());
  EXPECT_TRUE(empty_back->empty());
}

TEST(UpdateCodecTest, CorruptOrTruncatedPayloadsGiveErrors) {
  const std::vector<float> w = RandomWeights(1000, 4);
  std::vector<float> compressible(5000, 0.25f);
  StatusOr<std::string> raw = EncodeUpdate("full_fp32", {}, w, {}, false);
  StatusOr<std::string> packed = EncodeUpdate("full_fp16", {}, compressible, {}, true);
  ASSERT_TRUE(raw.ok() && packed.ok());
  ASSERT_EQ((*packed)[0], '\x01');

  auto expect_data_loss = [](const StatusOr<std::vector<float>>& r, const std::string& what) {
    ASSERT_FALSE(r.ok()) << what;
    EXPECT_EQ(r.status().code(), Status::Code::kDataLoss) << what << ": " << r.status().ToString();
  };
  expect_data_loss(DecodeUpdate("full_fp32", {}, "", w.size()), "empty");
  expect_data_loss(DecodeUpdate("full_fp32", {}, raw->substr(0, raw->size() - 1), w.size()), "truncated raw");
  expect_data_loss(DecodeUpdate("full_fp32", {}, *raw + "x", w.size()), "trailing byte");
  expect_data_loss(DecodeUpdate("full_fp32", {}, *raw, w.size() + 1), "wrong expected size");
  expect_data_loss(DecodeUpdate("full_fp16", {}, *raw, w.size()), "fp32 payload read as fp16");
  std::string bad_header = *raw;
  bad_header[0] = '\x07';
  expect_data_loss(DecodeUpdate("full_fp32", {}, bad_header, w.size()), "unknown header");
  expect_data_loss(DecodeUpdate("full_fp16", {}, packed->substr(0, packed->size() / 2), compressible.size()),
                   "truncated zstd");
  expect_data_loss(DecodeUpdate("full_fp16", {}, packed->substr(0, 3), compressible.size()), "zstd header only");
  expect_data_loss(DecodeUpdate("full_fp16", {}, *packed, compressible.size() - 1), "zstd wrong size");
  std::string flipped = *packed;
  flipped[flipped.size() / 2] ^= 0x5a;
  flipped[flipped.size() / 2 + 1] ^= 0x33;
  StatusOr<std::vector<float>> r = DecodeUpdate("full_fp16", {}, flipped, compressible.size());
  // zstd may or may not notice a flipped literal (checksums are off); it must not crash and,
  // when it does decode, the size is right (the weights checksum catches the rest).
  if (r.ok()) {
    EXPECT_EQ(r->size(), compressible.size());
  }
  // Random garbage after a zstd header byte, many times.
  std::mt19937 rng(9);
  for (int i = 0; i < 2000; ++i) {
    std::string junk(1 + rng() % 64, '\0');
    for (char& c : junk) c = static_cast<char>(rng());
    junk[0] = static_cast<char>(rng() % 2);
    StatusOr<std::vector<float>> g = DecodeUpdate("full_fp16", {}, junk, 10);
    if (g.ok()) {
      EXPECT_EQ(g->size(), 10u);
    }
  }
  StatusOr<std::vector<float>> unknown = DecodeUpdate("int3", {}, *raw, w.size());
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.status().code(), Status::Code::kInvalidArgument);
  EXPECT_FALSE(EncodeUpdate("sparse_v0", {}, w, {}).ok());
  EXPECT_TRUE(IsKnownUpdateEncoding("full_fp16"));
  EXPECT_FALSE(IsKnownUpdateEncoding(""));
}

// ---- Delta encodings (sparse, int8) ----

// `w` with `count` distinct random positions changed by gaussian noise of `sigma`.
std::vector<float> PerturbSome(const std::vector<float>& w, size_t count, float sigma, std::mt19937_64* rng) {
  std::vector<size_t> order(w.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::normal_distribution<float> noise(0.0f, sigma);
  std::vector<float> out = w;
  for (size_t j = 0; j < count && j < order.size(); ++j) {
    std::swap(order[j], order[j + (*rng)() % (order.size() - j)]);
    out[order[j]] += noise(*rng);
  }
  return out;
}

std::unique_ptr<StudentModel> DefaultStudent() {
  StatusOr<std::unique_ptr<StudentModel>> model = StudentModel::Create(StudentArchitecture{}, 1);
  EXPECT_TRUE(model.ok()) << model.status().ToString();
  return model.ok() ? std::move(model).value() : nullptr;
}

float Ulp(float x) {
  const float a = std::abs(x);
  return std::nextafter(a, std::numeric_limits<float>::infinity()) - a;
}

// What a sparse receiver must hold: base + the fp16 delta where that delta is not zero.
std::vector<float> SparseExpected(const std::vector<float>& base, const std::vector<float>& target) {
  std::vector<float> out = base;
  for (size_t i = 0; i < base.size(); ++i) {
    if (Bits(base[i]) == Bits(target[i])) continue;
    const uint16_t h = FloatToHalf(target[i] - base[i]);
    if ((h & 0x7fff) != 0) out[i] = base[i] + HalfToFloat(h);
  }
  return out;
}

void ExpectBitEqual(const std::vector<float>& got, const std::vector<float>& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(Bits(got[i]), Bits(want[i])) << what << " at " << i;
}

void ExpectDataLoss(const StatusOr<std::vector<float>>& r, const std::string& what, const std::string& mentions = "") {
  ASSERT_FALSE(r.ok()) << what;
  EXPECT_EQ(r.status().code(), Status::Code::kDataLoss) << what << ": " << r.status().ToString();
  EXPECT_NE(r.status().message().find(mentions), std::string::npos) << what << ": " << r.status().message();
}

TEST(SparseCodecTest, RoundTripsWithAndWithoutZstd) {
  std::mt19937_64 rng(11);
  const std::vector<float> base = RandomWeights(20000, 12);
  std::vector<float> target = PerturbSome(base, 600, 0.01f, &rng);
  target[0] += 0.5f;  // the first and last positions, and a sign change through zero
  target[19999] = -base[19999];
  const std::vector<float> expected = SparseExpected(base, target);
  for (bool zstd : {false, true}) {
    StatusOr<std::string> payload = EncodeUpdate("sparse", base, target, {}, zstd);
    ASSERT_TRUE(payload.ok()) << payload.status().ToString();
    StatusOr<std::vector<float>> back = DecodeUpdate("sparse", base, *payload, base.size());
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    ExpectBitEqual(*back, expected, zstd ? "zstd" : "raw");
    for (size_t i = 0; i < base.size(); ++i) {
      ASSERT_NEAR((*back)[i], target[i], std::abs(target[i] - base[i]) * 1e-3 + 1e-7) << i;
    }
  }
  // Regular positions and equal deltas compress: the zstd header is used and decodes the same.
  std::vector<float> regular = base;
  for (size_t i = 5; i < regular.size(); i += 37) regular[i] += 0.25f;
  StatusOr<std::string> raw = EncodeUpdate("sparse", base, regular, {}, false);
  StatusOr<std::string> packed = EncodeUpdate("sparse", base, regular, {}, true);
  ASSERT_TRUE(raw.ok() && packed.ok());
  EXPECT_EQ((*packed)[0], '\x01');
  EXPECT_LT(packed->size(), raw->size() / 2);
  StatusOr<std::vector<float>> a = DecodeUpdate("sparse", base, *raw, base.size());
  StatusOr<std::vector<float>> b = DecodeUpdate("sparse", base, *packed, base.size());
  ASSERT_TRUE(a.ok() && b.ok());
  ExpectBitEqual(*a, SparseExpected(base, regular), "raw regular");
  ExpectBitEqual(*b, *a, "zstd regular");
  // An empty model is a valid update too.
  StatusOr<std::string> empty = EncodeUpdate("sparse", {}, {}, {}, true);
  ASSERT_TRUE(empty.ok());
  StatusOr<std::vector<float>> empty_back = DecodeUpdate("sparse", {}, *empty, 0);
  ASSERT_TRUE(empty_back.ok()) << empty_back.status().ToString();
  EXPECT_TRUE(empty_back->empty());
}

TEST(SparseCodecTest, UnchangedAndZeroRoundingDeltasAreLeftOut) {
  // Small weights (|w| < 0.25), whose neighbouring floats are less than 2^-25 apart.
  const std::vector<float> base = RandomWeights(1000, 13, 0.01f);
  std::vector<float> target = base;
  // Changed bits, but a delta below half of the smallest half denormal (2^-25): rounds to 0.
  for (size_t i = 0; i < target.size(); i += 3) target[i] = std::nextafter(base[i], 1.0f);
  target[500] = base[500] == 0.0f ? 1e-30f : base[500] * (1.0f + 1e-7f);
  for (const std::vector<float>* t : {&base, static_cast<const std::vector<float>*>(&target)}) {
    StatusOr<std::string> payload = EncodeUpdate("sparse", base, *t, {}, false);
    ASSERT_TRUE(payload.ok()) << payload.status().ToString();
    // Header, gap coding (0 bytes of gaps beat a 125-byte bitmask), 1000 weights, 0 changed.
    EXPECT_EQ(*payload, std::string("\x00\x01\xe8\x07\x00", 5));
    StatusOr<std::vector<float>> back = DecodeUpdate("sparse", base, *payload, base.size());
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    ExpectBitEqual(*back, base, "keeps base");
  }
}

TEST(SparseCodecTest, BitmaskForDenseChangesVarintGapsForSparseOnes) {
  const size_t n = 10000;
  const size_t mask_bytes = n / 8;
  const std::vector<float> base = RandomWeights(n, 14);
  auto changed_every = [&](size_t step) {
    std::vector<float> t = base;
    for (size_t i = 0; i < n; i += step) t[i] += 0.125f;
    return t;
  };
  // Every 2nd weight: 5000 one-byte gaps > 1250 bitmask bytes.
  StatusOr<std::string> dense = EncodeUpdate("sparse", base, changed_every(2), {}, false);
  ASSERT_TRUE(dense.ok());
  EXPECT_EQ((*dense)[1], '\x00');  // bitmask
  EXPECT_EQ(dense->size(), 1 + 1 + 2 + 2 + mask_bytes + 2 * 5000);  // header, coding, N, K, mask, halves
  // Every 100th weight: 100 one-byte gaps < 1250 bitmask bytes.
  StatusOr<std::string> sparse = EncodeUpdate("sparse", base, changed_every(100), {}, false);
  ASSERT_TRUE(sparse.ok());
  EXPECT_EQ((*sparse)[1], '\x01');  // varint gaps
  EXPECT_EQ(sparse->size(), 1 + 1 + 2 + 1 + 100 + 2 * 100);
  // Every 8th: 1250 gap bytes tie with the 1250-byte bitmask, which wins the tie.
  StatusOr<std::string> tie = EncodeUpdate("sparse", base, changed_every(8), {}, false);
  ASSERT_TRUE(tie.ok());
  EXPECT_EQ((*tie)[1], '\x00');
  // Gaps of 128 and more take two varint bytes.
  StatusOr<std::string> wide = EncodeUpdate("sparse", base, changed_every(200), {}, false);
  ASSERT_TRUE(wide.ok());
  EXPECT_EQ((*wide)[1], '\x01');
  EXPECT_EQ(wide->size(), 1 + 1 + 2 + 1 + (1 + 49 * 2) + 2 * 50);
  for (const StatusOr<std::string>* p : {&dense, &sparse, &tie, &wide}) {
    StatusOr<std::vector<float>> back = DecodeUpdate("sparse", base, **p, n);
    ASSERT_TRUE(back.ok()) << back.status().ToString();
  }
}

TEST(SparseCodecTest, RefusesUnrepresentableDeltasAndMismatchedSizes) {
  std::vector<float> base = RandomWeights(100, 15);
  std::vector<float> target = base;
  target[42] = 70000.0f;
  StatusOr<std::string> p = EncodeUpdate("sparse", base, target, {});
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), Status::Code::kInvalidArgument);
  EXPECT_NE(p.status().message().find("42"), std::string::npos) << p.status().message();
  target[42] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(EncodeUpdate("sparse", base, target, {}).status().code(), Status::Code::kInvalidArgument);
  target[42] = base[42];
  base.pop_back();
  EXPECT_EQ(EncodeUpdate("sparse", base, target, {}).status().code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(EncodeUpdate("int8", base, target, {}).status().code(), Status::Code::kInvalidArgument);
}

TEST(Int8CodecTest, RoundTripsWithinHalfAStepPerTensor) {
  std::mt19937_64 rng(16);
  const std::vector<size_t> layout = {100, 0, 5000, 1, 3000, 700, 20000};  // a 0-size tensor is fine
  const size_t n = std::accumulate(layout.begin(), layout.end(), size_t{0});
  const std::vector<float> base = RandomWeights(n, 17);
  std::vector<float> target = base;
  // Each tensor its own delta magnitude; the 700-weight tensor does not change.
  const float sigmas[] = {0.1f, 0.0f, 1e-3f, 0.5f, 1e-5f, 0.0f, 0.02f};
  std::normal_distribution<float> noise(0.0f, 1.0f);
  size_t begin = 0;
  for (size_t t = 0; t < layout.size(); ++t) {
    for (size_t i = begin; i < begin + layout[t]; ++i) {
      // A quarter of the weights stay put (but a tensor of one weight changes).
      if (sigmas[t] > 0 && (layout[t] == 1 || rng() % 4 != 0)) target[i] += sigmas[t] * noise(rng);
    }
    begin += layout[t];
  }
  for (bool zstd : {false, true}) {
    StatusOr<std::string> payload = EncodeUpdate("int8", base, target, layout, zstd);
    ASSERT_TRUE(payload.ok()) << payload.status().ToString();
    if (!zstd) {
      // Header, varint 6 (the empty tensor is left out); per tensor a varint size, the scale
      // and, if the tensor changed, one byte a weight.
      size_t want = 1 + 1;
      for (size_t t = 0; t < layout.size(); ++t) {
        if (layout[t] == 0) continue;
        want += (layout[t] < 128 ? 1 : layout[t] < 16384 ? 2 : 3) + 4 + (sigmas[t] > 0 ? layout[t] : 0);
      }
      EXPECT_EQ(payload->size(), want);
    }
    StatusOr<std::vector<float>> back = DecodeUpdate("int8", base, *payload, n);
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    begin = 0;
    for (size_t t = 0; t < layout.size(); ++t) {
      float max_abs = 0.0f;
      for (size_t i = begin; i < begin + layout[t]; ++i) max_abs = std::max(max_abs, std::abs(target[i] - base[i]));
      const float scale = max_abs / 127.0f;
      for (size_t i = begin; i < begin + layout[t]; ++i) {
        const float tiny = 4 * std::max(Ulp(target[i]), Ulp(base[i]));
        ASSERT_LE(std::abs((*back)[i] - target[i]), scale * 0.5f * 1.0001f + tiny) << "tensor " << t << " at " << i;
        if (Bits(target[i]) == Bits(base[i])) {
          ASSERT_EQ(Bits((*back)[i]), Bits(base[i])) << "unchanged " << i;
        }
      }
      begin += layout[t];
    }
  }
  // No layout: one tensor. A layout that does not add up is refused.
  StatusOr<std::string> one = EncodeUpdate("int8", base, target, {}, false);
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(one->size(), 1 + 1 + 3 + 4 + n);
  ASSERT_TRUE(DecodeUpdate("int8", base, *one, n).ok());
  EXPECT_EQ(EncodeUpdate("int8", base, target, {n - 1}).status().code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(EncodeUpdate("int8", base, target, {n, 1}).status().code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(EncodeUpdate("full_fp32", {}, target, {n + 1}).status().code(), Status::Code::kInvalidArgument);
  std::vector<float> inf_target = target;
  inf_target[7] = std::numeric_limits<float>::infinity();
  StatusOr<std::string> refused = EncodeUpdate("int8", base, inf_target, layout);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), Status::Code::kInvalidArgument);
  EXPECT_NE(refused.status().message().find("weight 7 "), std::string::npos) << refused.status().message();
}

TEST(DeltaCodecTest, DecodingNeedsABaseOfTheExpectedSize) {
  const std::vector<float> base = RandomWeights(100, 18);
  std::vector<float> target = base;
  target[3] += 1.0f;
  for (const char* enc : {"sparse", "int8"}) {
    EXPECT_TRUE(IsKnownUpdateEncoding(enc));
    StatusOr<std::string> payload = EncodeUpdate(enc, base, target, {});
    ASSERT_TRUE(payload.ok()) << payload.status().ToString();
    StatusOr<std::vector<float>> r = DecodeUpdate(enc, {}, *payload, base.size());
    ASSERT_FALSE(r.ok()) << enc;
    EXPECT_EQ(r.status().code(), Status::Code::kInvalidArgument) << r.status().ToString();
    EXPECT_NE(r.status().message().find("base"), std::string::npos) << r.status().message();
    // The right base but a receiver of another size: the payload does not fit it.
    std::vector<float> bigger = base;
    bigger.push_back(0.0f);
    ExpectDataLoss(DecodeUpdate(enc, bigger, *payload, bigger.size()), std::string(enc) + " other size");
  }
}

TEST(DeltaCodecTest, MalformedPayloadsNameTheProblem) {
  const std::vector<float> base(10, 0.5f);
  auto decode = [&](const char* enc, const std::string& body) {
    return DecodeUpdate(enc, base, std::string(1, '\0') + body, base.size());
  };
  const std::string one_half("\x00\x3c", 2);  // 1.0
  ASSERT_TRUE(decode("sparse", std::string("\x01\x0a\x01\x03", 4) + one_half).ok());
  EXPECT_EQ((*decode("sparse", std::string("\x01\x0a\x01\x03", 4) + one_half))[3], 1.5f);
  ExpectDataLoss(decode("sparse", ""), "empty body", "position coding");
  ExpectDataLoss(decode("sparse", std::string("\x02\x0a\x00", 3)), "coding byte", "unknown position coding");
  ExpectDataLoss(decode("sparse", std::string("\x01\x0b\x00", 3)), "other model size", "is for 11 weights");
  ExpectDataLoss(decode("sparse", std::string("\x01\x0a\x0b", 3)), "count > n", "11 changed positions");
  ExpectDataLoss(decode("sparse", std::string("\x01\x0a\x02\x03", 4)), "varint past the end", "runs past the end");
  ExpectDataLoss(decode("sparse", std::string("\x01\x0a\x01\x83", 4)), "varint cut", "runs past the end");
  ExpectDataLoss(decode("sparse", std::string("\x01\x0a\x01\x0a", 4) + one_half), "position out of range", "beyond");
  ExpectDataLoss(decode("sparse", std::string("\x01\x0a\x02\x03\x00", 5) + one_half + one_half), "not increasing",
                 "does not increase");
  ExpectDataLoss(decode("sparse", std::string("\x01\x0a\x02\x03\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 14) +
                                      one_half + one_half),
                 "huge gap", "beyond");
  ExpectDataLoss(decode("sparse", std::string("\x01\x0a\x01\x83\x00", 5) + one_half), "overlong varint",
                 "not minimally encoded");
  ExpectDataLoss(decode("sparse", std::string("\x00\x0a\x01\x00\x04", 5) + one_half), "bit beyond n", "beyond the 10");
  ExpectDataLoss(decode("sparse", std::string("\x00\x0a\x01\x03\x00", 5) + one_half), "popcount", "more than");
  ExpectDataLoss(decode("sparse", std::string("\x00\x0a\x02\x01\x00", 5) + one_half + one_half), "popcount", "marks 1");
  ExpectDataLoss(decode("sparse", std::string("\x01\x0a\x01\x03", 4) + "\x00"), "half cut", "truncated in the deltas");
  ExpectDataLoss(decode("sparse", std::string("\x01\x0a\x01\x03", 4) + one_half + "x"), "trailing", "trailing");
  ExpectDataLoss(decode("sparse", std::string("\x01\x0a\x01\x03\x00\x7c", 6)), "inf delta", "non-finite");
  ExpectDataLoss(decode("sparse", std::string("\x01\x0a\x01\x03\x00\x80", 6)), "-0 delta", "zero");

  auto scale = [](float s) {
    std::string b(4, '\0');
    const uint32_t v = Bits(s);
    for (int i = 0; i < 4; ++i) b[i] = static_cast<char>(v >> (8 * i));
    return b;
  };
  const std::string q10(10, '\x02');
  ASSERT_TRUE(decode("int8", "\x01\x0a" + scale(0.25f) + q10).ok());
  EXPECT_EQ((*decode("int8", "\x01\x0a" + scale(0.25f) + q10))[9], 1.0f);
  ASSERT_TRUE(decode("int8", "\x02\x04" + scale(0.0f) + "\x06" + scale(0.0f)).ok());
  ExpectDataLoss(decode("int8", ""), "empty body", "tensor count");
  ExpectDataLoss(decode("int8", "\x0b"), "more tensors than weights", "11 tensors");
  ExpectDataLoss(decode("int8", "\x01\x09" + scale(0.25f) + q10.substr(1)), "sizes short", "sum to 9");
  ExpectDataLoss(decode("int8", "\x01\x0b" + scale(0.25f) + q10), "sizes past n", "runs past");
  ExpectDataLoss(decode("int8", std::string("\x02\x00", 2) + scale(0.25f) + q10), "size 0", "size 0");
  ExpectDataLoss(decode("int8", "\x01\x0a" + scale(std::numeric_limits<float>::quiet_NaN()) + q10), "NaN scale",
                 "scale");
  ExpectDataLoss(decode("int8", "\x01\x0a" + scale(std::numeric_limits<float>::infinity()) + q10), "inf scale",
                 "scale");
  ExpectDataLoss(decode("int8", "\x01\x0a" + scale(-0.25f) + q10), "negative scale", "scale");
  ExpectDataLoss(decode("int8", "\x01\x0a" + scale(0.25f).substr(0, 3)), "scale cut", "truncated in the scale");
  ExpectDataLoss(decode("int8", "\x01\x0a" + scale(0.25f) + q10.substr(1)), "values cut", "int8 values");
  ExpectDataLoss(decode("int8", "\x01\x0a" + scale(0.25f) + q10 + "x"), "trailing", "trailing");
  ExpectDataLoss(decode("int8", "\x01\x0a" + scale(0.25f) + std::string(9, '\x01') + "\x80"), "-128", "-128");
  ExpectDataLoss(decode("int8", "\x02\x04" + scale(0.0f) + "\x06"), "second tensor cut", "tensor 1");
  // A zstd frame announcing more than any valid body of 10 weights can hold.
  const std::string big(1000, '\x01');
  std::string frame(ZSTD_compressBound(big.size()), '\0');
  frame.resize(ZSTD_compress(frame.data(), frame.size(), big.data(), big.size(), 1));
  ExpectDataLoss(DecodeUpdate("int8", base, "\x01" + frame, base.size()), "zstd too big", "at most");
}

// Every prefix of a valid payload is an error and no flipped byte makes the decoder crash or
// return a wrongly sized result.
void SweepCorruptions(const std::string& enc, const std::vector<float>& base, const std::string& payload) {
  SCOPED_TRACE(enc + (payload[0] == '\x01' ? " zstd" : " raw"));
  ASSERT_TRUE(DecodeUpdate(enc, base, payload, base.size()).ok());
  for (size_t len = 0; len < payload.size(); ++len) {
    StatusOr<std::vector<float>> r = DecodeUpdate(enc, base, payload.substr(0, len), base.size());
    ASSERT_FALSE(r.ok()) << "prefix of " << len << " bytes decoded";
    ASSERT_EQ(r.status().code(), Status::Code::kDataLoss) << r.status().ToString();
  }
  for (size_t at = 0; at < payload.size(); ++at) {
    for (int mask : {0x01, 0x10, 0x80, 0xff}) {
      std::string flipped = payload;
      flipped[at] = static_cast<char>(flipped[at] ^ mask);
      StatusOr<std::vector<float>> r = DecodeUpdate(enc, base, flipped, base.size());
      if (r.ok()) {
        ASSERT_EQ(r->size(), base.size()) << "byte " << at;
      } else {
        ASSERT_EQ(r.status().code(), Status::Code::kDataLoss) << r.status().ToString();
      }
    }
  }
}

TEST(DeltaCodecTest, TruncatedAndBitFlippedPayloadsGiveErrorsNotCrashes) {
  std::mt19937_64 rng(19);
  const std::vector<float> base = RandomWeights(1500, 20);
  std::vector<float> regular = base;  // compressible: regular positions, repeating deltas
  for (size_t i = 3; i < regular.size(); i += 41) regular[i] += 0.01f * static_cast<float>(i % 5 + 1);
  for (size_t i = 700; i < 1500; ++i) regular[i] += 0.01f * static_cast<float>(static_cast<int>(i % 7) - 3);
  const std::vector<size_t> layout = {700, 10, 790};
  struct Case {
    const char* enc;
    std::vector<float> target;
    std::vector<size_t> layout;
  };
  const Case cases[] = {
      {"sparse", PerturbSome(base, 45, 0.01f, &rng), {}},   // varint gaps
      {"sparse", PerturbSome(base, 700, 0.01f, &rng), {}},  // bitmask
      {"sparse", regular, {}},
      {"int8", PerturbSome(base, 75, 0.01f, &rng), layout},
      {"int8", regular, layout},
  };
  int zstd_payloads = 0;
  for (const Case& c : cases) {
    for (bool zstd : {false, true}) {
      StatusOr<std::string> payload = EncodeUpdate(c.enc, base, c.target, c.layout, zstd);
      ASSERT_TRUE(payload.ok()) << payload.status().ToString();
      zstd_payloads += (*payload)[0] == '\x01';
      SweepCorruptions(c.enc, base, *payload);
    }
  }
  EXPECT_GE(zstd_payloads, 2);  // the regular targets compress, so both decoders see zstd bodies
}

TEST(DeltaCodecTest, SparseAtFivePercentIsATenthOfFullFp32OnTheDefaultStudent) {
  std::unique_ptr<StudentModel> model = DefaultStudent();
  ASSERT_NE(model, nullptr);
  const std::vector<float> base = model->FlatWeights();
  const std::vector<size_t> sizes = model->TensorSizes();
  ASSERT_EQ(static_cast<int64_t>(std::accumulate(sizes.begin(), sizes.end(), size_t{0})), model->FlatSize());
  std::mt19937_64 rng(21);
  const std::vector<float> target = PerturbSome(base, base.size() / 20, 1e-3f, &rng);
  StatusOr<std::string> full = EncodeUpdate("full_fp32", {}, target, sizes, false);
  ASSERT_TRUE(full.ok());
  for (bool zstd : {false, true}) {
    StatusOr<std::string> sparse = EncodeUpdate("sparse", base, target, sizes, zstd);
    ASSERT_TRUE(sparse.ok()) << sparse.status().ToString();
    EXPECT_LE(sparse->size() * 10, full->size()) << sparse->size() << " vs " << full->size();
    StatusOr<std::vector<float>> back = DecodeUpdate("sparse", base, *sparse, base.size());
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    ExpectBitEqual(*back, SparseExpected(base, target), "sparse");
  }
}

TEST(DeltaCodecTest, LongChainKeepsServerAndEdgeBitIdentical) {
  std::unique_ptr<StudentModel> edge = DefaultStudent();
  ASSERT_NE(edge, nullptr);
  const std::vector<size_t> sizes = edge->TensorSizes();
  std::vector<float> server = edge->FlatWeights();  // the server's copy of the edge's weights
  const size_t n = server.size();
  std::mt19937_64 rng(22);
  for (int round = 0; round < 200; ++round) {
    const std::string enc = round % 2 == 0 ? "sparse" : "int8";
    SCOPED_TRACE("round " + std::to_string(round) + " " + enc);
    const std::vector<float> target = PerturbSome(server, n / 20, 1e-3f, &rng);
    StatusOr<std::string> payload = EncodeUpdate(enc, server, target, sizes);
    ASSERT_TRUE(payload.ok()) << payload.status().ToString();

    StatusOr<std::vector<float>> on_edge = DecodeUpdate(enc, edge->FlatWeights(), *payload, n);
    ASSERT_TRUE(on_edge.ok()) << on_edge.status().ToString();
    ASSERT_TRUE(edge->SetFlatWeights(*on_edge).ok());

    StatusOr<std::vector<float>> on_server = DecodeUpdate(enc, server, *payload, n);
    ASSERT_TRUE(on_server.ok()) << on_server.status().ToString();
    server = std::move(*on_server);
    ASSERT_EQ(WeightsChecksum(edge->FlatWeights()), WeightsChecksum(server));
    // The edge follows the target closely, not only the server's bookkeeping.
    double max_err = 0;
    for (size_t i = 0; i < n; ++i) max_err = std::max(max_err, static_cast<double>(std::abs(server[i] - target[i])));
    ASSERT_LT(max_err, 1e-3);
  }
}

// The payload pieces of the chunks the stream sends (MakeUpdateChunk), in order.
std::vector<std::string> Pieces(const std::string& payload, size_t chunk_bytes) {
  ModelUpdate u;
  u.payload = payload;
  std::vector<std::string> out;
  for (uint32_t i = 0; i < UpdateChunkCount(u, chunk_bytes); ++i) out.push_back(MakeUpdateChunk(u, i, chunk_bytes).data());
  return out;
}

TEST(ModelUpdateChunkTest, SplitsInOrderAndJoinsBack) {
  std::string payload(10001, '\0');
  for (size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>(i * 31);
  const std::vector<std::string> chunks = Pieces(payload, 1000);
  ASSERT_EQ(chunks.size(), 11u);
  for (size_t i = 0; i + 1 < chunks.size(); ++i) EXPECT_EQ(chunks[i].size(), 1000u);
  EXPECT_EQ(chunks.back().size(), 1u);
  std::string joined;
  for (const std::string& c : chunks) joined += c;
  EXPECT_EQ(joined, payload);
  EXPECT_EQ(Pieces(payload, 10001).size(), 1u);
  EXPECT_EQ(Pieces(payload, 0).size(), 1u);
  EXPECT_EQ(Pieces(payload, 5000).size(), 3u);
  const std::vector<std::string> empty = Pieces("", 100);
  ASSERT_EQ(empty.size(), 1u);
  EXPECT_TRUE(empty[0].empty());
}

TEST(ModelUpdateAssemblerTest, RoundTripsEveryFieldAndRefusesUnknownOrInconsistentChunks) {
  ModelUpdate u;
  u.base_version = 4;
  u.new_version = 5;
  u.encoding = UpdateEncoding::kInt8;
  u.payload = std::string(2500, 'q');
  u.weights_checksum = "fnv1a64:0123456789abcdef";
  u.val_map50 = 0.75;
  u.val_map50_previous = 0.5;
  u.val_frames = 12;
  ModelUpdateAssembler assembler;
  std::optional<ModelUpdate> assembled;
  for (uint32_t i = 0; i < UpdateChunkCount(u, 1000); ++i) {
    StatusOr<std::optional<ModelUpdate>> got = assembler.Add(MakeUpdateChunk(u, i, 1000));
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    EXPECT_EQ(got->has_value(), i == 2);
    assembled = *got;
  }
  ASSERT_TRUE(assembled.has_value());
  const ModelUpdate& back = *assembled;
  EXPECT_EQ(back.base_version, 4u);
  EXPECT_EQ(back.new_version, 5u);
  EXPECT_EQ(back.encoding, UpdateEncoding::kInt8);
  EXPECT_EQ(back.payload, u.payload);
  EXPECT_EQ(back.weights_checksum, u.weights_checksum);
  EXPECT_FLOAT_EQ(back.val_map50, 0.75);
  EXPECT_FLOAT_EQ(back.val_map50_previous, 0.5);
  EXPECT_EQ(back.val_frames, 12);

  auto unknown = MakeUpdateChunk(u, 0, 1000);
  unknown.set_encoding("magic");
  EXPECT_EQ(assembler.Add(unknown).status().code(), Status::Code::kInvalidArgument);

  ASSERT_TRUE(assembler.Add(MakeUpdateChunk(u, 0, 1000)).ok());
  auto other_base = MakeUpdateChunk(u, 1, 1000);
  other_base.set_base_version(3);
  EXPECT_EQ(assembler.Add(other_base).status().code(), Status::Code::kDataLoss);
  EXPECT_EQ(assembler.Add(MakeUpdateChunk(u, 2, 1000)).status().code(), Status::Code::kDataLoss);  // reset

  for (auto e : {UpdateEncoding::kFullFp32, UpdateEncoding::kFullFp16, UpdateEncoding::kSparse, UpdateEncoding::kInt8})
    EXPECT_EQ(*ParseUpdateEncoding(UpdateEncodingName(e)), e);
}

// Feeds every chunk; returns the assembled payload (or the first error).
StatusOr<std::string> FeedAll(ChunkAssembler* assembler, uint64_t version, const std::vector<std::string>& chunks,
                              uint64_t total) {
  for (size_t i = 0; i < chunks.size(); ++i) {
    StatusOr<std::optional<std::string>> r =
        assembler->Add(version, static_cast<uint32_t>(i), static_cast<uint32_t>(chunks.size()), total, chunks[i]);
    if (!r.ok()) return r.status();
    if (r->has_value() != (i + 1 == chunks.size())) return Status::Internal("completed at the wrong chunk");
    if (r->has_value()) return std::move(**r);
  }
  return Status::Internal("no chunks");
}

TEST(ChunkAssemblerTest, InOrderChunksAssemble) {
  StatusOr<std::string> payload = EncodeUpdate("full_fp32", {}, RandomWeights(3000, 5), {}, false);
  ASSERT_TRUE(payload.ok());
  const std::vector<std::string> chunks = Pieces(*payload, 1024);
  ChunkAssembler assembler;
  StatusOr<std::string> got = FeedAll(&assembler, 7, chunks, payload->size());
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(*got, *payload);
  EXPECT_FALSE(assembler.in_progress());
  // The next update assembles too, and a single-chunk (even empty) one completes at once.
  got = FeedAll(&assembler, 8, chunks, payload->size());
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  StatusOr<std::optional<std::string>> single = assembler.Add(9, 0, 1, 0, "");
  ASSERT_TRUE(single.ok());
  ASSERT_TRUE(single->has_value());
  EXPECT_TRUE((*single)->empty());
}

TEST(ChunkAssemblerTest, ReorderedDuplicatedTruncatedAndMismatchedChunksFail) {
  const std::string payload(3000, 'p');
  const std::vector<std::string> c = Pieces(payload, 1000);  // 3 chunks
  const uint64_t n = payload.size();
  auto expect_error = [](const StatusOr<std::optional<std::string>>& r, Status::Code code, const char* what) {
    ASSERT_FALSE(r.ok()) << what;
    EXPECT_EQ(r.status().code(), code) << what << ": " << r.status().ToString();
  };
  ChunkAssembler a;

  // Starting in the middle.
  expect_error(a.Add(1, 1, 3, n, c[1]), Status::Code::kDataLoss, "starts at 1");
  EXPECT_FALSE(a.in_progress());

  // Reordered: 0, 2.
  ASSERT_TRUE(a.Add(1, 0, 3, n, c[0]).ok());
  expect_error(a.Add(1, 2, 3, n, c[2]), Status::Code::kDataLoss, "skips 1");
  EXPECT_FALSE(a.in_progress());

  // Duplicated: 0, 1, 1.
  ASSERT_TRUE(a.Add(1, 0, 3, n, c[0]).ok());
  ASSERT_TRUE(a.Add(1, 1, 3, n, c[1]).ok());
  expect_error(a.Add(1, 1, 3, n, c[1]), Status::Code::kDataLoss, "duplicate");
  // After the error, the rest of the broken update is refused as well (no silent restart).
  expect_error(a.Add(1, 2, 3, n, c[2]), Status::Code::kDataLoss, "tail after reset");

  // Mismatched version, count and total size.
  ASSERT_TRUE(a.Add(1, 0, 3, n, c[0]).ok());
  expect_error(a.Add(2, 1, 3, n, c[1]), Status::Code::kDataLoss, "other version");
  ASSERT_TRUE(a.Add(1, 0, 3, n, c[0]).ok());
  expect_error(a.Add(1, 1, 4, n, c[1]), Status::Code::kDataLoss, "other count");
  ASSERT_TRUE(a.Add(1, 0, 3, n, c[0]).ok());
  expect_error(a.Add(1, 1, 3, n + 1, c[1]), Status::Code::kDataLoss, "other size");

  // Truncated: the last chunk arrives but the bytes fall short of the announced size.
  ASSERT_TRUE(a.Add(1, 0, 3, n, c[0]).ok());
  ASSERT_TRUE(a.Add(1, 1, 3, n, c[1]).ok());
  expect_error(a.Add(1, 2, 3, n, c[2].substr(1)), Status::Code::kDataLoss, "short last chunk");

  // Oversize: more data than announced.
  ASSERT_TRUE(a.Add(1, 0, 3, n, c[0]).ok());
  expect_error(a.Add(1, 1, 3, n, c[1] + c[2] + "x"), Status::Code::kDataLoss, "past total");

  // Bad arguments and limits.
  expect_error(a.Add(1, 0, 0, n, c[0]), Status::Code::kInvalidArgument, "count 0");
  expect_error(a.Add(1, 3, 3, n, c[0]), Status::Code::kInvalidArgument, "index >= count");
  ChunkAssembler small(2000);
  expect_error(small.Add(1, 0, 3, n, c[0]), Status::Code::kInvalidArgument, "over the limit");

  // Reset drops a partial update; a fresh one then assembles.
  ASSERT_TRUE(a.Add(5, 0, 3, n, c[0]).ok());
  EXPECT_TRUE(a.in_progress());
  EXPECT_EQ(a.version(), 5u);
  a.Reset();
  StatusOr<std::string> got = FeedAll(&a, 6, c, n);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(*got, payload);
  // Errors name the update and chunk.
  StatusOr<std::optional<std::string>> r = a.Add(11, 2, 3, n, c[2]);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("update v11 chunk 2/3"), std::string::npos) << r.status().message();
}

}  // namespace
}  // namespace sd
