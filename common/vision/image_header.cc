#include "common/vision/image_header.h"

#include <string>

namespace sd {
namespace {

uint8_t At(std::string_view b, size_t i) { return static_cast<uint8_t>(b[i]); }

// Start-of-frame markers carry the image size; C4 (DHT), C8 (JPG) and CC (DAC) share the
// range but are tables.
bool IsStartOfFrame(uint8_t marker) {
  return marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC;
}

// Markers that stand alone, without a length field: TEM, RST0-7 (SOI is handled up front).
bool IsStandalone(uint8_t marker) { return marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7); }

}  // namespace

StatusOr<ImageSize> ReadJpegSize(std::string_view b) {
  if (b.size() < 4 || At(b, 0) != 0xFF || At(b, 1) != 0xD8)
    return Status::InvalidArgument("not a JPEG (no start-of-image marker)");
  size_t i = 2;
  while (true) {
    // Fill bytes (0xFF runs) may precede a marker.
    if (i >= b.size() || At(b, i) != 0xFF)
      return Status::InvalidArgument("JPEG header malformed or truncated at byte " + std::to_string(i));
    while (i < b.size() && At(b, i) == 0xFF) ++i;
    if (i >= b.size()) return Status::InvalidArgument("JPEG truncated before its frame header");
    const uint8_t marker = At(b, i++);
    if (marker == 0xD9 || marker == 0xDA)  // end of image, or scan data before any frame header
      return Status::InvalidArgument("JPEG has no frame header before its scan");
    if (marker == 0x00 || marker == 0xD8)
      return Status::InvalidArgument("JPEG header malformed at byte " + std::to_string(i - 1));
    if (IsStandalone(marker)) continue;
    if (i + 2 > b.size()) return Status::InvalidArgument("JPEG truncated in a segment length");
    const size_t length = (size_t{At(b, i)} << 8) | At(b, i + 1);
    if (length < 2) return Status::InvalidArgument("JPEG segment length " + std::to_string(length) + " is invalid");
    if (IsStartOfFrame(marker)) {
      // length(2) precision(1) height(2) width(2) components(1) ...
      if (length < 8 || i + 7 > b.size()) return Status::InvalidArgument("JPEG frame header truncated");
      ImageSize size;
      size.height = (At(b, i + 3) << 8) | At(b, i + 4);
      size.width = (At(b, i + 5) << 8) | At(b, i + 6);
      // Height 0 means "defined later by a DNL marker", which no camera writes and the
      // decoder would have to scan the whole stream for: refuse it like a zero width.
      if (size.width == 0 || size.height == 0)
        return Status::InvalidArgument("JPEG declares a zero dimension (" + std::to_string(size.width) + "x" +
                                       std::to_string(size.height) + ")");
      return size;
    }
    i += length;
  }
}

Status ImageLimits::Validate() const {
  if (max_width < 1 || max_width > 65535) return Status::InvalidArgument("max_width: must be in [1, 65535]");
  if (max_height < 1 || max_height > 65535) return Status::InvalidArgument("max_height: must be in [1, 65535]");
  if (max_pixels < 1) return Status::InvalidArgument("max_pixels: must be >= 1");
  return Status::Ok();
}

StatusOr<ImageSize> CheckJpegSize(std::string_view bytes, const ImageLimits& limits) {
  SD_ASSIGN_OR_RETURN(ImageSize size, ReadJpegSize(bytes));
  const int64_t pixels = int64_t{size.width} * size.height;
  if (size.width > limits.max_width || size.height > limits.max_height || pixels > limits.max_pixels)
    return Status::InvalidArgument("image of " + std::to_string(size.width) + "x" + std::to_string(size.height) +
                                   " exceeds the server's limit of " + std::to_string(limits.max_width) + "x" +
                                   std::to_string(limits.max_height) + " and " + std::to_string(limits.max_pixels) +
                                   " pixels");
  return size;
}

}  // namespace sd
