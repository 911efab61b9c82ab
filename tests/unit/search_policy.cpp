// The policy factory: every name builds its policy, unknown names and missing inputs fail.
#include <doctest/doctest.h>

#include "core/error.hpp"
#include "search/policy.hpp"

namespace search_policy_test {

using namespace bitplan;
using namespace bitplan::search;

TEST_CASE("make_policy builds every named policy and refuses unknown names") {
  const SearchSpace space{{{"conv1", {"W8A8", "W4A8"}}, {"fc", {"W8A8", "FP32"}}}};
  PolicyParams params;
  params.costs = LayerCostTable{{{0.1, 0.3}, {0.2, 0.0}}, {{1, 0.5}, {1, 2}}, {}, {}, {}};
  for (const std::string& name : policy_names()) {
    CAPTURE(name);
    const auto policy = make_policy(name, space, params);
    CHECK(policy->name() == name);
    const std::vector<Genome> plans = policy->ask(2);
    CHECK(!plans.empty());
    for (const Genome& genome : plans) CHECK_NOTHROW(space.check(genome));
  }
  try {
    make_policy("cmaes", space, params);
    FAIL("expected an error");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::usage);
    CHECK(std::string(e.what()) ==
          "create search policy 'cmaes': unknown name: use one of random, exact, nsga2, reinforce");
  }
  params.costs.reset();
  CHECK_THROWS_WITH_AS(make_policy("exact", space, params),
                       doctest::Contains("no per-layer cost table"), Error);
  CHECK_THROWS_WITH_AS(make_policy("nsga2", SearchSpace{}, params), doctest::Contains("no layers"),
                       Error);
}

}  // namespace search_policy_test
