#include "common/link/update_codec.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include <gtest/gtest.h>

#include "tests/update_codec_test_util.h"

namespace sd {
namespace {

using testing::Bits;
using testing::RandomWeights;

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
    StatusOr<std::string> payload = EncodeUpdate(UpdateEncoding::kFullFp32, {}, w, {}, zstd);
    ASSERT_TRUE(payload.ok()) << payload.status().ToString();
    StatusOr<std::vector<float>> back = DecodeUpdate(UpdateEncoding::kFullFp32, {}, *payload, w.size());
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    ASSERT_EQ(back->size(), w.size());
    for (size_t i = 0; i < w.size(); ++i) ASSERT_EQ(Bits((*back)[i]), Bits(w[i])) << i;
  }
  // Little-endian on the wire, whatever the host: 1.0f = 0x3f800000.
  StatusOr<std::string> one = EncodeUpdate(UpdateEncoding::kFullFp32, {}, {1.0f}, {}, false);
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(*one, std::string("\x00\x00\x00\x80\x3f", 5));
}

TEST(UpdateCodecTest, Fp16DecodesToRoundedWeightsAtAboutHalfTheSize) {
  const std::vector<float> w = RandomWeights(50000, 2);
  StatusOr<std::string> p32 = EncodeUpdate(UpdateEncoding::kFullFp32, {}, w, {}, false);
  StatusOr<std::string> p16 = EncodeUpdate(UpdateEncoding::kFullFp16, {}, w, {}, false);
  ASSERT_TRUE(p32.ok() && p16.ok());
  EXPECT_EQ(p32->size(), 1 + 4 * w.size());
  EXPECT_EQ(p16->size(), 1 + 2 * w.size());
  const double ratio = static_cast<double>(p16->size()) / p32->size();
  EXPECT_NEAR(ratio, 0.5, 0.01);
  StatusOr<std::vector<float>> back = DecodeUpdate(UpdateEncoding::kFullFp16, {}, *p16, w.size());
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  for (size_t i = 0; i < w.size(); ++i) {
    ASSERT_EQ(Bits((*back)[i]), Bits(HalfToFloat(FloatToHalf(w[i])))) << i;
    ASSERT_NEAR((*back)[i], w[i], std::abs(w[i]) * 1e-3 + 1e-7) << i;
  }
  // With zstd allowed, random weights barely compress; the payload is no bigger either way.
  StatusOr<std::string> p16z = EncodeUpdate(UpdateEncoding::kFullFp16, {}, w, {}, true);
  ASSERT_TRUE(p16z.ok());
  EXPECT_LE(p16z->size(), p16->size());
  // Decoding is stable: the server can keep the decoded weights as the edge's.
  StatusOr<std::string> again = EncodeUpdate(UpdateEncoding::kFullFp16, {}, *back, {}, false);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, *p16);
}

TEST(UpdateCodecTest, Fp16RefusesWeightsBeyondHalfRange) {
  std::vector<float> w = RandomWeights(100, 3);
  w[42] = 70000.0f;
  StatusOr<std::string> p = EncodeUpdate(UpdateEncoding::kFullFp16, {}, w, {});
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), Status::Code::kInvalidArgument);
  EXPECT_NE(p.status().message().find("42"), std::string::npos) << p.status().message();
  EXPECT_TRUE(EncodeUpdate(UpdateEncoding::kFullFp32, {}, w, {}).ok());
  // Non-finite weights stay what they are (encoding does not invent the overflow).
  w[42] = std::numeric_limits<float>::infinity();
  EXPECT_TRUE(EncodeUpdate(UpdateEncoding::kFullFp16, {}, w, {}).ok());
}

TEST(UpdateCodecTest, ZstdUsedWhenItHelpsAndFlagged) {
  const std::vector<float> zeros(100000, 0.0f);
  for (UpdateEncoding enc : {UpdateEncoding::kFullFp32, UpdateEncoding::kFullFp16}) {
    SCOPED_TRACE(UpdateEncodingName(enc));
    StatusOr<std::string> raw = EncodeUpdate(enc, {}, zeros, {}, false);
    StatusOr<std::string> packed = EncodeUpdate(enc, {}, zeros, {}, true);
    ASSERT_TRUE(raw.ok() && packed.ok());
    EXPECT_EQ((*raw)[0], '\x00');
    EXPECT_EQ((*packed)[0], '\x01');
    EXPECT_LT(packed->size(), raw->size() / 100);
    StatusOr<std::vector<float>> back = DecodeUpdate(enc, {}, *packed, zeros.size());
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    EXPECT_EQ(*back, zeros);
  }
  // Too small to gain: stays raw.
  StatusOr<std::string> tiny = EncodeUpdate(UpdateEncoding::kFullFp32, {}, {0.5f}, {}, true);
  ASSERT_TRUE(tiny.ok());
  EXPECT_EQ((*tiny)[0], '\x00');
  // An empty model is a valid (raw, header-only) payload.
  StatusOr<std::string> empty = EncodeUpdate(UpdateEncoding::kFullFp16, {}, {}, {}, true);
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(*empty, std::string(1, '\0'));
  StatusOr<std::vector<float>> empty_back = DecodeUpdate(UpdateEncoding::kFullFp16, {}, *empty, 0);
  ASSERT_TRUE(empty_back.ok());
  EXPECT_TRUE(empty_back->empty());
}

TEST(UpdateCodecTest, CorruptOrTruncatedPayloadsGiveErrors) {
  const std::vector<float> w = RandomWeights(1000, 4);
  std::vector<float> compressible(5000, 0.25f);
  StatusOr<std::string> raw = EncodeUpdate(UpdateEncoding::kFullFp32, {}, w, {}, false);
  StatusOr<std::string> packed = EncodeUpdate(UpdateEncoding::kFullFp16, {}, compressible, {}, true);
  ASSERT_TRUE(raw.ok() && packed.ok());
  ASSERT_EQ((*packed)[0], '\x01');

  auto expect_data_loss = [](const StatusOr<std::vector<float>>& r, const std::string& what) {
    ASSERT_FALSE(r.ok()) << what;
    EXPECT_EQ(r.status().code(), Status::Code::kDataLoss) << what << ": " << r.status().ToString();
  };
  expect_data_loss(DecodeUpdate(UpdateEncoding::kFullFp32, {}, "", w.size()), "empty");
  expect_data_loss(DecodeUpdate(UpdateEncoding::kFullFp32, {}, raw->substr(0, raw->size() - 1), w.size()), "truncated raw");
  expect_data_loss(DecodeUpdate(UpdateEncoding::kFullFp32, {}, *raw + "x", w.size()), "trailing byte");
  expect_data_loss(DecodeUpdate(UpdateEncoding::kFullFp32, {}, *raw, w.size() + 1), "wrong expected size");
  expect_data_loss(DecodeUpdate(UpdateEncoding::kFullFp16, {}, *raw, w.size()), "fp32 payload read as fp16");
  std::string bad_header = *raw;
  bad_header[0] = '\x07';
  expect_data_loss(DecodeUpdate(UpdateEncoding::kFullFp32, {}, bad_header, w.size()), "unknown header");
  expect_data_loss(DecodeUpdate(UpdateEncoding::kFullFp16, {}, packed->substr(0, packed->size() / 2), compressible.size()),
                   "truncated zstd");
  expect_data_loss(DecodeUpdate(UpdateEncoding::kFullFp16, {}, packed->substr(0, 3), compressible.size()), "zstd header only");
  expect_data_loss(DecodeUpdate(UpdateEncoding::kFullFp16, {}, *packed, compressible.size() - 1), "zstd wrong size");
  std::string flipped = *packed;
  flipped[flipped.size() / 2] ^= 0x5a;
  flipped[flipped.size() / 2 + 1] ^= 0x33;
  StatusOr<std::vector<float>> r = DecodeUpdate(UpdateEncoding::kFullFp16, {}, flipped, compressible.size());
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
    StatusOr<std::vector<float>> g = DecodeUpdate(UpdateEncoding::kFullFp16, {}, junk, 10);
    if (g.ok()) {
      EXPECT_EQ(g->size(), 10u);
    }
  }
  // Names are checked where they are read (config, wire), by ParseUpdateEncoding.
  StatusOr<UpdateEncoding> unknown = ParseUpdateEncoding("int3");
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.status().code(), Status::Code::kInvalidArgument);
  EXPECT_FALSE(ParseUpdateEncoding("sparse_v0").ok());
  EXPECT_TRUE(ParseUpdateEncoding("full_fp16").ok());
  EXPECT_FALSE(ParseUpdateEncoding("").ok());
}

}  // namespace
}  // namespace sd
