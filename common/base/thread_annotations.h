// Clang's thread-safety annotations (after leveldb's port/thread_annotations.h). Built with
// -Wthread-safety -Werror=thread-safety by clang (CI's sanitizer builds), a member read without
// the mutex that guards it, or a function called without the lock it requires, is a build
// error: the lock rules are checked, not only written down. Other compilers ignore them.
// Prefixed SD_: abseil (under gRPC's headers) defines the plain names its own way.
#pragma once

#if defined(__clang__)
#define SD_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define SD_THREAD_ANNOTATION(x)
#endif

#define SD_CAPABILITY(x) SD_THREAD_ANNOTATION(capability(x))
#define SD_SCOPED_CAPABILITY SD_THREAD_ANNOTATION(scoped_lockable)
#define SD_GUARDED_BY(x) SD_THREAD_ANNOTATION(guarded_by(x))
#define SD_PT_GUARDED_BY(x) SD_THREAD_ANNOTATION(pt_guarded_by(x))
#define SD_ACQUIRED_BEFORE(...) SD_THREAD_ANNOTATION(acquired_before(__VA_ARGS__))
#define SD_ACQUIRED_AFTER(...) SD_THREAD_ANNOTATION(acquired_after(__VA_ARGS__))
#define SD_REQUIRES(...) SD_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
#define SD_REQUIRES_SHARED(...) SD_THREAD_ANNOTATION(requires_shared_capability(__VA_ARGS__))
#define SD_ACQUIRE(...) SD_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define SD_ACQUIRE_SHARED(...) SD_THREAD_ANNOTATION(acquire_shared_capability(__VA_ARGS__))
#define SD_RELEASE(...) SD_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#define SD_RELEASE_SHARED(...) SD_THREAD_ANNOTATION(release_shared_capability(__VA_ARGS__))
#define SD_RELEASE_GENERIC(...) SD_THREAD_ANNOTATION(release_generic_capability(__VA_ARGS__))
#define SD_TRY_ACQUIRE(...) SD_THREAD_ANNOTATION(try_acquire_capability(__VA_ARGS__))
#define SD_EXCLUDES(...) SD_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
#define SD_ASSERT_CAPABILITY(x) SD_THREAD_ANNOTATION(assert_capability(x))
#define SD_RETURN_CAPABILITY(x) SD_THREAD_ANNOTATION(lock_returned(x))
#define SD_NO_THREAD_SAFETY_ANALYSIS SD_THREAD_ANNOTATION(no_thread_safety_analysis)
