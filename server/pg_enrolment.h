// Devices enrolled in PostgreSQL (the `enrolled_devices` table), the cluster's counterpart of
// the devices file: every replica reads the same set, and streamdistill-admin enrols through
// any of them. A change bumps one generation counter in the same transaction, so polling it
// is one cheap query.
#pragma once

#include <memory>
#include <string>

#include "server/device_registry.h"
#include "server/frame_records.h"
#include "server/pg_connection.h"

namespace sd {

std::unique_ptr<EnrolmentSource> PgEnrolmentSource(const PgPool* pool);

// Replaces the enrolled set with `devices` in one transaction (what the admin tool writes).
Status WritePgEnrolment(const PgPool& pool, const EnrolledDevices& devices);

}  // namespace sd
