// The exact dominance programme against brute force on random small instances (exact
// equality), infeasibility messages, unsupported options and the asking order.
#include <doctest/doctest.h>

#include <algorithm>
#include <random>
#include <set>
#include <tuple>

#include "core/error.hpp"
#include "search/exact_solver.hpp"
#include "tests/unit/search_test_spaces.hpp"

namespace search_exact_solver_test {

using namespace bitplan;
using namespace bitplan::search;

namespace {

using test_spaces::make_space;

// Costs on a coarse grid so that ties and equal totals happen too.
LayerCostTable random_costs(const SearchSpace& space, std::uint64_t seed, bool latency, bool size) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> value(0, 12);
  auto table = [&] {
    std::vector<std::vector<double>> rows;
    for (const LayerOptions& layer : space.layers) {
      std::vector<double> row;
      for (std::size_t o = 0; o < layer.options.size(); ++o) row.push_back(0.25 * value(rng));
      rows.push_back(row);
    }
    return rows;
  };
  LayerCostTable costs;
  costs.sensitivity = table();
  if (latency) costs.latency = table();
  if (size) costs.size = table();
  return costs;
}

// Every plan's totals, summed in layer order like the solver.
std::vector<SolvedPlan> all_plans(const SearchSpace& space, const LayerCostTable& costs) {
  std::vector<SolvedPlan> plans;
  Genome genome(space.layers.size(), 0);
  while (true) {
    PlanTotals totals;
    bool supported = true;
    for (std::size_t l = 0; l < genome.size(); ++l) {
      const auto o = std::size_t(genome[l]);
      supported = supported && costs.supported(l, o);
      totals.sensitivity += costs.sensitivity[l][o];
      totals.latency += costs.latency.empty() ? 0.0 : costs.latency[l][o];
      if (!costs.latency_edge.empty() && l > 0)
        totals.latency += costs.latency_edge[l][std::size_t(genome[l - 1])][o];
      totals.size += costs.size.empty() ? 0.0 : costs.size[l][o];
    }
    if (supported) plans.push_back({genome, totals});
    std::size_t l = 0;
    while (l < genome.size() && ++genome[l] == int(space.layers[l].options.size())) genome[l++] = 0;
    if (l == genome.size()) return plans;
  }
}

using Totals = std::tuple<double, double, double>;

Totals totals_of(const SolvedPlan& plan) {
  return {plan.totals.latency, plan.totals.size, plan.totals.sensitivity};
}

std::set<Totals> brute_force_front(const std::vector<SolvedPlan>& plans,
                                   const CostBudgets& budgets) {
  std::set<Totals> front;
  for (const SolvedPlan& a : plans) {
    if ((budgets.latency && a.totals.latency > *budgets.latency) ||
        (budgets.size && a.totals.size > *budgets.size))
      continue;
    bool dominated = false;
    for (const SolvedPlan& b : plans) {
      if ((budgets.latency && b.totals.latency > *budgets.latency) ||
          (budgets.size && b.totals.size > *budgets.size))
        continue;
      const bool no_worse = b.totals.latency <= a.totals.latency &&
                            b.totals.size <= a.totals.size &&
                            b.totals.sensitivity <= a.totals.sensitivity;
      dominated = dominated || (no_worse && totals_of(b) != totals_of(a));
    }
    if (!dominated) front.insert(totals_of(a));
  }
  return front;
}

void check_plan_totals(const SearchSpace& space, const LayerCostTable& costs,
                       const SolvedPlan& plan) {
  const auto plans = all_plans(space, costs);
  auto found = std::find_if(plans.begin(), plans.end(),
                            [&](const SolvedPlan& p) { return p.genome == plan.genome; });
  REQUIRE(found != plans.end());
  CHECK(totals_of(*found) == totals_of(plan));
}

}  // namespace

TEST_CASE("the traced front equals the brute-force front on random 6x3 instances") {
  const SearchSpace space = make_space(6, 3);
  for (std::uint64_t seed = 1; seed <= 20; ++seed) {
    CAPTURE(seed);
    for (auto [latency, size] : {std::pair{true, true}, {true, false}, {false, true}}) {
      const LayerCostTable costs = random_costs(space, seed, latency, size);
      const auto plans = all_plans(space, costs);
      for (const CostBudgets budgets :
           {CostBudgets{}, CostBudgets{latency ? std::optional(6.0) : std::nullopt,
                                       size ? std::optional(7.5) : std::nullopt}}) {
        const std::vector<SolvedPlan> front = trace_front(space, costs, budgets);
        std::set<Totals> traced;
        for (const SolvedPlan& plan : front) {
          traced.insert(totals_of(plan));
          check_plan_totals(space, costs, plan);
        }
        CHECK(traced.size() == front.size());  // one plan per distinct totals
        CHECK(traced == brute_force_front(plans, budgets));
      }
    }
  }
}

TEST_CASE("with edge latencies between layers the front and the optimum stay exact") {
  // Edges model precision conversions (positive) and layers that pass data on directly
  // (negative): the cost of a layer's option then depends on its neighbour's.
  const SearchSpace space = make_space(6, 3);
  for (std::uint64_t seed = 1; seed <= 20; ++seed) {
    CAPTURE(seed);
    LayerCostTable costs = random_costs(space, seed, true, true);
    std::mt19937_64 rng(seed + 100);
    std::uniform_int_distribution<int> value(-3, 2);
    costs.latency_edge.resize(space.layers.size());
    for (std::size_t l = 1; l < space.layers.size(); ++l)
      for (std::size_t a = 0; a < space.layers[l - 1].options.size(); ++a) {
        costs.latency_edge[l].emplace_back();
        for (std::size_t b = 0; b < space.layers[l].options.size(); ++b)
          costs.latency_edge[l][a].push_back(0.25 * value(rng));
      }
    const auto plans = all_plans(space, costs);
    for (const CostBudgets budgets : {CostBudgets{}, CostBudgets{4.0, 7.5}}) {
      std::set<Totals> traced;
      for (const SolvedPlan& plan : trace_front(space, costs, budgets)) {
        traced.insert(totals_of(plan));
        check_plan_totals(space, costs, plan);
      }
      CHECK(traced == brute_force_front(plans, budgets));
    }
    double fastest = 1e30;
    for (const SolvedPlan& p : plans) fastest = std::min(fastest, p.totals.latency);
    CHECK(solve(space, costs, {}).lowest.latency == doctest::Approx(fastest));
  }
  // A malformed edge table is refused with the layer named.
  LayerCostTable bad = random_costs(space, 1, true, false);
  bad.latency_edge.assign(space.layers.size(), {{0.0}});
  CHECK_THROWS_WITH_AS(trace_front(space, bad), doctest::Contains("latency_edge"), Error);
}

TEST_CASE("solve finds the least-sensitivity plan within the budgets, as brute force does") {
  const SearchSpace space = make_space(6, 3);
  for (std::uint64_t seed = 1; seed <= 20; ++seed) {
    CAPTURE(seed);
    const LayerCostTable costs = random_costs(space, seed + 100, true, true);
    const auto plans = all_plans(space, costs);
    for (double latency_budget : {4.0, 8.0, 12.0}) {
      for (double size_budget : {5.0, 9.0}) {
        const CostBudgets budgets{latency_budget, size_budget};
        std::optional<double> best_sensitivity;
        for (const SolvedPlan& plan : plans)
          if (plan.totals.latency <= latency_budget && plan.totals.size <= size_budget)
            best_sensitivity = std::min(best_sensitivity.value_or(1e300), plan.totals.sensitivity);
        const SolveResult result = solve(space, costs, budgets);
        REQUIRE(result.best.has_value() == best_sensitivity.has_value());
        if (result.best) {
          CHECK(result.best->totals.sensitivity == *best_sensitivity);
          CHECK(result.best->totals.latency <= latency_budget);
          CHECK(result.best->totals.size <= size_budget);
          check_plan_totals(space, costs, *result.best);
        } else {
          CHECK(!result.infeasible_reason.empty());
        }
      }
    }
  }
}

TEST_CASE("an infeasible budget names the fastest or smallest possible plan") {
  const SearchSpace space = make_space(2, 2);
  LayerCostTable costs;
  costs.sensitivity = {{0, 1}, {0, 1}};
  costs.latency = {{1.0, 0.75}, {1.0, 0.75}};  // fastest: 1.5
  costs.size = {{4, 1}, {4, 3}};               // smallest: 1 + 3 = 4

  SolveResult result = solve(space, costs, {1.25, std::nullopt});
  CHECK_FALSE(result.best);
  CHECK(result.lowest.latency == 1.5);
  CHECK(result.infeasible_reason == "latency budget 1.25 is below the fastest plan's 1.5");

  result = solve(space, costs, {std::nullopt, 3.0});
  CHECK(result.infeasible_reason == "size budget 3 is below the smallest plan's 4");

  // Fastest (1.5) and smallest (4) are the same plan here, so make them differ.
  costs.size = {{1, 4}, {1, 4}};  // smallest is the slowest (2.0)
  result = solve(space, costs, {1.5, 2.0});
  CHECK_FALSE(result.best);
  CHECK(result.infeasible_reason ==
        "latency budget 1.5 and size budget 2 cannot both be met: the fastest plan within size 2 "
        "takes latency 2");

  result = solve(space, costs, {1.75, 5.0});
  REQUIRE(result.best);
  CHECK(result.best->totals.latency == 1.75);
  CHECK(result.best->totals.sensitivity == 1);

  CHECK_THROWS_WITH_AS(solve(space, LayerCostTable{{{0, 1}, {0, 1}}, {}, {}, {}, {}}, {1.0, {}}),
                       doctest::Contains("no latency in the cost table"), Error);
}

TEST_CASE("unsupported options are never chosen") {
  const SearchSpace space = make_space(3, 3);
  LayerCostTable costs = random_costs(space, 7, true, true);
  costs.sensitivity[1][2] = -100;  // attractive but unsupported
  costs.unsupported_reason = {{"", "", ""}, {"", "", "no INT4 kernel"}, {"", "", ""}};
  for (const SolvedPlan& plan : trace_front(space, costs)) CHECK(plan.genome[1] != 2);
  const SolveResult result = solve(space, costs, {100.0, 100.0});
  REQUIRE(result.best);
  CHECK(result.best->genome[1] != 2);
}

TEST_CASE("the exact policy asks the front spread first and each plan once") {
  CHECK(bisection_order(0).empty());
  CHECK(bisection_order(1) == std::vector<std::size_t>{0});
  CHECK(bisection_order(2) == std::vector<std::size_t>{0, 1});
  CHECK(bisection_order(9) == std::vector<std::size_t>{0, 8, 4, 2, 6, 1, 3, 5, 7});

  const SearchSpace space = make_space(5, 3);
  PolicyParams params;
  params.costs = random_costs(space, 3, true, false);
  ExactFrontPolicy policy(space, params);
  const std::vector<SolvedPlan> front = trace_front(space, *params.costs);
  REQUIRE(policy.front().size() == front.size());
  REQUIRE(front.size() >= 3);

  // The driver already evaluated the slowest plan: it is not asked again.
  const Evaluation known{front.back().genome, {0.0}, 0};
  policy.tell(std::span(&known, 1));
  const std::vector<Genome> first = policy.ask(2);
  REQUIRE(first.size() == 2);
  CHECK(first[0] == front.front().genome);
  CHECK(first[1] == front[bisection_order(front.size())[2]].genome);
  std::size_t asked = first.size();
  while (!policy.finished()) asked += policy.ask(4).size();
  CHECK(asked == front.size() - 1);
  CHECK(policy.ask(4).empty());

  CHECK_THROWS_WITH_AS(ExactFrontPolicy(space, PolicyParams{}),
                       doctest::Contains("no per-layer cost table"), Error);
}

TEST_CASE(
    "past the state limit the exact solver fails, the thinned trace, the policy and solve answer") {
  const SearchSpace space = make_space(22, 2);
  const LayerCostTable costs = test_spaces::past_the_state_limit(space);
  CHECK_THROWS_WITH_AS(trace_front(space, costs), doctest::Contains("use nsga2"), Error);

  const TracedFront front = trace_front_thinned(space, costs);
  CHECK(front.thinned.find("layer20") != std::string::npos);
  REQUIRE_FALSE(front.plans.empty());
  CHECK(front.plans.size() <= kMaxStates);
  // Spread over the whole trade-off: the fastest and the smallest plan survive the thinning.
  CHECK(front.plans.front().totals.latency == 0);
  CHECK(front.plans.back().totals.size == 0);
  // The exact policy asks that thinned front instead of failing the run after its
  // sensitivity analysis, and says where it was thinned.
  PolicyParams params;
  params.costs = costs;
  const ExactFrontPolicy policy(space, params);
  CHECK(policy.thinned() == front.thinned);
  CHECK(policy.front().size() == front.plans.size());
  for (const std::size_t i : {std::size_t(0), front.plans.size() / 2, front.plans.size() - 1}) {
    const SolvedPlan& plan = front.plans[i];
    double latency = 0, size = 0;
    for (std::size_t l = 0; l < plan.genome.size(); ++l) {
      latency += costs.latency[l][std::size_t(plan.genome[l])];
      size += costs.size[l][std::size_t(plan.genome[l])];
    }
    CHECK(plan.totals.latency == latency);
    CHECK(plan.totals.size == size);
  }

  // Both budgets: the fail mode gives up, the thinned one still finds a plan within both.
  const double total = std::ldexp(1.0, 22) - 1;
  const CostBudgets budgets{0.6 * total, 0.6 * total};
  CHECK_THROWS_AS(solve(space, costs, budgets), Error);
  const SolveResult best = solve(space, costs, budgets, StateLimit::thin);
  REQUIRE(best.best.has_value());
  CHECK_FALSE(best.thinned.empty());
  CHECK(best.best->totals.latency <= *budgets.latency);
  CHECK(best.best->totals.size <= *budgets.size);
}

}  // namespace search_exact_solver_test
