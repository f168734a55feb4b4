#include "common/update_codec.h"

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

// Bytes per weight of a known encoding; 0 for an unknown one.
size_t BytesPerWeight(const std::string& encoding) {
  if (encoding == "full_fp32") return 4;
  if (encoding == "full_fp16") return 2;
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

std::string EncodeBody(const std::string& encoding, const std::vector<float>& target) {
  std::string body(target.size() * BytesPerWeight(encoding), '\0');
  if (encoding == "full_fp32") {
    for (size_t i = 0; i < target.size(); ++i) PutLe32(&body[4 * i], FloatBits(target[i]));
  } else {
    for (size_t i = 0; i < target.size(); ++i) PutLe16(&body[2 * i], FloatToHalf(target[i]));
  }
  return body;
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

bool IsKnownUpdateEncoding(const std::string& encoding) { return BytesPerWeight(encoding) != 0; }

StatusOr<std::string> EncodeUpdate(const std::string& encoding, const std::vector<float>& base,
                                   const std::vector<float>& target, bool allow_zstd) {
  (void)base;  // the full encodings carry every weight
  if (!IsKnownUpdateEncoding(encoding)) {
    return Status::InvalidArgument("unknown update encoding '" + encoding + "'");
  }
  if (encoding == "full_fp16") {
    for (size_t i = 0; i < target.size(); ++i) {
      if (std::isfinite(target[i]) && std::isinf(HalfToFloat(FloatToHalf(target[i])))) {
        return Status::InvalidArgument("full_fp16: weight " + std::to_string(i) + " = " +
                                       std::to_string(target[i]) + " is beyond the half range");
      }
    }
  }
  const std::string body = EncodeBody(encoding, target);
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

StatusOr<std::vector<float>> DecodeUpdate(const std::string& encoding, const std::vector<float>& base,
                                          const std::string& payload, size_t expected_size) {
  (void)base;
  const size_t width = BytesPerWeight(encoding);
  if (width == 0) return Status::InvalidArgument("unknown update encoding '" + encoding + "'");
  if (expected_size > std::numeric_limits<size_t>::max() / width) {
    return Status::InvalidArgument(encoding + ": expected size " + std::to_string(expected_size) + " too large");
  }
  const size_t body_size = expected_size * width;
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
    if (content != body_size) {
      return Status::DataLoss(encoding + ": zstd body holds " + std::to_string(content) + " bytes, expected " +
                              std::to_string(body_size) + " (" + std::to_string(expected_size) + " weights)");
    }
    decompressed.resize(body_size);
    const size_t n = ZSTD_decompress(decompressed.data(), decompressed.size(), body, size);
    if (ZSTD_isError(n)) {
      return Status::DataLoss(encoding + ": zstd decompression failed: " + ZSTD_getErrorName(n));
    }
    if (n != body_size) return Status::DataLoss(encoding + ": zstd body decompressed to a wrong size");
    body = decompressed.data();
    size = n;
  } else if (header != kHeaderRaw) {
    return Status::DataLoss(encoding + ": unknown payload header byte " + std::to_string(header));
  }
  if (size != body_size) {
    return Status::DataLoss(encoding + ": body has " + std::to_string(size) + " bytes, expected " +
                            std::to_string(body_size) + " (" + std::to_string(expected_size) + " weights)");
  }

  std::vector<float> out(expected_size);
  if (width == 4) {
    for (size_t i = 0; i < expected_size; ++i) out[i] = BitsFloat(GetLe32(body + 4 * i));
  } else {
    for (size_t i = 0; i < expected_size; ++i) out[i] = HalfToFloat(GetLe16(body + 2 * i));
  }
  return out;
}

std::vector<std::string> SplitPayload(const std::string& payload, size_t chunk_bytes) {
  if (chunk_bytes == 0 || payload.size() <= chunk_bytes) return {payload};
  std::vector<std::string> chunks;
  chunks.reserve((payload.size() + chunk_bytes - 1) / chunk_bytes);
  for (size_t at = 0; at < payload.size(); at += chunk_bytes) chunks.push_back(payload.substr(at, chunk_bytes));
  return chunks;
}

void ChunkAssembler::Reset() {
  in_progress_ = false;
  version_ = 0;
  count_ = 0;
  next_index_ = 0;
  total_size_ = 0;
  payload_.clear();
  payload_.shrink_to_fit();  // updates are megabytes; do not hold on to the buffer between them
}

StatusOr<std::optional<std::string>> ChunkAssembler::Add(uint64_t new_version, uint32_t index, uint32_t count,
                                                         uint64_t total_size, const std::string& data) {
  const std::string where = "update v" + std::to_string(new_version) + " chunk " + std::to_string(index) + "/" +
                            std::to_string(count);
  auto fail = [this, &where](Status status) {
    Reset();
    return status.WithContext(where);
  };
  if (count == 0) return fail(Status::InvalidArgument("chunk count is 0"));
  if (index >= count) return fail(Status::InvalidArgument("chunk index out of range"));
  if (total_size > max_payload_bytes_) {
    return fail(Status::InvalidArgument("payload of " + std::to_string(total_size) + " bytes exceeds the limit of " +
                                        std::to_string(max_payload_bytes_)));
  }
  if (!in_progress_) {
    if (index != 0) return fail(Status::DataLoss("expected the first chunk (0), no update in progress"));
    in_progress_ = true;
    version_ = new_version;
    count_ = count;
    next_index_ = 0;
    total_size_ = total_size;
    payload_.clear();
    // The announced size is the peer's word; reserve a sane amount and let growth do the rest.
    payload_.reserve(static_cast<size_t>(std::min<uint64_t>(total_size, uint64_t{64} << 20)));
  } else {
    if (new_version != version_ || count != count_ || total_size != total_size_) {
      return fail(Status::DataLoss("does not match the update in progress (v" + std::to_string(version_) + ", " +
                                   std::to_string(count_) + " chunks, " + std::to_string(total_size_) + " bytes)"));
    }
    if (index != next_index_) {
      return fail(Status::DataLoss(std::string(index < next_index_ ? "duplicated or reordered" : "out of order") +
                                   " chunk, expected " + std::to_string(next_index_)));
    }
  }
  if (data.size() > total_size_ - payload_.size()) {
    return fail(Status::DataLoss("data runs past the announced total of " + std::to_string(total_size_) + " bytes"));
  }
  payload_ += data;
  ++next_index_;
  if (next_index_ < count_) return std::optional<std::string>();
  if (payload_.size() != total_size_) {
    return fail(Status::DataLoss("last chunk leaves the payload at " + std::to_string(payload_.size()) +
                                 " bytes, announced " + std::to_string(total_size_)));
  }
  std::optional<std::string> done(std::move(payload_));
  Reset();
  return done;
}

}  // namespace sd
