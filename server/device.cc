#include "server/device.h"

#include "common/base/clock.h"

namespace sd {

double DeviceCounters::in_kbps(double now_s) const {
  return now_s > first_contact_s && first_contact_s > 0 ? bytes_in * 8 / 1000.0 / (now_s - first_contact_s) : 0;
}

double DeviceCounters::out_kbps(double now_s) const {
  return now_s > first_contact_s && first_contact_s > 0 ? bytes_out * 8 / 1000.0 / (now_s - first_contact_s) : 0;
}

DeviceCounters Device::Counters() const {
  DeviceCounters snapshot;
  {
    MutexLock lock(&mu);
    snapshot = counters;
  }
  snapshot.bytes_in = bytes_in;
  snapshot.bytes_out = bytes_out;
  snapshot.first_contact_s = first_contact_s;
  return snapshot;
}

std::shared_ptr<const ModelUpdate> Device::CurrentModel() const {
  MutexLock lock(&mu);
  return pinned_full ? pinned_full : latest_full;
}

std::shared_ptr<DeviceSession> Device::Session() const {
  MutexLock lock(&mu);
  return session.lock();
}

void Device::CountBytes(int64_t in, int64_t out) {
  double unset = 0;
  first_contact_s.compare_exchange_strong(unset, SteadySeconds());
  bytes_in += in;
  bytes_out += out;
}

}  // namespace sd
