// The spool's sequence of a sampled frame, set without parsing the frame again.
#pragma once

#include <cstdint>
#include <string>

namespace sd {

// `encoded` is a serialized SampledFrame whose sequence is unset (EncodeSampledFrame's
// output); appends the sequence field, so that it parses as the same frame with `sequence`
// set. Protobuf fields may come in any order and the last value of a field wins, so this is
// the message set_sequence() and a second serialization would give, less a parse and a copy
// of the JPEG. The spool stores these bytes and the uplink parses them once to send them.
void SetFrameSequence(uint64_t sequence, std::string* encoded);

}  // namespace sd
