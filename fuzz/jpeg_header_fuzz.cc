// libFuzzer target: the JPEG header reader that guards every frame the server receives.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "common/image_header.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto jpeg = sd::ReadJpegSize(bytes);
  if (jpeg.ok() && (jpeg->width < 1 || jpeg->height < 1 || jpeg->width > 65535 || jpeg->height > 65535)) __builtin_trap();
  sd::ImageLimits limits;
  auto checked = sd::CheckJpegSize(bytes, limits);
  if (checked.ok() && int64_t{checked->width} * checked->height > limits.max_pixels) __builtin_trap();
  return 0;
}
