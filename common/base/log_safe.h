// Text from the network (device ids, peer-supplied messages) goes into log lines and error
// messages only through here: a newline in an id must not forge a log line, and a 7 MiB id
// must not write 7 MiB per refused hello.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace sd {

// `text` with every byte outside printable ASCII (and the backslash) written as \xHH, cut to
// at most `max_bytes` of input with "...(N bytes)" appended when cut.
std::string LogSafe(std::string_view text, size_t max_bytes = 64);

}  // namespace sd
