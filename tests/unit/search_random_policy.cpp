// Random search: no repeats, exhausts small spaces exactly, deterministic per seed.
#include <doctest/doctest.h>

#include "search/random_policy.hpp"

namespace search_random_policy_test {

using namespace bitplan::search;

namespace {
SearchSpace small_space() {
  return SearchSpace{
      {{"a", {"W8A8", "W4A8", "FP32"}}, {"b", {"W8A8", "W4A8"}}, {"c", {"W8A8", "W4A8"}}}};
}
}  // namespace

TEST_CASE("random search never repeats a plan and stops when the space is exhausted") {
  const SearchSpace space = small_space();
  RandomPolicy policy(space, PolicyParams{});
  const Evaluation told{{2, 1, 1}, {1.0}, 0};  // evaluated elsewhere: never asked
  policy.tell(std::span(&told, 1));
  GenomeSet asked;
  while (!policy.finished()) {
    for (const Genome& genome : policy.ask(5)) {
      CHECK(asked.insert(genome).second);
      CHECK(genome != told.genome);
    }
  }
  CHECK(asked.size() == 11);
  CHECK(policy.ask(5).empty());
}

TEST_CASE("random search is deterministic per seed and skips unsupported options") {
  const SearchSpace space = small_space();
  PolicyParams params;
  params.seed = 42;
  params.costs = LayerCostTable{
      {{0, 0, 0}, {0, 0}, {0, 0}}, {}, {}, {{"", "no INT4", ""}, {"", ""}, {"", ""}}, {}};
  RandomPolicy first(space, params), second(space, params);
  const auto plans = first.ask(8);
  CHECK(plans == second.ask(8));
  CHECK(plans.size() == 8);  // 2 * 2 * 2 supported plans
  for (const Genome& genome : plans) CHECK(genome[0] != 1);
  CHECK(first.ask(1).empty());
  CHECK(first.finished());

  params.seed = 43;
  RandomPolicy other(space, params);
  CHECK(other.ask(8) != plans);  // same set, another order
}

}  // namespace search_random_policy_test
