// BITPLAN_API marks what the shared library libbitplan exports. The library is built with
// hidden symbols (-fvisibility=hidden, and the internal static libraries' symbols kept local),
// so only the classes and functions of include/bitplan/ are visible to programs using it.
#pragma once

#define BITPLAN_API __attribute__((visibility("default")))
