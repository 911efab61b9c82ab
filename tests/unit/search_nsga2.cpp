// NSGA-II against random search at equal budgets, on synthetic additive problems whose
// exact front the dominance programme gives.
#include <doctest/doctest.h>

#include <algorithm>
#include <random>
#include <set>

#include "core/error.hpp"
#include "search/exact_solver.hpp"
#include "search/nsga2.hpp"
#include "search/pareto.hpp"
#include "tests/unit/search_test_spaces.hpp"

namespace search_nsga2_test {

using namespace bitplan;
using namespace bitplan::search;

namespace {

using test_spaces::make_space;

// Two conflicting additive objectives, like accuracy loss against latency: higher options
// lose more accuracy and run faster, with per-layer noise so the front is irregular.
LayerCostTable conflicting_costs(const SearchSpace& space, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> noise(0.0, 1.0);
  LayerCostTable costs;
  for (const LayerOptions& layer : space.layers) {
    std::vector<double> loss, latency;
    const double weight = 0.2 + 2 * noise(rng);
    for (std::size_t o = 0; o < layer.options.size(); ++o) {
      loss.push_back(weight * double(o * o) + noise(rng));
      latency.push_back(double(layer.options.size() - o) + noise(rng));
    }
    costs.sensitivity.push_back(loss);
    costs.latency.push_back(latency);
  }
  return costs;
}

Evaluation evaluate(const LayerCostTable& costs, const Genome& genome) {
  Evaluation evaluation{genome, {0.0, 0.0}, 0};
  for (std::size_t l = 0; l < genome.size(); ++l) {
    evaluation.objectives[0] += costs.sensitivity[l][std::size_t(genome[l])];
    evaluation.objectives[1] += costs.latency[l][std::size_t(genome[l])];
  }
  return evaluation;
}

// Runs a policy for `budget` evaluations; returns every evaluation.
std::vector<Evaluation> run(Policy& policy, const LayerCostTable& costs, std::size_t budget,
                            std::size_t batch) {
  std::vector<Evaluation> all;
  GenomeSet asked;
  while (all.size() < budget && !policy.finished()) {
    const std::vector<Genome> plans = policy.ask(std::min(batch, budget - all.size()));
    if (plans.empty()) break;
    std::vector<Evaluation> results;
    for (const Genome& genome : plans) {
      CHECK(asked.insert(genome).second);  // never asked twice
      results.push_back(evaluate(costs, genome));
    }
    policy.tell(results);
    all.insert(all.end(), results.begin(), results.end());
  }
  return all;
}

double hypervolume_of(const std::vector<Evaluation>& evaluations, const ObjectivePoint& reference) {
  std::vector<ObjectivePoint> points;
  for (const Evaluation& e : evaluations) points.push_back(e.objectives);
  return hypervolume(points, reference);
}

// A reference point worse than every plan: the per-objective sums of the worst options.
ObjectivePoint worst_point(const LayerCostTable& costs) {
  ObjectivePoint reference{0, 0};
  for (std::size_t l = 0; l < costs.sensitivity.size(); ++l) {
    reference[0] += *std::max_element(costs.sensitivity[l].begin(), costs.sensitivity[l].end());
    reference[1] += *std::max_element(costs.latency[l].begin(), costs.latency[l].end());
  }
  return {reference[0] + 1, reference[1] + 1};
}

}  // namespace

TEST_CASE("NSGA-II reaches a larger hypervolume than random search at the same budget") {
  const SearchSpace space = make_space(24, 4);
  for (std::uint64_t seed = 1; seed <= 5; ++seed) {
    CAPTURE(seed);
    const LayerCostTable costs = conflicting_costs(space, seed);
    PolicyParams params;
    params.seed = seed;
    params.population_size = 40;
    Nsga2Policy nsga2(space, params);
    RandomPolicy random(space, params);
    const ObjectivePoint reference = worst_point(costs);
    const double nsga2_volume = hypervolume_of(run(nsga2, costs, 800, 16), reference);
    const double random_volume = hypervolume_of(run(random, costs, 800, 16), reference);
    std::vector<ObjectivePoint> exact;
    for (const SolvedPlan& plan : trace_front(space, costs))
      exact.push_back({plan.totals.sensitivity, plan.totals.latency});
    const double best_volume = hypervolume(exact, reference);
    MESSAGE("hypervolume: nsga2 " << nsga2_volume / best_volume << ", random "
                                  << random_volume / best_volume << " of the exact front's");
    CHECK(nsga2_volume > random_volume);
    CHECK(nsga2_volume <= best_volume * (1 + 1e-12));
  }
}

TEST_CASE("NSGA-II finds the exact front of a tiny instance") {
  // 729 plans, 25-45 on the front: random search would have to evaluate nearly all of them.
  const SearchSpace space = make_space(6, 3);
  for (std::uint64_t seed = 1; seed <= 3; ++seed) {
    CAPTURE(seed);
    const LayerCostTable costs = conflicting_costs(space, seed + 10);
    PolicyParams params;
    params.seed = seed;
    params.population_size = 40;
    Nsga2Policy policy(space, params);
    const std::vector<Evaluation> evaluated = run(policy, costs, 540, 40);
    std::vector<ObjectivePoint> points;
    for (const Evaluation& e : evaluated) points.push_back(e.objectives);
    std::set<ObjectivePoint> found;
    for (std::size_t i : non_dominated(points)) found.insert(points[i]);
    std::set<ObjectivePoint> exact;
    for (const SolvedPlan& plan : trace_front(space, costs))
      exact.insert({plan.totals.sensitivity, plan.totals.latency});
    CHECK(found == exact);
  }
}

TEST_CASE("NSGA-II seeds, resumes, respects constraints and is deterministic") {
  const SearchSpace space = make_space(8, 3);
  const LayerCostTable costs = conflicting_costs(space, 4);
  PolicyParams params;
  params.population_size = 10;
  params.generations = 6;
  params.initial_genomes = {{2, 2, 2, 2, 2, 2, 2, 1}, {0, 1, 0, 1, 0, 1, 0, 1}};

  SUBCASE("the first batch holds the seeds, then the uniform plans") {
    Nsga2Policy policy(space, params);
    const std::vector<Genome> first = policy.ask(100);
    REQUIRE(first.size() == 10);  // one generation at a time
    CHECK(first[0] == params.initial_genomes[0]);
    CHECK(first[1] == params.initial_genomes[1]);
    CHECK(first[2] == Genome(8, 0));
    CHECK(first[3] == Genome(8, 1));
    CHECK(first[4] == Genome(8, 2));
    CHECK(policy.ask(1).empty());  // waiting for the results
  }

  SUBCASE("the same seed gives the same run; the generation limit ends it") {
    Nsga2Policy first(space, params), second(space, params);
    const auto a = run(first, costs, 1000, 7);
    const auto b = run(second, costs, 1000, 7);
    REQUIRE(a.size() == b.size());
    for (std::size_t i = 0; i < a.size(); ++i) CHECK(a[i].genome == b[i].genome);
    CHECK(first.finished());
    CHECK(first.generation() == 6);
    CHECK(a.size() == 70);  // initial batch + 6 generations
  }

  SUBCASE("results told up front (a resumed run) are never asked and seed the population") {
    Nsga2Policy policy(space, params);
    std::vector<Evaluation> known;
    for (const Genome& genome : params.initial_genomes) known.push_back(evaluate(costs, genome));
    policy.tell(known);
    for (const Genome& genome : policy.ask(100))
      for (const Evaluation& e : known) CHECK(genome != e.genome);
  }

  SUBCASE("feasible plans win over infeasible ones") {
    Nsga2Policy policy(space, params);
    const double latency_limit = 18;
    std::size_t feasible = 0;
    while (!policy.finished()) {
      std::vector<Evaluation> results;
      for (const Genome& genome : policy.ask(10)) {
        Evaluation e = evaluate(costs, genome);
        e.constraint_violation = std::max(0.0, e.objectives[1] - latency_limit);
        feasible += e.constraint_violation == 0;
        results.push_back(e);
      }
      if (results.empty()) break;
      policy.tell(results);
    }
    REQUIRE(feasible >= params.population_size);
    const std::vector<Evaluation> population = policy.population();
    CHECK(population.size() == params.population_size);
    for (const Evaluation& e : population) CHECK(e.constraint_violation == 0);
  }

  PolicyParams too_small;
  too_small.population_size = 1;
  CHECK_THROWS_AS(Nsga2Policy(space, too_small), Error);
  params.initial_genomes = {{0, 0}};
  CHECK_THROWS_AS(Nsga2Policy(space, params), Error);
}

}  // namespace search_nsga2_test
