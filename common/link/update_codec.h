// Model update payloads: how a new set of student weights (StudentModel::FlatWeights order)
// travels from the server to an edge, and how a payload is cut into ModelUpdateChunk messages
// and put back together.
//
// Payload layout: one header byte, then the body.
//   header 0x00: the body is the encoding's bytes as they are
//   header 0x01: the body is one zstd frame holding the encoding's bytes
// Encodings (the bytes before optional compression). N is the number of weights; every
// integer is little-endian; "varint" is unsigned LEB128 (7 bits a byte, low bits first,
// at most 10 bytes, minimally encoded).
//   "full_fp32": every target weight as an IEEE float32 (bit-exact)
//   "full_fp16": every target weight as an IEEE half, rounded to nearest even
//   "sparse":    the weights that changed since `base`, as fp16 deltas:
//                  u8 position coding, varint N, varint K (changed positions), positions,
//                  K x u16 half
//                position coding 0x00: a bitmask of ceil(N/8) bytes, bit i%8 of byte i/8 set
//                  for a changed position i (bits from N on are 0; K bits are set)
//                position coding 0x01: K varint gaps: the first position itself, then each
//                  position minus the previous one (>= 1), so positions strictly increase
//                The encoder picks the smaller coding (the bitmask on a tie). The halves are
//                target - base rounded to half, in position order; positions whose weight is
//                bitwise unchanged or whose delta rounds to a half zero are left out.
//                Receiver: base[i] + HalfToFloat(delta) at each position, base elsewhere.
//   "int8":      per tensor, deltas against `base` quantized to int8:
//                  varint T (tensors), then per tensor: varint size (>= 1), float32 scale
//                  (finite, >= 0), and when scale > 0, size x int8 q (in [-127, 127])
//                scale = max|target - base| / 127 over the tensor (0: the tensor did not
//                change and no q bytes follow), q = round((target - base) / scale). The
//                sizes sum to N; the tensors are EncodeUpdate's tensor_sizes, empty ones
//                left out. Receiver: base where q == 0, else base + float(q * scale)
//                (the product rounded to float once, then added in float: no fused
//                multiply-add, so every host gets the same bits).
// The full encodings ignore `base`; sparse and int8 need the receiver's current weights as
// `base` on both sides. Whatever DecodeUpdate returns is what the receiver holds; the server
// keeps that (not its own target) as "the edge's weights", so both agree bit-exactly.
//
// No torch here, so the edge's network code compiles fast.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "common/base/status.h"

namespace sd {

enum class UpdateEncoding { kFullFp32, kFullFp16, kSparse, kInt8 };

// The wire and config name ("full_fp32", "full_fp16", "sparse", "int8"), as in
// ModelUpdateChunk.encoding and the `update_encoding` key.
const char* UpdateEncodingName(UpdateEncoding encoding);
// InvalidArgument (naming the known ones) for any other name.
StatusOr<UpdateEncoding> ParseUpdateEncoding(const std::string& name);
// Full encodings (full_fp32, full_fp16) carry every weight and ignore `base`.
bool IsFullEncoding(UpdateEncoding encoding);

// Encodes `target` (the weights the receiver should end up with) against `base` (the weights
// it holds now; ignored by the full encodings). `tensor_sizes` is the tensor layout of both
// (StudentModel::TensorSizes()); empty means one tensor holding everything, and when given it
// must sum to target.size(). Only int8 uses it. With `allow_zstd` the body is zstd-compressed
// when that makes the payload smaller. InvalidArgument for a wrong layout or (sparse, int8)
// base.size() != target.size(). Weights an encoding cannot carry give InvalidArgument naming the index, so the caller can fall back to a full encoding:
// full_fp16: finite weights beyond the half range (|w| > 65504 would become inf on the edge);
// sparse: a delta that is not a finite half (beyond the range, or a non-finite weight);
// int8: a delta that is not finite.
StatusOr<std::string> EncodeUpdate(UpdateEncoding encoding, const std::vector<float>& base,
                                   const std::vector<float>& target, const std::vector<size_t>& tensor_sizes,
                                   bool allow_zstd = true);

// What the receiver holds after applying `payload` to `base`: for full_fp16 the fp16-rounded
// weights, for sparse and int8 base plus the decoded deltas, which the server keeps as "the
// edge's weights" (and checksums). DataLoss naming what is wrong for a truncated, corrupt or
// wrongly sized payload (never reads out of bounds); `expected_size` is the number of weights
// the receiver's model has (bounds decompression too). sparse and int8 need
// base.size() == expected_size (InvalidArgument otherwise).
StatusOr<std::vector<float>> DecodeUpdate(UpdateEncoding encoding, const std::vector<float>& base,
                                          const std::string& payload, size_t expected_size);

// IEEE half <-> float, exposed for tests and for encodings built on top. FloatToHalf rounds to
// nearest even, overflows to inf, flushes values below half the smallest denormal to (signed)
// zero and keeps NaN a (quiet) NaN.
uint16_t FloatToHalf(float value);
float HalfToFloat(uint16_t half);

}  // namespace sd
