// The ask/tell interface every search policy implements, and the factory the driver uses.
//
// The driver loop is:
//   auto policy = make_policy("nsga2", space, params);
//   while (!policy->finished() && evaluations < budget) {
//     auto plans = policy->ask(k);          // may return fewer than k, or none
//     if (plans.empty()) break;
//     policy->tell(evaluate(plans));        // objectives minimised, violation >= 0
//   }
// A policy may also be told evaluations it did not ask for (results resumed from the
// database, or another policy's plans): it learns from them and never asks them again.
// Every policy is deterministic for a given seed and sequence of tells.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "search/space.hpp"

namespace bitplan::search {

class Policy {
 public:
  virtual ~Policy() = default;
  virtual std::string name() const = 0;
  // Up to `max_count` plans to evaluate next; fewer when the policy is waiting for the
  // results of plans it already asked for, or has nothing new to propose.
  virtual std::vector<Genome> ask(std::size_t max_count) = 0;
  virtual void tell(std::span<const Evaluation> results) = 0;
  // True when asking again cannot give a new plan (space or front exhausted, converged,
  // or the generation limit reached).
  virtual bool finished() const { return false; }
};

struct PolicyParams {
  std::uint64_t seed = 1;
  // NSGA-II: population size. REINFORCE: episodes per policy-gradient update.
  std::size_t population_size = 32;
  // NSGA-II: stop after this many generations of offspring (0 = until the driver stops).
  std::size_t generations = 0;
  // Required by "exact"; "reinforce" takes its budget feature from it. When given, every
  // policy avoids the options it marks unsupported.
  std::optional<LayerCostTable> costs;
  // "exact": the front is traced within these budgets. "reinforce": the walk's "budget used
  // so far" feature is relative to them.
  CostBudgets budgets;
  // NSGA-II: plans put in the first population before uniform and random ones (e.g. the
  // exact solver's front).
  std::vector<Genome> initial_genomes;
  // REINFORCE: driver-chosen features per layer, [layer][feature] (e.g. index/L, log MACs,
  // log params, op kind, per-option sensitivity, latency share); standardised per feature.
  std::vector<std::vector<double>> layer_features;
  // REINFORCE: reward = -objectives[0] - violation_penalty * constraint_violation.
  double violation_penalty = 10;
  double learning_rate = 0.01;
  double entropy_bonus = 0.01;
  std::size_t hidden_units = 48;
};

// Policy names make_policy accepts: "random", "exact", "nsga2", "reinforce".
std::vector<std::string> policy_names();

// Builds a policy; fails (usage) on an unknown name and (invalid_input) when the space or
// the parameters the policy needs are missing or inconsistent.
std::unique_ptr<Policy> make_policy(std::string_view name, const SearchSpace& space,
                                    const PolicyParams& params);

}  // namespace bitplan::search
