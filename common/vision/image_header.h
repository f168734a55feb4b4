// Reading an image's size from its header, before anything is decoded: a few hundred bytes
// can claim 30000x30000 pixels, and decoding them would take gigabytes and minutes. The
// server checks every received frame here first (and the fuzzers feed it anything).
#pragma once

#include <cstdint>
#include <string_view>

#include "common/base/status.h"

namespace sd {

struct ImageSize {
  int width = 0, height = 0;
};

// The frame size a JPEG's first start-of-frame marker (SOF0-SOF15, not DHT/JPG/DAC) declares.
// Walks the marker segments from SOI without decoding anything; InvalidArgument for data that
// is not a JPEG (another format, truncated before the SOF, a malformed segment) or that
// declares a zero width or height.
StatusOr<ImageSize> ReadJpegSize(std::string_view bytes);

struct ImageLimits {
  int max_width = 8192;
  int max_height = 8192;
  int64_t max_pixels = int64_t{16} << 20;  // 16 Mpixel: 48 MB once decoded as BGR
  // Width and height in [1, 65535] (a JPEG header's range), pixels >= 1; the message starts
  // with the field's name (YamlReader::Check).
  Status Validate() const;
};

// ReadJpegSize, then InvalidArgument unless the size fits `limits` (the message gives both).
StatusOr<ImageSize> CheckJpegSize(std::string_view bytes, const ImageLimits& limits);

}  // namespace sd
