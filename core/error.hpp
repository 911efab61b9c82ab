// Errors: the Error type (the public one, include/bitplan/error.hpp, so a program using the
// library catches exactly what the internals throw) and the helpers that throw it, each
// message written as "<action>: <bad value>: <rule>".
#pragma once

#include <fmt/format.h>

#include <string>

#include "bitplan/error.hpp"

namespace bitplan {

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
