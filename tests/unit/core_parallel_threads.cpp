// Thread counts (core/parallel.hpp): bounded to 4x the cores the process may run on.
#include <doctest/doctest.h>

#include "core/error.hpp"
#include "core/parallel.hpp"

namespace core_parallel_threads_test {

using namespace bitplan;

TEST_CASE("17.1 thread counts beyond 4x the available cores are refused before any pool grows") {
  REQUIRE(available_cores() >= 1);
  CHECK(max_threads() == 4 * available_cores());
  CHECK(thread_count_problem(0).empty());
  CHECK(thread_count_problem(1).empty());
  CHECK(thread_count_problem(max_threads()).empty());
  for (const std::int64_t bad : {std::int64_t{-1}, std::int64_t{max_threads()} + 1,
                                 std::int64_t{40000}, std::int64_t{65535}, std::int64_t{100000}}) {
    INFO(bad);
    CHECK(thread_count_problem(bad).find("must be 0 (all cores) or 1 to") != std::string::npos);
    try {
      set_num_threads(bad);
      FAIL("set_num_threads accepted an unbounded count");
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::usage);
    }
  }
  set_num_threads(2);
  CHECK(num_threads() == 2);
  set_num_threads(0);
  CHECK(num_threads() >= 1);
}

}  // namespace core_parallel_threads_test
