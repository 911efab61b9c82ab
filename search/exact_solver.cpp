#include "search/exact_solver.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <deque>
#include <limits>
#include <map>

#include "core/error.hpp"

namespace bitplan::search {

namespace {

// Which totals take part in the dominance test; a cost left out counts as 0 there (its
// real sum is still carried for reporting).
struct Axes {
  bool latency = false;
  bool size = false;
};

struct State {
  double sensitivity, latency, size;
  std::uint32_t parent;  // index into the previous layer's kept states
  std::uint32_t option;
};

struct Backpointer {
  std::uint32_t parent;
  std::uint32_t option;
};

double cost_of(const std::vector<std::vector<double>>& table, std::size_t layer, int option) {
  return table.empty() ? 0.0 : table[layer][std::size_t(option)];
}

// Sum over layers from..end of each layer's cheapest supported option.
std::vector<double> cheapest_suffix(const std::vector<std::vector<double>>& table,
                                    const std::vector<std::vector<int>>& allowed) {
  std::vector<double> suffix(allowed.size() + 1, 0.0);
  for (std::size_t l = allowed.size(); l-- > 0;) {
    double cheapest = std::numeric_limits<double>::infinity();
    for (int option : allowed[l]) cheapest = std::min(cheapest, cost_of(table, l, option));
    suffix[l] = suffix[l + 1] + cheapest;
  }
  return suffix;
}

// Keeps the states no other state dominates in (latency?, size?, sensitivity), one per
// distinct key. Sorted by the first key, a state can only be dominated by an earlier one;
// the (size, sensitivity) staircase of the earlier states answers that in O(log n).
void keep_non_dominated(std::vector<State>& states, Axes axes) {
  auto key_latency = [&](const State& s) { return axes.latency ? s.latency : 0.0; };
  auto key_size = [&](const State& s) { return axes.size ? s.size : 0.0; };
  std::sort(states.begin(), states.end(), [&](const State& a, const State& b) {
    if (key_latency(a) != key_latency(b)) return key_latency(a) < key_latency(b);
    if (key_size(a) != key_size(b)) return key_size(a) < key_size(b);
    return a.sensitivity < b.sensitivity;
  });
  std::map<double, double> staircase;  // size -> least sensitivity; sensitivity falls as size grows
  std::size_t kept = 0;
  for (const State& state : states) {
    const double size = key_size(state);
    auto above = staircase.upper_bound(size);
    if (above != staircase.begin() && std::prev(above)->second <= state.sensitivity) continue;
    for (auto it = staircase.lower_bound(size);
         it != staircase.end() && it->second >= state.sensitivity;)
      it = staircase.erase(it);
    staircase.emplace(size, state.sensitivity);
    states[kept++] = state;
  }
  states.resize(kept);
}

// The least total, summed from the first layer like the programme's totals so that the
// two agree to the last bit.
double cheapest_total(const std::vector<std::vector<double>>& table,
                      const std::vector<std::vector<int>>& allowed) {
  double total = 0;
  for (std::size_t l = 0; l < allowed.size(); ++l) {
    double cheapest = std::numeric_limits<double>::infinity();
    for (int option : allowed[l]) cheapest = std::min(cheapest, cost_of(table, l, option));
    total += cheapest;
  }
  return total;
}

double edge_of(const LayerCostTable& costs, std::size_t layer, std::uint32_t previous, int option) {
  return costs.latency_edge.empty() || layer == 0
             ? 0.0
             : costs.latency_edge[layer][previous][std::size_t(option)];
}

// Sum over layers from..end of each layer's least edge into it (edges may be negative).
std::vector<double> least_edge_suffix(const LayerCostTable& costs,
                                      const std::vector<std::vector<int>>& allowed) {
  std::vector<double> suffix(allowed.size() + 1, 0.0);
  for (std::size_t l = allowed.size(); l-- > 0;) {
    double least = 0;
    if (!costs.latency_edge.empty() && l > 0) {
      least = std::numeric_limits<double>::infinity();
      for (int previous : allowed[l - 1])
        for (int option : allowed[l])
          least = std::min(least, edge_of(costs, l, std::uint32_t(previous), option));
    }
    suffix[l] = suffix[l + 1] + least;
  }
  return suffix;
}

// The fastest plan's latency with edges: a shortest path over (layer, option).
double fastest_with_edges(const LayerCostTable& costs,
                          const std::vector<std::vector<int>>& allowed) {
  std::vector<double> best(allowed.empty() ? 0 : allowed[0].size());
  for (std::size_t i = 0; i < best.size(); ++i) best[i] = cost_of(costs.latency, 0, allowed[0][i]);
  for (std::size_t l = 1; l < allowed.size(); ++l) {
    std::vector<double> next(allowed[l].size(), std::numeric_limits<double>::infinity());
    for (std::size_t j = 0; j < allowed[l].size(); ++j)
      for (std::size_t i = 0; i < allowed[l - 1].size(); ++i)
        next[j] = std::min(
            next[j], best[i] + edge_of(costs, l, std::uint32_t(allowed[l - 1][i]), allowed[l][j]) +
                         cost_of(costs.latency, l, allowed[l][j]));
    best = std::move(next);
  }
  return best.empty() ? 0.0 : *std::min_element(best.begin(), best.end());
}

// Tolerance for the budget pruning, whose bound sums in a different order than the final
// totals: rounding must never drop a plan that fits. Final totals are checked exactly.
bool exceeds(double lower_bound, const std::optional<double>& budget) {
  return budget && lower_bound > *budget + 1e-9 * std::max(1.0, std::abs(*budget));
}

// The kept partial plans to extend at a layer with `options` options each: all of them when
// kMaxStates allows, else (StateLimit::thin) as many as it allows, evenly spread over their
// order from the first to the last, so the cheapest and the dearest plans stay.
std::vector<std::size_t> states_to_extend(std::size_t kept, std::size_t options) {
  const std::size_t room = std::max<std::size_t>(2, kMaxStates / std::max<std::size_t>(1, options));
  std::vector<std::size_t> chosen(std::min(kept, room));
  for (std::size_t i = 0; i < chosen.size(); ++i)
    chosen[i] = chosen.size() == kept ? i : i * (kept - 1) / (chosen.size() - 1);
  return chosen;
}

std::vector<SolvedPlan> run_dominance_dp(const SearchSpace& space, const LayerCostTable& costs,
                                         const CostBudgets& budgets, Axes axes, StateLimit limit,
                                         std::string& thinned) {
  const std::vector<std::vector<int>> allowed = allowed_options(space, &costs);
  std::vector<double> latency_suffix = cheapest_suffix(costs.latency, allowed);
  const std::vector<double> edge_suffix = least_edge_suffix(costs, allowed);
  for (std::size_t l = 0; l < latency_suffix.size(); ++l) latency_suffix[l] += edge_suffix[l];
  const std::vector<double> size_suffix = cheapest_suffix(costs.size, allowed);

  std::vector<State> frontier{{0, 0, 0, 0, 0}};
  std::vector<std::vector<Backpointer>> trace(space.layers.size());
  for (std::size_t l = 0; l < space.layers.size(); ++l) {
    const std::size_t candidates = frontier.size() * allowed[l].size();
    if (candidates > kMaxStates && limit == StateLimit::fail)
      fail_unsupported(
          "solve bit allocation exactly: {} partial plans at layer '{}' ({} of {}): more than "
          "the {} the exact solver holds; use nsga2, or fewer options per layer",
          candidates, space.layers[l].layer, l + 1, space.layers.size(), kMaxStates);
    const std::vector<std::size_t> extended_states =
        states_to_extend(frontier.size(), allowed[l].size());
    if (extended_states.size() < frontier.size() && thinned.empty())
      thinned = fmt::format(
          "from layer '{}' ({} of {}) on, only {} of {} partial plans were extended (limit {})",
          space.layers[l].layer, l + 1, space.layers.size(), extended_states.size(),
          frontier.size(), kMaxStates);
    std::vector<State> next;
    next.reserve(extended_states.size() * allowed[l].size());
    for (const std::size_t s : extended_states) {
      const State& state = frontier[s];
      for (int option : allowed[l]) {
        State extended{state.sensitivity + costs.sensitivity[l][std::size_t(option)],
                       state.latency + cost_of(costs.latency, l, option) +
                           edge_of(costs, l, state.option, option),
                       state.size + cost_of(costs.size, l, option), std::uint32_t(s),
                       std::uint32_t(option)};
        if (exceeds(extended.latency + latency_suffix[l + 1], budgets.latency) ||
            exceeds(extended.size + size_suffix[l + 1], budgets.size))
          continue;
        next.push_back(extended);
      }
    }
    if (costs.latency_edge.empty() || l + 1 == space.layers.size()) {
      keep_non_dominated(next, axes);
    } else {
      // With edge costs the rest of a plan depends on this layer's option: only partial
      // plans ending in the same option can dominate each other (at the last layer all can).
      std::vector<State> kept;
      for (int option : allowed[l]) {
        std::vector<State> group;
        for (const State& state : next)
          if (state.option == std::uint32_t(option)) group.push_back(state);
        keep_non_dominated(group, axes);
        kept.insert(kept.end(), group.begin(), group.end());
      }
      next = std::move(kept);
    }
    trace[l].reserve(next.size());
    for (const State& state : next) trace[l].push_back({state.parent, state.option});
    frontier = std::move(next);
    if (frontier.empty()) break;
  }

  std::vector<SolvedPlan> plans;
  for (std::size_t s = 0; s < frontier.size(); ++s) {
    const State& state = frontier[s];
    if ((budgets.latency && state.latency > *budgets.latency) ||
        (budgets.size && state.size > *budgets.size))
      continue;
    SolvedPlan plan{Genome(space.layers.size()), {state.sensitivity, state.latency, state.size}};
    std::uint32_t index = std::uint32_t(s);
    for (std::size_t l = space.layers.size(); l-- > 0;) {
      plan.genome[l] = int(trace[l][index].option);
      index = trace[l][index].parent;
    }
    plans.push_back(std::move(plan));
  }
  std::sort(plans.begin(), plans.end(), [](const SolvedPlan& a, const SolvedPlan& b) {
    if (a.totals.latency != b.totals.latency) return a.totals.latency < b.totals.latency;
    if (a.totals.size != b.totals.size) return a.totals.size < b.totals.size;
    return a.totals.sensitivity < b.totals.sensitivity;
  });
  return plans;
}

void check_inputs(const SearchSpace& space, const LayerCostTable& costs,
                  const CostBudgets& budgets) {
  space.validate();
  costs.validate(space);
  if (budgets.latency && costs.latency.empty())
    fail_input(
        "solve bit allocation: a latency budget ({}) but no latency in the cost table: "
        "a budget needs its cost model",
        *budgets.latency);
  if (budgets.size && costs.size.empty())
    fail_input(
        "solve bit allocation: a size budget ({}) but no size in the cost table: a budget "
        "needs its cost model",
        *budgets.size);
}

}  // namespace

std::vector<SolvedPlan> trace_front(const SearchSpace& space, const LayerCostTable& costs,
                                    const CostBudgets& budgets) {
  check_inputs(space, costs, budgets);
  std::string thinned;  // stays empty: StateLimit::fail
  return run_dominance_dp(space, costs, budgets, {!costs.latency.empty(), !costs.size.empty()},
                          StateLimit::fail, thinned);
}

TracedFront trace_front_thinned(const SearchSpace& space, const LayerCostTable& costs,
                                const CostBudgets& budgets) {
  check_inputs(space, costs, budgets);
  TracedFront front;
  front.plans =
      run_dominance_dp(space, costs, budgets, {!costs.latency.empty(), !costs.size.empty()},
                       StateLimit::thin, front.thinned);
  return front;
}

SolveResult solve(const SearchSpace& space, const LayerCostTable& costs, const CostBudgets& budgets,
                  StateLimit limit) {
  check_inputs(space, costs, budgets);
  SolveResult result;
  const std::vector<std::vector<int>> allowed = allowed_options(space, &costs);
  result.lowest = {cheapest_total(costs.sensitivity, allowed),
                   costs.latency_edge.empty() || costs.latency.empty()
                       ? cheapest_total(costs.latency, allowed)
                       : fastest_with_edges(costs, allowed),
                   cheapest_total(costs.size, allowed)};

  // Only the budgeted costs matter for the best plan: leaving the others out of the
  // dominance test keeps the state sets small.
  const Axes axes{budgets.latency.has_value(), budgets.size.has_value()};
  const std::vector<SolvedPlan> front =
      run_dominance_dp(space, costs, budgets, axes, limit, result.thinned);
  if (!front.empty()) {
    result.best =
        *std::min_element(front.begin(), front.end(), [](const SolvedPlan& a, const SolvedPlan& b) {
          if (a.totals.sensitivity != b.totals.sensitivity)
            return a.totals.sensitivity < b.totals.sensitivity;
          if (a.totals.latency != b.totals.latency) return a.totals.latency < b.totals.latency;
          return a.totals.size < b.totals.size;
        });
    return result;
  }
  if (budgets.latency && result.lowest.latency > *budgets.latency) {
    result.infeasible_reason = fmt::format("latency budget {} is below the fastest plan's {}",
                                           *budgets.latency, result.lowest.latency);
  } else if (budgets.size && result.lowest.size > *budgets.size) {
    result.infeasible_reason = fmt::format("size budget {} is below the smallest plan's {}",
                                           *budgets.size, result.lowest.size);
  } else {
    // Each budget alone can be met, both together cannot: say what the size budget costs.
    BITPLAN_ASSERT(budgets.latency && budgets.size);
    const std::vector<SolvedPlan> within_size = run_dominance_dp(
        space, costs, {std::nullopt, budgets.size}, {true, true}, limit, result.thinned);
    double fastest = std::numeric_limits<double>::infinity();
    for (const SolvedPlan& plan : within_size) fastest = std::min(fastest, plan.totals.latency);
    result.infeasible_reason = fmt::format(
        "latency budget {} and size budget {} cannot both be met: the fastest plan within size "
        "{} takes latency {}",
        *budgets.latency, *budgets.size, *budgets.size, fastest);
  }
  return result;
}

std::vector<std::size_t> bisection_order(std::size_t n) {
  std::vector<std::size_t> order;
  if (n == 0) return order;
  order.push_back(0);
  if (n == 1) return order;
  order.push_back(n - 1);
  std::deque<std::pair<std::size_t, std::size_t>> gaps{{0, n - 1}};  // open intervals
  while (!gaps.empty()) {
    const auto [low, high] = gaps.front();
    gaps.pop_front();
    if (high - low < 2) continue;
    const std::size_t middle = low + (high - low) / 2;
    order.push_back(middle);
    gaps.emplace_back(low, middle);
    gaps.emplace_back(middle, high);
  }
  return order;
}

ExactFrontPolicy::ExactFrontPolicy(const SearchSpace& space, const PolicyParams& params)
    : space_(space) {
  if (!params.costs)
    fail_input(
        "create the 'exact' policy: no per-layer cost table: it needs sensitivity (and "
        "latency and/or size) per layer and option");
  TracedFront traced = trace_front_thinned(space, *params.costs, params.budgets);
  front_ = std::move(traced.plans);
  thinned_ = std::move(traced.thinned);
  order_ = bisection_order(front_.size());
}

std::vector<Genome> ExactFrontPolicy::ask(std::size_t max_count) {
  std::vector<Genome> plans;
  for (; next_ < order_.size() && plans.size() < max_count; ++next_) {
    const Genome& genome = front_[order_[next_]].genome;
    if (!told_.contains(genome)) plans.push_back(genome);
  }
  return plans;
}

void ExactFrontPolicy::tell(std::span<const Evaluation> results) {
  for (const Evaluation& result : results) {
    space_.check(result.genome);
    told_.insert(result.genome);
  }
}

}  // namespace bitplan::search
