#include "common/base/status.h"

#include <gtest/gtest.h>

namespace sd {
namespace {

StatusOr<int> ParsePositive(int v) {
  if (v <= 0) return Status::InvalidArgument("value must be positive, got " + std::to_string(v));
  return v;
}

Status Doubled(int v, int* out) {
  SD_ASSIGN_OR_RETURN(int parsed, ParsePositive(v));
  *out = 2 * parsed;
  return Status::Ok();
}

TEST(StatusTest, CarriesCodeMessageAndContext) {
  Status s = Status::NotFound("no such file").WithContext("video.avi");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), Status::Code::kNotFound);
  EXPECT_EQ(s.ToString(), "NOT_FOUND: video.avi: no such file");
  EXPECT_TRUE(Status::Ok().WithContext("x").ok());
}

TEST(StatusTest, AssignOrReturnPropagates) {
  int out = 0;
  EXPECT_TRUE(Doubled(4, &out).ok());
  EXPECT_EQ(out, 8);
  Status bad = Doubled(-1, &out);
  EXPECT_EQ(bad.code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(out, 8);
}

}  // namespace
}  // namespace sd
