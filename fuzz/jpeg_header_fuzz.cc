// libFuzzer target: the JPEG header reader that guards every frame the server receives.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "common/vision/image_header.h"
#include "fuzz/fuzz_util.h"

// Properties: a size read is 1..65535 each way, and one that passed the check fits its limits.
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto jpeg = sd::ReadJpegSize(bytes);
  if (jpeg.ok()) SD_FUZZ_CHECK(jpeg->width >= 1 && jpeg->height >= 1 && jpeg->width <= 65535 && jpeg->height <= 65535);
  sd::ImageLimits limits;
  auto checked = sd::CheckJpegSize(bytes, limits);
  if (checked.ok())
    SD_FUZZ_CHECK(checked->width <= limits.max_width && checked->height <= limits.max_height &&
                  int64_t{checked->width} * checked->height <= limits.max_pixels);
  return 0;
}
