// bitplan's one exception type, bitplan::Error, and ErrorKind, which says whose mistake it
// was. Every failure of the library (and of the `bitplan` executable, whose exit code is the
// kind) is an Error whose message reads "<action>: <bad value>: <rule>", so a user can fix
// the input without reading code. Memory exhaustion stays std::bad_alloc.
#pragma once

#include <stdexcept>
#include <string>

#include "bitplan/visibility.hpp"

namespace bitplan {

// What went wrong; the `bitplan` executable exits with this number (docs/cli.md).
enum class ErrorKind {
  internal = 1,       // a bug in bitplan: an invariant did not hold
  usage = 2,          // bad command line, or a library call with arguments that cannot work
  invalid_input = 3,  // a file or config that does not follow its format or schema
  unsupported = 4,    // well-formed input that bitplan cannot run (unknown op, attribute...)
  rank_failed = 5,    // a rank of a distributed (MPI) search failed, died or timed out
};

// Exported from the shared library so that a program catching it and the library throwing it
// agree on its type.
class BITPLAN_API Error : public std::runtime_error {
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

}  // namespace bitplan
