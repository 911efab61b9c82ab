#include "core/hash.hpp"

#include <fmt/format.h>

namespace bitplan {

std::string fnv1a64_hex(std::string_view bytes) {
  return fmt::format("{:016x}", fnv1a64(bytes));
}

}  // namespace bitplan
