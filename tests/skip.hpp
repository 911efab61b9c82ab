// Tests that cannot run here (missing data, no GPU, running as root) say so instead of
// passing: skip() prints the reason, and a test binary in which anything was skipped and
// nothing failed exits with kSkipReturnCode, which ctest (SKIP_RETURN_CODE) shows as
// "Skipped". A test case that may skip where the rest of its binary runs is registered as
// its own ctest entry (tests/CMakeLists.txt), so a skip never hides cases that ran.
#pragma once

#include <string>

namespace bitplan::testing {

inline constexpr int kSkipReturnCode = 77;

// Records that the current test case could not run, and why; the caller returns.
void skip(const std::string& reason);

}  // namespace bitplan::testing
