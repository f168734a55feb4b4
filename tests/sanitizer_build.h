// Whether this test binary is built with a sanitizer (scripts/sanitize.sh). Sanitizer builds
// run several times slower and hold freed memory in quarantine on purpose, so speed budgets
// and memory bounds that describe the product build are skipped or widened there.
#ifndef STREAMDISTILL_TESTS_SANITIZER_BUILD_H_
#define STREAMDISTILL_TESTS_SANITIZER_BUILD_H_

// gcc defines __SANITIZE_*__; clang answers __has_feature.
#if defined(__has_feature)
#define SD_HAS_FEATURE(feature) __has_feature(feature)
#else
#define SD_HAS_FEATURE(feature) 0
#endif

namespace sd {

#if defined(__SANITIZE_ADDRESS__) || SD_HAS_FEATURE(address_sanitizer)
inline constexpr bool kAddressSanitizerBuild = true;
#else
inline constexpr bool kAddressSanitizerBuild = false;
#endif

#if defined(__SANITIZE_THREAD__) || SD_HAS_FEATURE(thread_sanitizer)
inline constexpr bool kThreadSanitizerBuild = true;
#else
inline constexpr bool kThreadSanitizerBuild = false;
#endif

inline constexpr bool kSanitizerBuild = kAddressSanitizerBuild || kThreadSanitizerBuild;

}  // namespace sd

#undef SD_HAS_FEATURE

#endif  // STREAMDISTILL_TESTS_SANITIZER_BUILD_H_
