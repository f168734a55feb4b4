#include "edge/frame_sequence.h"

#include "streamdistill.pb.h"

namespace sd {
namespace {

void AppendVarint(uint64_t value, std::string* out) {
  while (value >= 0x80) {
    out->push_back(static_cast<char>((value & 0x7f) | 0x80));
    value >>= 7;
  }
  out->push_back(static_cast<char>(value));
}

}  // namespace

void SetFrameSequence(uint64_t sequence, std::string* encoded) {
  constexpr uint64_t kVarintWireType = 0;
  AppendVarint(uint64_t{streamdistill::v1::SampledFrame::kSequenceFieldNumber} << 3 | kVarintWireType, encoded);
  AppendVarint(sequence, encoded);
}

}  // namespace sd
