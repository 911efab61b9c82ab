// Errors: one exception type per audience, each message written as
// "<action>: <bad value>: <rule>" so a user can fix the input without reading code.
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace bitplan {

// What went wrong decides the CLI exit code (see docs/cli.md).
enum class ErrorKind {
  internal = 1,       // a bug in bitplan: an invariant did not hold
  usage = 2,          // bad command line
  invalid_input = 3,  // a file or config that does not follow its format or schema
  unsupported = 4,    // well-formed input that bitplan cannot run (unknown op, attribute...)
};

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& message)
      : std::runtime_error(without_nul(message)), kind_(kind) {}
  ErrorKind kind() const noexcept { return kind_; }

 private:
  // what() is a C string: a NUL byte from an untrusted name would end the message there.
  // Messages quote such names through escaped() (core/quote.hpp); this is the backstop.
  static std::string without_nul(std::string message) {
    for (std::size_t at = message.find('\0'); at != std::string::npos;
         at = message.find('\0', at + 4))
      message.replace(at, 1, "\\x00");
    return message;
  }

  ErrorKind kind_;
};

template <typename... Args>
[[noreturn]] void fail(ErrorKind kind, fmt::format_string<Args...> format, Args&&... args) {
  throw Error(kind, fmt::format(format, std::forward<Args>(args)...));
}

template <typename... Args>
[[noreturn]] void fail_input(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(ErrorKind::invalid_input, fmt::format(format, std::forward<Args>(args)...));
}

template <typename... Args>
[[noreturn]] void fail_unsupported(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(ErrorKind::unsupported, fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace bitplan

// Internal invariant: a failure here is a bitplan bug, never a user's mistake.
#define BITPLAN_ASSERT(cond)                                                      \
  do {                                                                            \
    if (!(cond))                                                                  \
      throw ::bitplan::Error(                                                     \
          ::bitplan::ErrorKind::internal,                                         \
          fmt::format("internal error: {} at {}:{}", #cond, __FILE__, __LINE__)); \
  } while (0)
