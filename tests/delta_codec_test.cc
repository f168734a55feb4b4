// The delta encodings (sparse, int8) of common/link/update_codec.h.
#include "common/link/update_codec.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <numeric>
#include <random>

#include <gtest/gtest.h>
#include <zstd.h>

#include "common/student/student.h"
#include "tests/update_codec_test_util.h"

namespace sd {
namespace {

using testing::Bits;
using testing::RandomWeights;

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
    StatusOr<std::string> payload = EncodeUpdate(UpdateEncoding::kSparse, base, target, {}, zstd);
    ASSERT_TRUE(payload.ok()) << payload.status().ToString();
    StatusOr<std::vector<float>> back = DecodeUpdate(UpdateEncoding::kSparse, base, *payload, base.size());
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    ExpectBitEqual(*back, expected, zstd ? "zstd" : "raw");
    for (size_t i = 0; i < base.size(); ++i) {
      ASSERT_NEAR((*back)[i], target[i], std::abs(target[i] - base[i]) * 1e-3 + 1e-7) << i;
    }
  }
  // Regular positions and equal deltas compress: the zstd header is used and decodes the same.
  std::vector<float> regular = base;
  for (size_t i = 5; i < regular.size(); i += 37) regular[i] += 0.25f;
  StatusOr<std::string> raw = EncodeUpdate(UpdateEncoding::kSparse, base, regular, {}, false);
  StatusOr<std::string> packed = EncodeUpdate(UpdateEncoding::kSparse, base, regular, {}, true);
  ASSERT_TRUE(raw.ok() && packed.ok());
  EXPECT_EQ((*packed)[0], '\x01');
  EXPECT_LT(packed->size(), raw->size() / 2);
  StatusOr<std::vector<float>> a = DecodeUpdate(UpdateEncoding::kSparse, base, *raw, base.size());
  StatusOr<std::vector<float>> b = DecodeUpdate(UpdateEncoding::kSparse, base, *packed, base.size());
  ASSERT_TRUE(a.ok() && b.ok());
  ExpectBitEqual(*a, SparseExpected(base, regular), "raw regular");
  ExpectBitEqual(*b, *a, "zstd regular");
  // An empty model is a valid update too.
  StatusOr<std::string> empty = EncodeUpdate(UpdateEncoding::kSparse, {}, {}, {}, true);
  ASSERT_TRUE(empty.ok());
  StatusOr<std::vector<float>> empty_back = DecodeUpdate(UpdateEncoding::kSparse, {}, *empty, 0);
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
    StatusOr<std::string> payload = EncodeUpdate(UpdateEncoding::kSparse, base, *t, {}, false);
    ASSERT_TRUE(payload.ok()) << payload.status().ToString();
    // Header, gap coding (0 bytes of gaps beat a 125-byte bitmask), 1000 weights, 0 changed.
    EXPECT_EQ(*payload, std::string("\x00\x01\xe8\x07\x00", 5));
    StatusOr<std::vector<float>> back = DecodeUpdate(UpdateEncoding::kSparse, base, *payload, base.size());
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
  StatusOr<std::string> dense = EncodeUpdate(UpdateEncoding::kSparse, base, changed_every(2), {}, false);
  ASSERT_TRUE(dense.ok());
  EXPECT_EQ((*dense)[1], '\x00');  // bitmask
  EXPECT_EQ(dense->size(), 1 + 1 + 2 + 2 + mask_bytes + 2 * 5000);  // header, coding, N, K, mask, halves
  // Every 100th weight: 100 one-byte gaps < 1250 bitmask bytes.
  StatusOr<std::string> sparse = EncodeUpdate(UpdateEncoding::kSparse, base, changed_every(100), {}, false);
  ASSERT_TRUE(sparse.ok());
  EXPECT_EQ((*sparse)[1], '\x01');  // varint gaps
  EXPECT_EQ(sparse->size(), 1 + 1 + 2 + 1 + 100 + 2 * 100);
  // Every 8th: 1250 gap bytes tie with the 1250-byte bitmask, which wins the tie.
  StatusOr<std::string> tie = EncodeUpdate(UpdateEncoding::kSparse, base, changed_every(8), {}, false);
  ASSERT_TRUE(tie.ok());
  EXPECT_EQ((*tie)[1], '\x00');
  // Gaps of 128 and more take two varint bytes.
  StatusOr<std::string> wide = EncodeUpdate(UpdateEncoding::kSparse, base, changed_every(200), {}, false);
  ASSERT_TRUE(wide.ok());
  EXPECT_EQ((*wide)[1], '\x01');
  EXPECT_EQ(wide->size(), 1 + 1 + 2 + 1 + (1 + 49 * 2) + 2 * 50);
  for (const StatusOr<std::string>* p : {&dense, &sparse, &tie, &wide}) {
    StatusOr<std::vector<float>> back = DecodeUpdate(UpdateEncoding::kSparse, base, **p, n);
    ASSERT_TRUE(back.ok()) << back.status().ToString();
  }
}

TEST(SparseCodecTest, RefusesUnrepresentableDeltasAndMismatchedSizes) {
  std::vector<float> base = RandomWeights(100, 15);
  std::vector<float> target = base;
  target[42] = 70000.0f;
  StatusOr<std::string> p = EncodeUpdate(UpdateEncoding::kSparse, base, target, {});
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), Status::Code::kInvalidArgument);
  EXPECT_NE(p.status().message().find("42"), std::string::npos) << p.status().message();
  target[42] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(EncodeUpdate(UpdateEncoding::kSparse, base, target, {}).status().code(), Status::Code::kInvalidArgument);
  target[42] = base[42];
  base.pop_back();
  EXPECT_EQ(EncodeUpdate(UpdateEncoding::kSparse, base, target, {}).status().code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(EncodeUpdate(UpdateEncoding::kInt8, base, target, {}).status().code(), Status::Code::kInvalidArgument);
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
    StatusOr<std::string> payload = EncodeUpdate(UpdateEncoding::kInt8, base, target, layout, zstd);
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
    StatusOr<std::vector<float>> back = DecodeUpdate(UpdateEncoding::kInt8, base, *payload, n);
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
  StatusOr<std::string> one = EncodeUpdate(UpdateEncoding::kInt8, base, target, {}, false);
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(one->size(), 1 + 1 + 3 + 4 + n);
  ASSERT_TRUE(DecodeUpdate(UpdateEncoding::kInt8, base, *one, n).ok());
  EXPECT_EQ(EncodeUpdate(UpdateEncoding::kInt8, base, target, {n - 1}).status().code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(EncodeUpdate(UpdateEncoding::kInt8, base, target, {n, 1}).status().code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(EncodeUpdate(UpdateEncoding::kFullFp32, {}, target, {n + 1}).status().code(), Status::Code::kInvalidArgument);
  std::vector<float> inf_target = target;
  inf_target[7] = std::numeric_limits<float>::infinity();
  StatusOr<std::string> refused = EncodeUpdate(UpdateEncoding::kInt8, base, inf_target, layout);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), Status::Code::kInvalidArgument);
  EXPECT_NE(refused.status().message().find("weight 7 "), std::string::npos) << refused.status().message();
}

TEST(DeltaCodecTest, DecodingNeedsABaseOfTheExpectedSize) {
  const std::vector<float> base = RandomWeights(100, 18);
  std::vector<float> target = base;
  target[3] += 1.0f;
  for (UpdateEncoding enc : {UpdateEncoding::kSparse, UpdateEncoding::kInt8}) {
    EXPECT_FALSE(IsFullEncoding(enc));
    StatusOr<std::string> payload = EncodeUpdate(enc, base, target, {});
    ASSERT_TRUE(payload.ok()) << payload.status().ToString();
    StatusOr<std::vector<float>> r = DecodeUpdate(enc, {}, *payload, base.size());
    ASSERT_FALSE(r.ok()) << UpdateEncodingName(enc);
    EXPECT_EQ(r.status().code(), Status::Code::kInvalidArgument) << r.status().ToString();
    EXPECT_NE(r.status().message().find("base"), std::string::npos) << r.status().message();
    // The right base but a receiver of another size: the payload does not fit it.
    std::vector<float> bigger = base;
    bigger.push_back(0.0f);
    ExpectDataLoss(DecodeUpdate(enc, bigger, *payload, bigger.size()), std::string(UpdateEncodingName(enc)) + " other size");
  }
}

TEST(DeltaCodecTest, MalformedPayloadsNameTheProblem) {
  const std::vector<float> base(10, 0.5f);
  auto decode = [&](UpdateEncoding enc, const std::string& body) {
    return DecodeUpdate(enc, base, std::string(1, '\0') + body, base.size());
  };
  const std::string one_half("\x00\x3c", 2);  // 1.0
  ASSERT_TRUE(decode(UpdateEncoding::kSparse, std::string("\x01\x0a\x01\x03", 4) + one_half).ok());
  EXPECT_EQ((*decode(UpdateEncoding::kSparse, std::string("\x01\x0a\x01\x03", 4) + one_half))[3], 1.5f);
  ExpectDataLoss(decode(UpdateEncoding::kSparse, ""), "empty body", "position coding");
  ExpectDataLoss(decode(UpdateEncoding::kSparse, std::string("\x02\x0a\x00", 3)), "coding byte", "unknown position coding");
  ExpectDataLoss(decode(UpdateEncoding::kSparse, std::string("\x01\x0b\x00", 3)), "other model size", "is for 11 weights");
  ExpectDataLoss(decode(UpdateEncoding::kSparse, std::string("\x01\x0a\x0b", 3)), "count > n", "11 changed positions");
  ExpectDataLoss(decode(UpdateEncoding::kSparse, std::string("\x01\x0a\x02\x03", 4)), "varint past the end", "runs past the end");
  ExpectDataLoss(decode(UpdateEncoding::kSparse, std::string("\x01\x0a\x01\x83", 4)), "varint cut", "runs past the end");
  ExpectDataLoss(decode(UpdateEncoding::kSparse, std::string("\x01\x0a\x01\x0a", 4) + one_half), "position out of range", "beyond");
  ExpectDataLoss(decode(UpdateEncoding::kSparse, std::string("\x01\x0a\x02\x03\x00", 5) + one_half + one_half), "not increasing",
                 "does not increase");
  ExpectDataLoss(decode(UpdateEncoding::kSparse, std::string("\x01\x0a\x02\x03\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 14) +
                                      one_half + one_half),
                 "huge gap", "beyond");
  ExpectDataLoss(decode(UpdateEncoding::kSparse, std::string("\x01\x0a\x01\x83\x00", 5) + one_half), "overlong varint",
                 "not minimally encoded");
  ExpectDataLoss(decode(UpdateEncoding::kSparse, std::string("\x00\x0a\x01\x00\x04", 5) + one_half), "bit beyond n", "beyond the 10");
  ExpectDataLoss(decode(UpdateEncoding::kSparse, std::string("\x00\x0a\x01\x03\x00", 5) + one_half), "popcount", "more than");
  ExpectDataLoss(decode(UpdateEncoding::kSparse, std::string("\x00\x0a\x02\x01\x00", 5) + one_half + one_half), "popcount", "marks 1");
  ExpectDataLoss(decode(UpdateEncoding::kSparse, std::string("\x01\x0a\x01\x03", 4) + "\x00"), "half cut", "truncated in the deltas");
  ExpectDataLoss(decode(UpdateEncoding::kSparse, std::string("\x01\x0a\x01\x03", 4) + one_half + "x"), "trailing", "trailing");
  ExpectDataLoss(decode(UpdateEncoding::kSparse, std::string("\x01\x0a\x01\x03\x00\x7c", 6)), "inf delta", "non-finite");
  ExpectDataLoss(decode(UpdateEncoding::kSparse, std::string("\x01\x0a\x01\x03\x00\x80", 6)), "-0 delta", "zero");

  auto scale = [](float s) {
    std::string b(4, '\0');
    const uint32_t v = Bits(s);
    for (int i = 0; i < 4; ++i) b[i] = static_cast<char>(v >> (8 * i));
    return b;
  };
  const std::string q10(10, '\x02');
  ASSERT_TRUE(decode(UpdateEncoding::kInt8, "\x01\x0a" + scale(0.25f) + q10).ok());
  EXPECT_EQ((*decode(UpdateEncoding::kInt8, "\x01\x0a" + scale(0.25f) + q10))[9], 1.0f);
  ASSERT_TRUE(decode(UpdateEncoding::kInt8, "\x02\x04" + scale(0.0f) + "\x06" + scale(0.0f)).ok());
  ExpectDataLoss(decode(UpdateEncoding::kInt8, ""), "empty body", "tensor count");
  ExpectDataLoss(decode(UpdateEncoding::kInt8, "\x0b"), "more tensors than weights", "11 tensors");
  ExpectDataLoss(decode(UpdateEncoding::kInt8, "\x01\x09" + scale(0.25f) + q10.substr(1)), "sizes short", "sum to 9");
  ExpectDataLoss(decode(UpdateEncoding::kInt8, "\x01\x0b" + scale(0.25f) + q10), "sizes past n", "runs past");
  ExpectDataLoss(decode(UpdateEncoding::kInt8, std::string("\x02\x00", 2) + scale(0.25f) + q10), "size 0", "size 0");
  ExpectDataLoss(decode(UpdateEncoding::kInt8, "\x01\x0a" + scale(std::numeric_limits<float>::quiet_NaN()) + q10), "NaN scale",
                 "scale");
  ExpectDataLoss(decode(UpdateEncoding::kInt8, "\x01\x0a" + scale(std::numeric_limits<float>::infinity()) + q10), "inf scale",
                 "scale");
  ExpectDataLoss(decode(UpdateEncoding::kInt8, "\x01\x0a" + scale(-0.25f) + q10), "negative scale", "scale");
  ExpectDataLoss(decode(UpdateEncoding::kInt8, "\x01\x0a" + scale(0.25f).substr(0, 3)), "scale cut", "truncated in the scale");
  ExpectDataLoss(decode(UpdateEncoding::kInt8, "\x01\x0a" + scale(0.25f) + q10.substr(1)), "values cut", "int8 values");
  ExpectDataLoss(decode(UpdateEncoding::kInt8, "\x01\x0a" + scale(0.25f) + q10 + "x"), "trailing", "trailing");
  ExpectDataLoss(decode(UpdateEncoding::kInt8, "\x01\x0a" + scale(0.25f) + std::string(9, '\x01') + "\x80"), "-128", "-128");
  ExpectDataLoss(decode(UpdateEncoding::kInt8, "\x02\x04" + scale(0.0f) + "\x06"), "second tensor cut", "tensor 1");
  // A zstd frame announcing more than any valid body of 10 weights can hold.
  const std::string big(1000, '\x01');
  std::string frame(ZSTD_compressBound(big.size()), '\0');
  frame.resize(ZSTD_compress(frame.data(), frame.size(), big.data(), big.size(), 1));
  ExpectDataLoss(DecodeUpdate(UpdateEncoding::kInt8, base, "\x01" + frame, base.size()), "zstd too big", "at most");
}

// Every prefix of a valid payload is an error and no flipped byte makes the decoder crash or
// return a wrongly sized result.
void SweepCorruptions(UpdateEncoding enc, const std::vector<float>& base, const std::string& payload) {
  SCOPED_TRACE(UpdateEncodingName(enc) + std::string(payload[0] == '\x01' ? " zstd" : " raw"));
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
    UpdateEncoding enc;
    std::vector<float> target;
    std::vector<size_t> layout;
  };
  const Case cases[] = {
      {UpdateEncoding::kSparse, PerturbSome(base, 45, 0.01f, &rng), {}},   // varint gaps
      {UpdateEncoding::kSparse, PerturbSome(base, 700, 0.01f, &rng), {}},  // bitmask
      {UpdateEncoding::kSparse, regular, {}},
      {UpdateEncoding::kInt8, PerturbSome(base, 75, 0.01f, &rng), layout},
      {UpdateEncoding::kInt8, regular, layout},
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
  StatusOr<std::string> full = EncodeUpdate(UpdateEncoding::kFullFp32, {}, target, sizes, false);
  ASSERT_TRUE(full.ok());
  for (bool zstd : {false, true}) {
    StatusOr<std::string> sparse = EncodeUpdate(UpdateEncoding::kSparse, base, target, sizes, zstd);
    ASSERT_TRUE(sparse.ok()) << sparse.status().ToString();
    EXPECT_LE(sparse->size() * 10, full->size()) << sparse->size() << " vs " << full->size();
    StatusOr<std::vector<float>> back = DecodeUpdate(UpdateEncoding::kSparse, base, *sparse, base.size());
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
    const UpdateEncoding enc = round % 2 == 0 ? UpdateEncoding::kSparse : UpdateEncoding::kInt8;
    SCOPED_TRACE("round " + std::to_string(round) + " " + UpdateEncodingName(enc));
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

}  // namespace
}  // namespace sd
