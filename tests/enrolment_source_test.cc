// The EnrolmentSource contract (server/device_registry.h): what the admin tool writes, the
// server reads, with its change noticed. One suite over both sources: the devices file of a
// single server, and PostgreSQL's enrolled devices shared by replicas (server/pg_enrolment.h)
// on a throw-away cluster this process starts.
#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/base/env.h"
#include "server/device_registry.h"
#include "server/devices_file.h"
#include "server/pg_enrolment.h"
#include "server/pg_schema.h"
#include "tests/pg_test_cluster.h"
#include "tests/scoped_temp_dir.h"

namespace sd {
namespace {

using sd::testing::PgTestCluster;
using sd::testing::ScopedTempDir;

// A backend: where the admin tool writes the enrolled set, and a source the server reads.
class EnrolmentBackend {
 public:
  virtual ~EnrolmentBackend() = default;
  virtual Status Write(const EnrolledDevices& devices) = 0;
  virtual StatusOr<std::unique_ptr<EnrolmentSource>> Source() = 0;
};

class FileEnrolment : public EnrolmentBackend {
 public:
  Status Write(const EnrolledDevices& devices) override {
    return WriteDevicesFile(Env::Default(), dir_.File("devices.yaml"), devices);
  }
  StatusOr<std::unique_ptr<EnrolmentSource>> Source() override {
    return DevicesFileSource(Env::Default(), dir_.File("devices.yaml"));
  }

 private:
  ScopedTempDir dir_{"enrolment_source_test"};
};

class PgEnrolment : public EnrolmentBackend {
 public:
  Status Write(const EnrolledDevices& devices) override {
    SD_ASSIGN_OR_RETURN(const PgPool* pool, Pool());
    return WritePgEnrolment(*pool, devices);
  }
  StatusOr<std::unique_ptr<EnrolmentSource>> Source() override {
    SD_ASSIGN_OR_RETURN(const PgPool* pool, Pool());
    return PgEnrolmentSource(pool);
  }

 private:
  StatusOr<const PgPool*> Pool() {
    if (pool_) return pool_.get();
    PgTestCluster* cluster = PgTestCluster::Get();
    if (cluster == nullptr) return Status::Unavailable("PostgreSQL could not be started (scripts/setup.sh installs it)");
    PgOptions options;
    options.dsn = cluster->NewDatabase();
    options.connections = 2;
    SD_ASSIGN_OR_RETURN(pool_, PgPool::Connect(options));
    SD_RETURN_IF_ERROR(MigratePgSchema(*pool_));
    return pool_.get();
  }
  std::unique_ptr<PgPool> pool_;
};

struct BackendParam {
  std::string name;
  std::function<std::unique_ptr<EnrolmentBackend>()> make;
};

EnrolledDevices TwoDevices() {
  EnrolledDevices devices;
  devices["cam1"] = EnrolledDevice{HashTokenWithSalt("token-of-cam1", "salt1"), true};
  devices["cam2"] = EnrolledDevice{HashTokenWithSalt("token-of-cam2", "salt2"), false};
  return devices;
}

class EnrolmentSourceTest : public ::testing::TestWithParam<BackendParam> {
 protected:
  void SetUp() override {
    backend_ = GetParam().make();
    auto source = backend_->Source();
    ASSERT_TRUE(source.ok()) << source.status().ToString();
    source_ = std::move(*source);
  }
  std::unique_ptr<EnrolmentBackend> backend_;
  std::unique_ptr<EnrolmentSource> source_;
};

TEST_P(EnrolmentSourceTest, NothingEnrolledYetIsNotFound) {
  EXPECT_EQ(source_->Read().status().code(), Status::Code::kNotFound) << source_->name();
}

TEST_P(EnrolmentSourceTest, WhatIsWrittenIsReadWithTokensThatMatch) {
  ASSERT_TRUE(backend_->Write(TwoDevices()).ok());
  StatusOr<EnrolledDevices> read = source_->Read();
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  ASSERT_EQ(read->size(), 2u);
  EXPECT_TRUE(read->at("cam1").enabled);
  EXPECT_FALSE(read->at("cam2").enabled);
  EXPECT_TRUE(TokenMatches(read->at("cam1").token, "token-of-cam1"));
  EXPECT_FALSE(TokenMatches(read->at("cam1").token, "token-of-cam2")) << "a token opens another device";
  EXPECT_FALSE(TokenMatches(read->at("cam2").token, "token-of-cam2-"));
}

// The server re-reads only when the source says it may have changed: after a write it must
// say so, and once read, not again until the next write.
TEST_P(EnrolmentSourceTest, AChangeIsNoticedAndOnlyThen) {
  ASSERT_TRUE(backend_->Write(TwoDevices()).ok());
  EXPECT_TRUE(source_->MayHaveChanged());
  ASSERT_TRUE(source_->Read().ok());
  EXPECT_FALSE(source_->MayHaveChanged()) << "no write since the last read";

  EnrolledDevices rotated = TwoDevices();
  rotated["cam1"].token = HashTokenWithSalt("a-new-token-of-cam1", "salt3");  // enrol --rotate
  rotated["cam2"].enabled = true;                                             // enable
  rotated.erase("cam2");
  rotated["cam3"] = EnrolledDevice{HashTokenWithSalt("token-of-cam3", "salt4"), true};
  ASSERT_TRUE(backend_->Write(rotated).ok());
  EXPECT_TRUE(source_->MayHaveChanged()) << "a rotation, a removal and an enrolment went unnoticed";
  StatusOr<EnrolledDevices> read = source_->Read();
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  EXPECT_EQ(read->count("cam2"), 0u);
  ASSERT_EQ(read->count("cam3"), 1u);
  EXPECT_TRUE(TokenMatches(read->at("cam1").token, "a-new-token-of-cam1"));
  EXPECT_FALSE(TokenMatches(read->at("cam1").token, "token-of-cam1")) << "the old token still works";
}

INSTANTIATE_TEST_SUITE_P(Backends, EnrolmentSourceTest,
                         ::testing::Values(BackendParam{"DevicesFile", [] { return std::make_unique<FileEnrolment>(); }},
                                           BackendParam{"Postgres", [] { return std::make_unique<PgEnrolment>(); }}),
                         [](const ::testing::TestParamInfo<BackendParam>& info) { return info.param.name; });

}  // namespace
}  // namespace sd
