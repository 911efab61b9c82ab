// Untrusted strings (names and text read from model and data files) inside error messages.
// A NUL byte would cut the message where a C string ends, and a newline or escape sequence
// would break the one-line rule or the terminal; such bytes are shown as \xNN instead.
#pragma once

#include <fmt/format.h>

#include <string>
#include <string_view>

namespace bitplan {

// `text` with control bytes (0x00-0x1f, 0x7f) written as \xNN and backslashes doubled, so the
// result is one printable line from which the original bytes can be read back. Other bytes,
// UTF-8 included, are kept.
inline std::string escaped(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte == 0x7f)
      out += fmt::format("\\x{:02x}", byte);
    else if (c == '\\')
      out += "\\\\";
    else
      out += c;
  }
  return out;
}

}  // namespace bitplan
