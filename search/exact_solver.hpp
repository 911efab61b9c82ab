// Exact HAWQ-V3-style bit allocation on the additive per-layer estimates: a multiple-choice
// knapsack, minimise sum(sensitivity) subject to sum(latency) <= L and/or sum(size) <= S.
//
// Solved exactly by a dominance ("Pareto-set") dynamic programme over the layers: after
// layer l it keeps every non-dominated partial plan (latency, size, sensitivity) over
// layers 0..l, extends each by every supported option of layer l+1, drops those that can
// no longer meet a budget (even with the cheapest options for the remaining layers) and
// those another partial plan dominates. Nothing is discretised, so the answer is exact for
// the table; the only limit is the state count: more than kMaxStates candidate partial
// plans at one layer fails with an error suggesting nsga2 (memory stays near
// 32 bytes x kMaxStates for the candidates plus 8 bytes per kept state for the traceback),
// unless the caller asks for StateLimit::thin (a good subset is enough to seed NSGA-II).
// Plans with identical totals are represented by one of them. Edge latencies between
// consecutive layers (LayerCostTable::latency_edge) keep it exact: partial plans are then
// compared only with those ending in the same option.
#pragma once

#include <cstddef>
#include <optional>
#include <string>

#include "search/policy.hpp"

namespace bitplan::search {

struct PlanTotals {
  double sensitivity = 0;
  double latency = 0;  // 0 when the table has no latency
  double size = 0;     // 0 when the table has no size
};

struct SolvedPlan {
  Genome genome;
  PlanTotals totals;
};

// What the programme does at a layer whose candidate partial plans would exceed kMaxStates.
enum class StateLimit {
  fail,  // fail (unsupported) suggesting nsga2: the caller needs the exact answer
  // Extend only an evenly spread subset of the kept partial plans (in their latency, size,
  // sensitivity order) and go on: every plan returned still meets the budgets, but the
  // front may miss plans and the best plan may not be the least sensitive.
  thin,
};

struct SolveResult {
  std::optional<SolvedPlan> best;  // least sensitivity within the budgets; nullopt if none
  // Each total's minimum over all plans on its own: the fastest plan's latency, the
  // smallest plan's size, the least sensitivity. Lets the driver say "budget 1.2 ms is
  // below the fastest plan, 1.5 ms".
  PlanTotals lowest;
  // Why no plan meets the budgets (empty when `best` is set), in the table's units.
  std::string infeasible_reason;
  // StateLimit::thin only: where the programme was thinned ("" when the answer is exact).
  // Without `best`, a thinned answer proves nothing about the budgets.
  std::string thinned;
};

// trace_front's answer under StateLimit::thin.
struct TracedFront {
  std::vector<SolvedPlan> plans;
  std::string thinned;  // where the programme was thinned; "" when `plans` is the exact front
};

inline constexpr std::size_t kMaxStates = 2'000'000;

// The plan of least summed sensitivity within `budgets` (ties: lower latency, then size).
// Fails (invalid_input) on a table that does not match the space or a budget for a cost
// the table does not have.
SolveResult solve(const SearchSpace& space, const LayerCostTable& costs, const CostBudgets& budgets,
                  StateLimit limit = StateLimit::fail);

// Every non-dominated plan in (sum sensitivity, sum latency, sum size) — the answers of
// solve() for every budget at once — restricted to `budgets`, sorted by latency, then
// size, then sensitivity. Costs the table lacks are left out of the dominance test.
std::vector<SolvedPlan> trace_front(const SearchSpace& space, const LayerCostTable& costs,
                                    const CostBudgets& budgets = {});

// trace_front that never fails on the state limit (StateLimit::thin): NSGA-II seeds from it,
// and a run with the NSGA-II policy must not fail because the space is too big to solve.
TracedFront trace_front_thinned(const SearchSpace& space, const LayerCostTable& costs,
                                const CostBudgets& budgets = {});

// The front as a policy: asks the traced plans so that the driver measures them for real,
// spread first (the cheapest and dearest plans, then bisection of the latency-sorted list),
// so a driver that stops early still covers the whole trade-off. Needs params.costs.
// A space too big to solve exactly (an LLM's 211 layers x 4 options against two costs) is
// traced thinned rather than failed: the run has already paid for every layer's
// sensitivity by then, and thinned() says from which layer on the front is approximate.
class ExactFrontPolicy final : public Policy {
 public:
  ExactFrontPolicy(const SearchSpace& space, const PolicyParams& params);
  std::string name() const override { return "exact"; }
  std::vector<Genome> ask(std::size_t max_count) override;
  void tell(std::span<const Evaluation> results) override;
  bool finished() const override { return next_ == order_.size(); }

  const std::vector<SolvedPlan>& front() const { return front_; }
  // "" when the front is exact; else where the programme was thinned (TracedFront::thinned).
  const std::string& thinned() const { return thinned_; }

 private:
  SearchSpace space_;
  std::vector<SolvedPlan> front_;
  std::string thinned_;
  std::vector<std::size_t> order_;  // indices into front_, in asking order
  std::size_t next_ = 0;
  GenomeSet told_;  // plans the driver evaluated already: not asked again
};

// 0, n-1, then the midpoints of the gaps breadth first: any prefix covers the range evenly.
std::vector<std::size_t> bisection_order(std::size_t n);

}  // namespace bitplan::search
