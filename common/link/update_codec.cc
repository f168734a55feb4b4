#include "common/link/update_codec.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include <zstd.h>

namespace sd {
namespace {

constexpr uint8_t kHeaderRaw = 0x00;
constexpr uint8_t kHeaderZstd = 0x01;
// Weights rarely compress much; level 3 (zstd's default) keeps encoding a few ms per MB.
constexpr int kZstdLevel = 3;

bool IsDelta(UpdateEncoding kind) { return kind == UpdateEncoding::kSparse || kind == UpdateEncoding::kInt8; }

// Sparse position codings (the first body byte).
constexpr uint8_t kPositionsBitmask = 0x00;
constexpr uint8_t kPositionsGaps = 0x01;
constexpr size_t kMaxVarintBytes = 10;  // a uint64_t in 7-bit groups

// The most body bytes a valid payload of `n` weights can have (for the full encodings, the
// exact size). Callers keep n <= SIZE_MAX / 16, so nothing here overflows.
size_t MaxBodySize(UpdateEncoding kind, size_t n) {
  switch (kind) {
    case UpdateEncoding::kFullFp32:
      return 4 * n;
    case UpdateEncoding::kFullFp16:
      return 2 * n;
    case UpdateEncoding::kSparse:  // coding byte, N, K, positions (never more than the bitmask), K halves
      return 1 + 2 * kMaxVarintBytes + (n + 7) / 8 + 2 * n;
    case UpdateEncoding::kInt8:  // T <= n tensors, each a size varint, a scale and at most its weights
      return kMaxVarintBytes + n * (kMaxVarintBytes + 4) + n;
  }
  return 0;
}

uint32_t FloatBits(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof(bits));
  return bits;
}

float BitsFloat(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

// Explicit byte order, so the wire format does not depend on the host.
void PutLe32(char* out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out[i] = static_cast<char>((v >> (8 * i)) & 0xff);
}
void PutLe16(char* out, uint16_t v) {
  out[0] = static_cast<char>(v & 0xff);
  out[1] = static_cast<char>(v >> 8);
}
uint32_t GetLe32(const char* in) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= uint32_t{static_cast<unsigned char>(in[i])} << (8 * i);
  return v;
}
uint16_t GetLe16(const char* in) {
  return static_cast<uint16_t>(static_cast<unsigned char>(in[0]) |
                               (static_cast<unsigned char>(in[1]) << 8));
}

size_t VarintSize(uint64_t v) {
  size_t n = 1;
  for (; v >= 0x80; v >>= 7) ++n;
  return n;
}

void PutVarint(std::string* out, uint64_t v) {
  for (; v >= 0x80; v >>= 7) out->push_back(static_cast<char>((v & 0x7f) | 0x80));
  out->push_back(static_cast<char>(v));
}

void AppendLe32(std::string* out, uint32_t v) {
  char bytes[4];
  PutLe32(bytes, v);
  out->append(bytes, 4);
}

// The int8 receiver's value for one weight. The product is exact in double (8 x 24 bits) and
// rounded to float once before the float add, so no host can fuse it into an FMA and get other
// bits than its peer.
float Dequantize(float base, int8_t q, float scale) {
  if (q == 0) return base;
  const float step = static_cast<float>(static_cast<double>(q) * static_cast<double>(scale));
  return base + step;
}

std::string EncodeFull(UpdateEncoding kind, const std::vector<float>& target) {
  std::string body(MaxBodySize(kind, target.size()), '\0');
  if (kind == UpdateEncoding::kFullFp32) {
    for (size_t i = 0; i < target.size(); ++i) PutLe32(&body[4 * i], FloatBits(target[i]));
  } else {
    for (size_t i = 0; i < target.size(); ++i) PutLe16(&body[2 * i], FloatToHalf(target[i]));
  }
  return body;
}

StatusOr<std::string> EncodeSparse(const std::vector<float>& base, const std::vector<float>& target) {
  std::vector<size_t> positions;
  std::vector<uint16_t> deltas;
  size_t gap_bytes = 0;
  for (size_t i = 0; i < target.size(); ++i) {
    if (FloatBits(target[i]) == FloatBits(base[i])) continue;
    const float delta = target[i] - base[i];
    const uint16_t half = FloatToHalf(delta);
    if (!std::isfinite(HalfToFloat(half))) {
      return Status::InvalidArgument("sparse: weight " + std::to_string(i) + " changes by " + std::to_string(delta) +
                                     " (from " + std::to_string(base[i]) + " to " + std::to_string(target[i]) +
                                     "), not a finite half");
    }
    if ((half & 0x7fff) == 0) continue;  // rounds to a zero delta: the receiver keeps base
    gap_bytes += VarintSize(positions.empty() ? i : i - positions.back());
    positions.push_back(i);
    deltas.push_back(half);
  }
  const size_t mask_bytes = (target.size() + 7) / 8;
  const bool bitmask = mask_bytes <= gap_bytes;
  std::string body;
  body.reserve(1 + 2 * kMaxVarintBytes + std::min(mask_bytes, gap_bytes) + 2 * deltas.size());
  body.push_back(static_cast<char>(bitmask ? kPositionsBitmask : kPositionsGaps));
  PutVarint(&body, target.size());
  PutVarint(&body, positions.size());
  if (bitmask) {
    const size_t at = body.size();
    body.resize(at + mask_bytes, '\0');
    for (size_t p : positions) body[at + p / 8] = static_cast<char>(body[at + p / 8] | (1 << (p % 8)));
  } else {
    for (size_t j = 0; j < positions.size(); ++j) {
      PutVarint(&body, j == 0 ? positions[0] : positions[j] - positions[j - 1]);
    }
  }
  const size_t at = body.size();
  body.resize(at + 2 * deltas.size());
  for (size_t j = 0; j < deltas.size(); ++j) PutLe16(&body[at + 2 * j], deltas[j]);
  return body;
}

// `tensor_sizes` sums to target.size() and holds no zeros.
StatusOr<std::string> EncodeInt8(const std::vector<float>& base, const std::vector<float>& target,
                                 const std::vector<size_t>& tensor_sizes) {
  std::string body;
  body.reserve(kMaxVarintBytes + tensor_sizes.size() * (kMaxVarintBytes + 4) + target.size());
  PutVarint(&body, tensor_sizes.size());
  size_t begin = 0;
  for (const size_t size : tensor_sizes) {
    const size_t end = begin + size;
    float max_abs = 0.0f;
    for (size_t i = begin; i < end; ++i) {
      const float delta = target[i] - base[i];
      if (!std::isfinite(delta)) {
        return Status::InvalidArgument("int8: weight " + std::to_string(i) + " changes from " +
                                       std::to_string(base[i]) + " to " + std::to_string(target[i]) +
                                       ", not a finite delta");
      }
      max_abs = std::max(max_abs, std::abs(delta));
    }
    float scale = max_abs / 127.0f;
    if (max_abs > 0.0f) {
      // Rounding (or a denormal max_abs / 127 going to 0) may leave the largest delta just
      // beyond 127 steps; widen the step until it fits, so |q| <= 127 keeps the error <= scale/2.
      scale = std::max(scale, std::numeric_limits<float>::denorm_min());
      while (max_abs / scale > 127.0f) scale = std::nextafter(scale, std::numeric_limits<float>::infinity());
    }
    PutVarint(&body, size);
    AppendLe32(&body, FloatBits(scale));
    if (scale > 0.0f) {
      for (size_t i = begin; i < end; ++i) {
        const float q = std::round((target[i] - base[i]) / scale);
        body.push_back(static_cast<char>(static_cast<int8_t>(std::clamp(q, -127.0f, 127.0f))));
      }
    }
    begin = end;
  }
  return body;
}

// Reads a body front to back; every read checks the bytes left, so a truncated or corrupt
// body gives DataLoss naming what was being read and where, never an out-of-bounds read.
class BodyReader {
 public:
  BodyReader(const char* data, size_t size) : data_(data), size_(size) {}

  Status Byte(const char* what, uint8_t* out) {
    if (at_ >= size_) return Truncated(what, 1);
    *out = static_cast<uint8_t>(data_[at_++]);
    return Status::Ok();
  }

  Status Varint(const char* what, uint64_t* out) {
    const size_t start = at_;
    uint64_t v = 0;
    for (size_t i = 0; i < kMaxVarintBytes; ++i) {
      if (at_ >= size_) {
        return Status::DataLoss(std::string("varint ") + what + " at byte " + std::to_string(start) +
                                " runs past the end of the body (" + std::to_string(size_) + " bytes)");
      }
      const uint8_t byte = static_cast<uint8_t>(data_[at_++]);
      if (i == kMaxVarintBytes - 1 && byte > 1) break;  // bits beyond 64
      v |= uint64_t{byte & 0x7fu} << (7 * i);
      if ((byte & 0x80) == 0) {
        if (byte == 0 && i > 0) {
          return Status::DataLoss(std::string("varint ") + what + " at byte " + std::to_string(start) +
                                  " is not minimally encoded");
        }
        *out = v;
        return Status::Ok();
      }
    }
    return Status::DataLoss(std::string("varint ") + what + " at byte " + std::to_string(start) +
                            " does not fit 64 bits");
  }

  Status Le32(const char* what, uint32_t* out) {
    const char* bytes = nullptr;
    SD_RETURN_IF_ERROR(Bytes(what, 4, &bytes));
    *out = GetLe32(bytes);
    return Status::Ok();
  }

  // Points `*out` at the next `n` bytes.
  Status Bytes(const char* what, size_t n, const char** out) {
    if (n > size_ - at_) return Truncated(what, n);
    *out = data_ + at_;
    at_ += n;
    return Status::Ok();
  }

  // Every byte must be accounted for.
  Status Finish() const {
    if (at_ == size_) return Status::Ok();
    return Status::DataLoss(std::to_string(size_ - at_) + " trailing bytes after byte " + std::to_string(at_) +
                            " of the body");
  }

 private:
  Status Truncated(const char* what, size_t n) const {
    return Status::DataLoss(std::string("body truncated in ") + what + " at byte " + std::to_string(at_) + ": needs " +
                            std::to_string(n) + " bytes, " + std::to_string(size_ - at_) + " left");
  }

  const char* data_;
  size_t size_;
  size_t at_ = 0;
};

StatusOr<std::vector<float>> DecodeSparse(const char* data, size_t size, const std::vector<float>& base) {
  const size_t n = base.size();
  BodyReader in(data, size);
  uint8_t coding = 0;
  SD_RETURN_IF_ERROR(in.Byte("the position coding byte", &coding));
  uint64_t weights = 0;
  SD_RETURN_IF_ERROR(in.Varint("weight count", &weights));
  if (weights != n) {
    return Status::DataLoss("payload is for " + std::to_string(weights) + " weights, the receiver has " +
                            std::to_string(n));
  }
  uint64_t count = 0;
  SD_RETURN_IF_ERROR(in.Varint("changed count", &count));
  if (count > n) {
    return Status::DataLoss(std::to_string(count) + " changed positions for " + std::to_string(n) + " weights");
  }
  std::vector<size_t> positions;
  positions.reserve(static_cast<size_t>(count));
  if (coding == kPositionsBitmask) {
    const char* mask = nullptr;
    SD_RETURN_IF_ERROR(in.Bytes("the position bitmask", (n + 7) / 8, &mask));
    for (size_t byte = 0; byte < (n + 7) / 8; ++byte) {
      const uint8_t bits = static_cast<uint8_t>(mask[byte]);
      for (size_t bit = 0; bit < 8 && (bits >> bit) != 0; ++bit) {
        if (((bits >> bit) & 1) == 0) continue;
        const size_t p = 8 * byte + bit;
        if (p >= n) {
          return Status::DataLoss("position bitmask sets bit " + std::to_string(p) + ", beyond the " +
                                  std::to_string(n) + " weights");
        }
        if (positions.size() == count) {
          return Status::DataLoss("position bitmask marks more than the " + std::to_string(count) +
                                  " changed positions announced");
        }
        positions.push_back(p);
      }
    }
    if (positions.size() != count) {
      return Status::DataLoss("position bitmask marks " + std::to_string(positions.size()) + " positions, " +
                              std::to_string(count) + " announced");
    }
  } else if (coding == kPositionsGaps) {
    for (uint64_t j = 0; j < count; ++j) {
      uint64_t gap = 0;
      SD_RETURN_IF_ERROR(in.Varint("position gap", &gap));
      if (j > 0 && gap == 0) {
        return Status::DataLoss("position " + std::to_string(j) + " does not increase (gap 0 after position " +
                                std::to_string(positions.back()) + ")");
      }
      const size_t first = j == 0 ? 0 : positions.back();
      if (gap >= n - first) {
        return Status::DataLoss("position " + std::to_string(j) + " (" + std::to_string(first) + " + " +
                                std::to_string(gap) + ") is beyond the " + std::to_string(n) + " weights");
      }
      positions.push_back(first + static_cast<size_t>(gap));
    }
  } else {
    return Status::DataLoss("unknown position coding byte " + std::to_string(coding));
  }
  const char* halves = nullptr;
  SD_RETURN_IF_ERROR(in.Bytes("the deltas", 2 * positions.size(), &halves));
  SD_RETURN_IF_ERROR(in.Finish());

  std::vector<float> out = base;
  for (size_t j = 0; j < positions.size(); ++j) {
    const uint16_t half = GetLe16(halves + 2 * j);
    // The encoder sends neither: a zero delta is left out, a non-finite one refused.
    if ((half & 0x7fff) == 0 || (half & 0x7c00) == 0x7c00) {
      return Status::DataLoss("delta " + std::to_string(j) + " (position " + std::to_string(positions[j]) +
                              ") is a zero or non-finite half (bits " + std::to_string(half) + ")");
    }
    out[positions[j]] = base[positions[j]] + HalfToFloat(half);
  }
  return out;
}

StatusOr<std::vector<float>> DecodeInt8(const char* data, size_t size, const std::vector<float>& base) {
  const size_t n = base.size();
  BodyReader in(data, size);
  uint64_t tensors = 0;
  SD_RETURN_IF_ERROR(in.Varint("tensor count", &tensors));
  if (tensors > n) return Status::DataLoss(std::to_string(tensors) + " tensors for " + std::to_string(n) + " weights");
  std::vector<float> out = base;
  size_t begin = 0;
  for (uint64_t t = 0; t < tensors; ++t) {
    const std::string where = "tensor " + std::to_string(t);
    uint64_t tensor_size = 0;
    SD_RETURN_IF_ERROR(in.Varint("tensor size", &tensor_size).WithContext(where));
    if (tensor_size == 0) return Status::DataLoss(where + " has size 0");
    if (tensor_size > n - begin) {
      return Status::DataLoss(where + " of size " + std::to_string(tensor_size) + " at weight " +
                              std::to_string(begin) + " runs past the " + std::to_string(n) + " weights");
    }
    uint32_t scale_bits = 0;
    SD_RETURN_IF_ERROR(in.Le32("the scale", &scale_bits).WithContext(where));
    const float scale = BitsFloat(scale_bits);
    if (!std::isfinite(scale) || std::signbit(scale)) {
      return Status::DataLoss(where + " has scale " + std::to_string(scale) + ", not finite and >= 0");
    }
    const size_t end = begin + static_cast<size_t>(tensor_size);
    if (scale > 0.0f) {
      const char* q = nullptr;
      SD_RETURN_IF_ERROR(in.Bytes("the int8 values", end - begin, &q).WithContext(where));
      for (size_t i = begin; i < end; ++i) {
        const int8_t v = static_cast<int8_t>(q[i - begin]);
        if (v == -128) {
          return Status::DataLoss(where + ": value -128 at weight " + std::to_string(i) + " (the range is +-127)");
        }
        out[i] = Dequantize(base[i], v, scale);
      }
    }
    begin = end;
  }
  if (begin != n) {
    return Status::DataLoss("tensor sizes sum to " + std::to_string(begin) + ", expected " + std::to_string(n) +
                            " weights");
  }
  SD_RETURN_IF_ERROR(in.Finish());
  return out;
}

}  // namespace

uint16_t FloatToHalf(float value) {
  const uint32_t x = FloatBits(value);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000);
  const uint32_t exponent = (x >> 23) & 0xff;
  uint32_t mantissa = x & 0x7fffff;
  if (exponent == 0xff) {
    if (mantissa == 0) return sign | 0x7c00;  // inf
    // NaN: keep the top payload bits and force the quiet bit, so it cannot turn into inf.
    return static_cast<uint16_t>(sign | 0x7e00 | (mantissa >> 13));
  }
  // The half exponent of this value if it were normal there.
  const int32_t e = static_cast<int32_t>(exponent) - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;  // beyond the half range (before rounding)
  if (e <= 0) {
    // Half denormal (or zero). In units of the smallest denormal (2^-24) the value is the
    // 24-bit significand times 2^(e - 14): a right shift by 14 - e, rounded to nearest even.
    if (e < -10) return sign;  // below half of the smallest denormal: rounds to zero
    mantissa |= 0x800000;      // the implicit leading one
    const uint32_t shift = static_cast<uint32_t>(14 - e);  // 14..24
    uint32_t half_mantissa = mantissa >> shift;
    const uint32_t rest = mantissa & ((1u << shift) - 1);
    const uint32_t halfway = 1u << (shift - 1);
    if (rest > halfway || (rest == halfway && (half_mantissa & 1))) ++half_mantissa;
    // A carry out of the 10 mantissa bits lands in the exponent: the smallest normal. Right.
    return static_cast<uint16_t>(sign | half_mantissa);
  }
  uint32_t half = (static_cast<uint32_t>(e) << 10) | (mantissa >> 13);
  const uint32_t rest = mantissa & 0x1fff;
  if (rest > 0x1000 || (rest == 0x1000 && (half & 1))) ++half;  // a carry may reach inf: right
  return static_cast<uint16_t>(sign | half);
}

float HalfToFloat(uint16_t half) {
  const uint32_t sign = uint32_t{half & 0x8000u} << 16;
  const uint32_t exponent = (half >> 10) & 0x1f;
  const uint32_t mantissa = half & 0x3ff;
  if (exponent == 0) {
    // Zero or denormal: mantissa * 2^-24 is exact in float.
    const float magnitude = std::ldexp(static_cast<float>(mantissa), -24);
    return sign ? -magnitude : magnitude;
  }
  if (exponent == 0x1f) return BitsFloat(sign | 0x7f800000 | (mantissa << 13));  // inf / NaN
  return BitsFloat(sign | ((exponent + 127 - 15) << 23) | (mantissa << 13));
}

const char* UpdateEncodingName(UpdateEncoding encoding) {
  switch (encoding) {
    case UpdateEncoding::kFullFp32: return "full_fp32";
    case UpdateEncoding::kFullFp16: return "full_fp16";
    case UpdateEncoding::kSparse: return "sparse";
    case UpdateEncoding::kInt8: return "int8";
  }
  return "unknown";
}

StatusOr<UpdateEncoding> ParseUpdateEncoding(const std::string& name) {
  for (UpdateEncoding e : {UpdateEncoding::kFullFp32, UpdateEncoding::kFullFp16, UpdateEncoding::kSparse,
                           UpdateEncoding::kInt8})
    if (name == UpdateEncodingName(e)) return e;
  return Status::InvalidArgument("unknown update encoding '" + name.substr(0, 32) +
                                 "' (known: full_fp32, full_fp16, sparse, int8)");
}

bool IsFullEncoding(UpdateEncoding encoding) { return !IsDelta(encoding); }

StatusOr<std::string> EncodeUpdate(UpdateEncoding kind, const std::vector<float>& base,
                                   const std::vector<float>& target, const std::vector<size_t>& tensor_sizes,
                                   bool allow_zstd) {
  const std::string encoding = UpdateEncodingName(kind);
  // The tensors int8 quantizes by; empty ones carry nothing and are left out.
  std::vector<size_t> tensors;
  size_t layout_sum = 0;
  for (const size_t size : tensor_sizes) {
    if (size > target.size() - layout_sum) {
      return Status::InvalidArgument(encoding + ": tensor sizes sum past the " + std::to_string(target.size()) +
                                     " target weights");
    }
    layout_sum += size;
    if (size > 0) tensors.push_back(size);
  }
  if (tensor_sizes.empty() && !target.empty()) tensors.push_back(target.size());
  if (!tensor_sizes.empty() && layout_sum != target.size()) {
    return Status::InvalidArgument(encoding + ": tensor sizes sum to " + std::to_string(layout_sum) + ", target has " +
                                   std::to_string(target.size()) + " weights");
  }
  if (IsDelta(kind) && base.size() != target.size()) {
    return Status::InvalidArgument(encoding + ": base has " + std::to_string(base.size()) + " weights, target " +
                                   std::to_string(target.size()));
  }
  if (kind == UpdateEncoding::kFullFp16) {
    for (size_t i = 0; i < target.size(); ++i) {
      if (std::isfinite(target[i]) && std::isinf(HalfToFloat(FloatToHalf(target[i])))) {
        return Status::InvalidArgument("full_fp16: weight " + std::to_string(i) + " = " +
                                       std::to_string(target[i]) + " is beyond the half range");
      }
    }
  }
  std::string body;
  if (kind == UpdateEncoding::kSparse) {
    SD_ASSIGN_OR_RETURN(body, EncodeSparse(base, target));
  } else if (kind == UpdateEncoding::kInt8) {
    SD_ASSIGN_OR_RETURN(body, EncodeInt8(base, target, tensors));
  } else {
    body = EncodeFull(kind, target);
  }
  if (allow_zstd && !body.empty()) {
    std::string compressed(ZSTD_compressBound(body.size()), '\0');
    const size_t n = ZSTD_compress(compressed.data(), compressed.size(), body.data(), body.size(), kZstdLevel);
    // A compression failure is not an error for the update: the raw body is always valid.
    if (!ZSTD_isError(n) && n < body.size()) {
      compressed.resize(n);
      return std::string(1, static_cast<char>(kHeaderZstd)) + compressed;
    }
  }
  return std::string(1, static_cast<char>(kHeaderRaw)) + body;
}

StatusOr<std::vector<float>> DecodeUpdate(UpdateEncoding kind, const std::vector<float>& base,
                                          const std::string& payload, size_t expected_size) {
  const std::string encoding = UpdateEncodingName(kind);
  if (expected_size > std::numeric_limits<size_t>::max() / 16) {
    return Status::InvalidArgument(encoding + ": expected size " + std::to_string(expected_size) + " too large");
  }
  if (IsDelta(kind) && base.size() != expected_size) {
    return Status::InvalidArgument(encoding + ": deltas need the receiver's current weights as base: it has " +
                                   std::to_string(base.size()) + " weights, expected " +
                                   std::to_string(expected_size));
  }
  // The full encodings have exactly this many body bytes, the delta encodings at most this many.
  const size_t body_size = MaxBodySize(kind, expected_size);
  if (payload.empty()) return Status::DataLoss(encoding + ": empty payload (no header byte)");

  const uint8_t header = static_cast<uint8_t>(payload[0]);
  std::string decompressed;
  const char* body = payload.data() + 1;
  size_t size = payload.size() - 1;
  if (header == kHeaderZstd) {
    const unsigned long long content = ZSTD_getFrameContentSize(body, size);
    if (content == ZSTD_CONTENTSIZE_ERROR || content == ZSTD_CONTENTSIZE_UNKNOWN) {
      return Status::DataLoss(encoding + ": zstd body is corrupt or truncated");
    }
    // Checked before allocating, so a forged size cannot make us reserve gigabytes.
    if (IsDelta(kind) ? content > body_size : content != body_size) {
      return Status::DataLoss(encoding + ": zstd body holds " + std::to_string(content) + " bytes, expected " +
                              (IsDelta(kind) ? "at most " : "") + std::to_string(body_size) + " (" +
                              std::to_string(expected_size) + " weights)");
    }
    decompressed.resize(static_cast<size_t>(content));
    const size_t n = ZSTD_decompress(decompressed.data(), decompressed.size(), body, size);
    if (ZSTD_isError(n)) {
      return Status::DataLoss(encoding + ": zstd decompression failed: " + ZSTD_getErrorName(n));
    }
    if (n != content) return Status::DataLoss(encoding + ": zstd body decompressed to a wrong size");
    body = decompressed.data();
    size = n;
  } else if (header != kHeaderRaw) {
    return Status::DataLoss(encoding + ": unknown payload header byte " + std::to_string(header));
  }
  if (IsDelta(kind)) {
    StatusOr<std::vector<float>> out =
        kind == UpdateEncoding::kSparse ? DecodeSparse(body, size, base) : DecodeInt8(body, size, base);
    if (!out.ok()) return out.status().WithContext(encoding);
    return out;
  }
  if (size != body_size) {
    return Status::DataLoss(encoding + ": body has " + std::to_string(size) + " bytes, expected " +
                            std::to_string(body_size) + " (" + std::to_string(expected_size) + " weights)");
  }

  std::vector<float> out(expected_size);
  if (kind == UpdateEncoding::kFullFp32) {
    for (size_t i = 0; i < expected_size; ++i) out[i] = BitsFloat(GetLe32(body + 4 * i));
  } else {
    for (size_t i = 0; i < expected_size; ++i) out[i] = HalfToFloat(GetLe16(body + 2 * i));
  }
  return out;
}

}  // namespace sd
