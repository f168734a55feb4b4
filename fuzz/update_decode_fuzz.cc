// Model updates as an edge receives them: ModelUpdateAssembler (common/link/model_update.h, the one
// the edge's uplink uses) fed a sequence of chunks, and DecodeUpdate (common/link/update_codec.h) of
// every encoding against a small base.
//
// Input: [u8 mode][u8 n][rest]
//   mode & 3   the encoding: full_fp32, full_fp16, sparse, int8; the base has n % 64 + 1 weights
//   mode & 4   0: rest is one payload
//              1: rest is chunk records [u8 version][u8 index][u8 count][u32 total LE][u16 len LE]
//                 [len bytes], each made a ModelUpdateChunk of that encoding and fed in order
//                 to one ModelUpdateAssembler (limit 64 KiB); every update it completes is
//                 decoded
// Properties beyond "no crash, no leak, no UB": a decoded update has exactly n weights, and a
// decoded full_fp32 update re-encodes to the same bits.
#include <cstring>
#include <optional>
#include <string>

#include "common/link/model_update.h"
#include "common/link/update_codec.h"
#include "fuzz/fuzz_util.h"

namespace {

void Decode(sd::UpdateEncoding encoding, size_t n, const std::string& payload) {
  const std::vector<float> base = sd::fuzz::UpdateBase(n);
  sd::StatusOr<std::vector<float>> decoded = sd::DecodeUpdate(encoding, base, payload, n);
  if (!decoded.ok()) return;
  SD_FUZZ_CHECK(decoded->size() == n);
  if (encoding == sd::UpdateEncoding::kFullFp32) {
    sd::StatusOr<std::string> again = sd::EncodeUpdate(encoding, base, *decoded, {}, /*allow_zstd=*/false);
    SD_FUZZ_CHECK(again.ok());
    sd::StatusOr<std::vector<float>> back = sd::DecodeUpdate(encoding, base, *again, n);
    SD_FUZZ_CHECK(back.ok());
    SD_FUZZ_CHECK(std::memcmp(back->data(), decoded->data(), n * sizeof(float)) == 0);
  }
}

uint64_t Le(const uint8_t* p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= uint64_t{p[i]} << (8 * i);
  return v;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  sd::fuzz::QuietLogs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const sd::UpdateEncoding encoding = sd::fuzz::kUpdateEncodings[data[0] & 3];
  const size_t n = data[1] % 64 + 1;
  const bool chunked = data[0] & 4;
  data += 2;
  size -= 2;
  if (!chunked) {
    Decode(encoding, n, std::string(reinterpret_cast<const char*>(data), size));
    return 0;
  }
  sd::ModelUpdateAssembler assembler(/*max_payload_bytes=*/64 << 10);
  constexpr size_t kRecordHead = 1 + 1 + 1 + 4 + 2;
  while (size >= kRecordHead) {
    const uint64_t version = data[0];
    const uint32_t index = data[1], count = data[2];
    const uint64_t total = Le(data + 3, 4);
    const size_t len = std::min<size_t>(Le(data + 7, 2), size - kRecordHead);
    streamdistill::v1::ModelUpdateChunk chunk;
    chunk.set_new_version(version);
    chunk.set_encoding(sd::UpdateEncodingName(encoding));
    chunk.set_chunk_index(index);
    chunk.set_chunk_count(count);
    chunk.set_payload_size(total);
    chunk.set_data(reinterpret_cast<const char*>(data + kRecordHead), len);
    data += kRecordHead + len;
    size -= kRecordHead + len;
    sd::StatusOr<std::optional<sd::ModelUpdate>> added = assembler.Add(chunk);
    if (!added.ok() || !added->has_value()) continue;
    const sd::ModelUpdate& update = **added;
    SD_FUZZ_CHECK(update.payload.size() == total);
    SD_FUZZ_CHECK(update.encoding == encoding);
    Decode(encoding, n, update.payload);
  }
  return 0;
}
