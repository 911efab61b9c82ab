// The doctest main of every test binary: doctest's own run, plus the skip rule of
// tests/skip.hpp (exit kSkipReturnCode when something was skipped and nothing failed).
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>
#include <string>
#include <vector>

#include "tests/skip.hpp"

namespace {
std::vector<std::string>& skip_reasons() {
  static std::vector<std::string> reasons;
  return reasons;
}
}  // namespace

namespace bitplan::testing {
void skip(const std::string& reason) {
  std::printf("SKIPPED: %s\n", reason.c_str());
  std::fflush(stdout);
  skip_reasons().push_back(reason);
}
}  // namespace bitplan::testing

int main(int argc, char** argv) {
  doctest::Context context(argc, argv);
  const int result = context.run();
  if (context.shouldExit() || result != 0 || skip_reasons().empty()) return result;
  std::printf("%zu skipped (exit %d, shown by ctest as skipped):\n", skip_reasons().size(),
              bitplan::testing::kSkipReturnCode);
  for (const std::string& reason : skip_reasons()) std::printf("  %s\n", reason.c_str());
  return bitplan::testing::kSkipReturnCode;
}
