#include "server/label_codec.h"

#include <charconv>

namespace sd {
namespace {

std::string FloatText(float v) {
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof(buf), v);
  return std::string(buf, r.ptr);
}

template <typename T>
bool ParseField(const char*& p, const char* end, char terminator, T* v) {
  auto r = std::from_chars(p, end, *v);
  if (r.ec != std::errc()) return false;
  p = r.ptr;
  if (terminator == '\0') return p == end || *p == ';';
  if (p == end || *p != terminator) return false;
  ++p;
  return true;
}

}  // namespace

std::string EncodeLabels(const Detections& labels) {
  std::string out;
  for (const Detection& d : labels) {
    if (!out.empty()) out += ';';
    out += std::to_string(d.class_id) + ' ' + FloatText(d.score) + ' ' + FloatText(d.box.x1) + ' ' +
           FloatText(d.box.y1) + ' ' + FloatText(d.box.x2) + ' ' + FloatText(d.box.y2);
  }
  return out;
}

bool DecodeLabels(const std::string& text, Detections* labels) {
  const char* p = text.data();
  const char* end = p + text.size();
  while (p < end) {
    Detection d;
    if (!ParseField(p, end, ' ', &d.class_id) || !ParseField(p, end, ' ', &d.score) ||
        !ParseField(p, end, ' ', &d.box.x1) || !ParseField(p, end, ' ', &d.box.y1) ||
        !ParseField(p, end, ' ', &d.box.x2) || !ParseField(p, end, '\0', &d.box.y2)) {
      return false;
    }
    labels->push_back(d);
    if (p < end) {
      ++p;                         // the ';'
      if (p == end) return false;  // trailing separator
    }
  }
  return true;
}

}  // namespace sd
