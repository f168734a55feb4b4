// A model update cut into chunks and put back together (common/link/model_update.h,
// common/link/chunk_assembler.h).
#include "common/link/model_update.h"

#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "common/link/chunk_assembler.h"
#include "tests/update_codec_test_util.h"

namespace sd {
namespace {

using testing::RandomWeights;

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
  StatusOr<std::string> payload = EncodeUpdate(UpdateEncoding::kFullFp32, {}, RandomWeights(3000, 5), {}, false);
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
