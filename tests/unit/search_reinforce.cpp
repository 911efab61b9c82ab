// The REINFORCE agent: learns a clearly best option per layer, masks unsupported options,
// is deterministic per seed, and reuses known rewards instead of asking twice.
#include <doctest/doctest.h>

#include <random>

#include "core/error.hpp"
#include "search/reinforce.hpp"

namespace search_reinforce_test {

using namespace bitplan;
using namespace bitplan::search;

namespace {

struct Problem {
  SearchSpace space;
  std::vector<std::vector<double>> loss;  // [layer][option]
  Genome best;
};

// One option per layer costs 0, the others 1..2: the best plan is known.
Problem clear_winner(std::size_t layers, std::size_t options, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> winner(0, int(options) - 1);
  std::uniform_real_distribution<double> extra(1.0, 2.0);
  Problem problem;
  for (std::size_t l = 0; l < layers; ++l) {
    LayerOptions layer{"layer" + std::to_string(l), {}};
    for (std::size_t o = 0; o < options; ++o) layer.options.push_back("opt" + std::to_string(o));
    problem.space.layers.push_back(layer);
    problem.best.push_back(winner(rng));
    std::vector<double> row;
    for (std::size_t o = 0; o < options; ++o)
      row.push_back(int(o) == problem.best.back() ? 0.0 : extra(rng));
    problem.loss.push_back(row);
  }
  return problem;
}

Evaluation evaluate(const Problem& problem, const Genome& genome) {
  Evaluation evaluation{genome, {0.0}, 0};
  for (std::size_t l = 0; l < genome.size(); ++l)
    evaluation.objectives[0] += problem.loss[l][std::size_t(genome[l])];
  return evaluation;
}

// The driver loop; returns the plans asked, in order.
std::vector<Genome> run(ReinforcePolicy& policy, const Problem& problem, std::size_t budget) {
  std::vector<Genome> asked;
  GenomeSet unique;
  while (asked.size() < budget && !policy.finished()) {
    const std::vector<Genome> plans = policy.ask(4);
    if (plans.empty()) break;
    std::vector<Evaluation> results;
    for (const Genome& genome : plans) {
      CHECK(unique.insert(genome).second);
      results.push_back(evaluate(problem, genome));
    }
    policy.tell(results);
    asked.insert(asked.end(), plans.begin(), plans.end());
  }
  return asked;
}

PolicyParams params_for(const Problem& problem, std::uint64_t seed) {
  PolicyParams params;
  params.seed = seed;
  params.population_size = 8;
  // The driver's features: position and the per-option sensitivity, as in bitplan search.
  for (std::size_t l = 0; l < problem.loss.size(); ++l) {
    std::vector<double> features{double(l) / double(problem.loss.size())};
    features.insert(features.end(), problem.loss[l].begin(), problem.loss[l].end());
    params.layer_features.push_back(features);
  }
  return params;
}

}  // namespace

TEST_CASE("the greedy policy converges to the clearly best option of every layer") {
  for (std::uint64_t seed = 1; seed <= 8; ++seed) {
    CAPTURE(seed);
    const Problem problem = clear_winner(10, 4, seed);  // 4^10 ~ 10^6 plans
    ReinforcePolicy policy(problem.space, params_for(problem, seed));
    const std::vector<Genome> asked = run(policy, problem, 400);
    MESSAGE("seed " << seed << ": " << asked.size() << " plans evaluated, " << policy.updates()
                    << " updates");
    CHECK(policy.greedy() == problem.best);
  }
}

TEST_CASE("the agent is deterministic per seed and never picks unsupported options") {
  const Problem problem = clear_winner(6, 3, 9);
  PolicyParams params = params_for(problem, 5);
  params.costs = LayerCostTable{problem.loss, {}, {}, {}, {}};
  params.costs->unsupported_reason.assign(6, {"", "", ""});
  params.costs->unsupported_reason[2][std::size_t(problem.best[2])] = "no kernel";
  ReinforcePolicy first(problem.space, params), second(problem.space, params);
  const std::vector<Genome> a = run(first, problem, 200);
  const std::vector<Genome> b = run(second, problem, 200);
  CHECK(a == b);
  for (const Genome& genome : a) CHECK(genome[2] != problem.best[2]);
  CHECK(first.greedy()[2] != problem.best[2]);
}

TEST_CASE("a small space ends when the agent only draws known plans") {
  const Problem problem = clear_winner(3, 2, 4);  // 8 plans
  ReinforcePolicy policy(problem.space, params_for(problem, 1));
  const std::vector<Genome> asked = run(policy, problem, 100);
  CHECK(asked.size() <= 8);
  CHECK(policy.finished());
  CHECK(policy.ask(4).empty());
}

TEST_CASE("layer features must give one finite row of equal width per layer") {
  const Problem problem = clear_winner(3, 2, 4);
  PolicyParams params = params_for(problem, 1);
  params.layer_features.pop_back();
  CHECK_THROWS_WITH_AS(ReinforcePolicy(problem.space, params),
                       doctest::Contains("2 rows of layer features for 3 layers"), Error);
  params = params_for(problem, 1);
  params.layer_features[1].push_back(0);
  CHECK_THROWS_WITH_AS(ReinforcePolicy(problem.space, params),
                       doctest::Contains("every layer needs the same features"), Error);
  params = params_for(problem, 1);
  params.layer_features[0][0] = NAN;
  CHECK_THROWS_WITH_AS(ReinforcePolicy(problem.space, params), doctest::Contains("finite"), Error);
  params.layer_features.clear();  // none: the layer position alone
  CHECK_NOTHROW(ReinforcePolicy(problem.space, params));
}

}  // namespace search_reinforce_test
