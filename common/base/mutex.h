// Mutexes that clang's thread-safety analysis understands (common/base/thread_annotations.h):
// libstdc++'s std::mutex carries no annotations, so SD_GUARDED_BY(a std::mutex) checks nothing.
// Thin wrappers, as leveldb's port::Mutex: no behaviour of their own.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <shared_mutex>

#include "common/base/thread_annotations.h"

namespace sd {

class SD_CAPABILITY("mutex") Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void Lock() SD_ACQUIRE() { mu_.lock(); }
  void Unlock() SD_RELEASE() { mu_.unlock(); }
  bool TryLock() SD_TRY_ACQUIRE(true) { return mu_.try_lock(); }
  // Tells the analysis that the caller holds it where it cannot see so (a lambda run in place).
  void AssertHeld() SD_ASSERT_CAPABILITY(this) {}

 private:
  friend class CondVar;
  std::mutex mu_;
};

// Holds a Mutex for its scope; Unlock() ends that early.
class SD_SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex* mu) SD_ACQUIRE(mu) : mu_(mu) { mu_->Lock(); }
  ~MutexLock() SD_RELEASE() {
    if (held_) mu_->Unlock();
  }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;
  void Unlock() SD_RELEASE() {
    mu_->Unlock();
    held_ = false;
  }

 private:
  Mutex* const mu_;
  bool held_ = true;
};

// A condition variable bound to one Mutex, which the caller holds while waiting.
class CondVar {
 public:
  explicit CondVar(Mutex* mu) : mu_(mu) {}
  CondVar(const CondVar&) = delete;
  CondVar& operator=(const CondVar&) = delete;

  template <typename Rep, typename Period>
  void WaitFor(std::chrono::duration<Rep, Period> timeout) {
    std::unique_lock<std::mutex> lock(mu_->mu_, std::adopt_lock);
    cv_.wait_for(lock, timeout);
    lock.release();  // still held, by the caller
  }
  void Signal() { cv_.notify_one(); }
  void SignalAll() { cv_.notify_all(); }

 private:
  Mutex* const mu_;
  std::condition_variable cv_;
};

// Readers share it, a writer has it alone.
class SD_CAPABILITY("shared mutex") SharedMutex {
 public:
  void Lock() SD_ACQUIRE() { mu_.lock(); }
  void Unlock() SD_RELEASE() { mu_.unlock(); }
  void LockShared() SD_ACQUIRE_SHARED() { mu_.lock_shared(); }
  void UnlockShared() SD_RELEASE_SHARED() { mu_.unlock_shared(); }

 private:
  std::shared_mutex mu_;
};

class SD_SCOPED_CAPABILITY WriterLock {
 public:
  explicit WriterLock(SharedMutex* mu) SD_ACQUIRE(mu) : mu_(mu) { mu_->Lock(); }
  ~WriterLock() SD_RELEASE() { mu_->Unlock(); }
  WriterLock(const WriterLock&) = delete;
  WriterLock& operator=(const WriterLock&) = delete;

 private:
  SharedMutex* const mu_;
};

// Shares a SharedMutex for its scope; Unlock() ends that early.
class SD_SCOPED_CAPABILITY ReaderLock {
 public:
  explicit ReaderLock(SharedMutex* mu) SD_ACQUIRE_SHARED(mu) : mu_(mu) { mu_->LockShared(); }
  ~ReaderLock() SD_RELEASE() {
    if (held_) mu_->UnlockShared();
  }
  ReaderLock(const ReaderLock&) = delete;
  ReaderLock& operator=(const ReaderLock&) = delete;
  void Unlock() SD_RELEASE() {
    mu_->UnlockShared();
    held_ = false;
  }

 private:
  SharedMutex* const mu_;
  bool held_ = true;
};

}  // namespace sd
