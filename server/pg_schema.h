// The cluster backend's tables (docs/scale-out.md, "What lives where"), as numbered migrations
// applied at start-up. Replicas start at once in a deployment: the migrations run under a
// PostgreSQL advisory lock, so exactly one replica applies each, and the others wait and then
// find it applied. A database whose schema is newer than this binary knows is refused rather
// than misread.
#pragma once

#include "common/base/status.h"
#include "server/pg_connection.h"

namespace sd {

// The schema version this binary writes and reads.
int PgSchemaVersion();

// Applies every migration the database lacks, in order, each in its own transaction with the
// version recorded beside it. FailedPrecondition when the database is newer than this binary.
Status MigratePgSchema(const PgPool& pool);

}  // namespace sd
