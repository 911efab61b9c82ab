// The search's objectives as data: one row per objective a config may name
// (search.objectives), with its unit, its direction and how to read it off a plan's metrics.
// The config check, the driver's objective vectors and the "needs a latency profile" rule
// look objectives up here; nothing else compares objective names.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/metric_kind.hpp"
#include "search/pareto.hpp"
#include "search/plan_metrics.hpp"

namespace bitplan::search {

enum class ObjectiveId {
  accuracy,
  latency,
  size,
  bits_per_weight,
  bops,
  worst_class,
  kl,
  perplexity,
  cosine
};

enum class Direction { minimise, maximise };

struct Objective {
  ObjectiveId id;
  std::string_view name;  // as written in search.objectives
  std::string_view unit;  // of extract's value
  Direction direction;    // which way extract's value improves
  double (*extract)(const PlanMetrics&);
};

// Every objective, in the order the docs list them.
std::span<const Objective> objective_table();

// The row named `name`, or nullptr.
const Objective* find_objective(std::string_view name);

// "accuracy, latency, ...": the valid names, for messages.
std::string objective_names_text();

// The rows for `names`, in order; fails (usage) on a name the table does not have.
std::vector<Objective> objectives_named(const std::vector<std::string>& names);

// The objective that judges quality under a metric ("accuracy", "kl", "cosine",
// "perplexity"), which stands for "accuracy" when a config names no objectives.
std::string_view quality_objective(MetricKind kind);

// Fails (invalid input) when an objective of `names` needs another metric than `kind`
// (accuracy and worst_class need top1; perplexity needs perplexity; cosine needs embedding).
void check_objectives_fit_metric(const std::vector<std::string>& names, MetricKind kind);

// Whether `objectives` holds the objective `id`.
bool has_objective(std::span<const Objective> objectives, ObjectiveId id);

// The values of `objectives` for a plan, each turned into a value to minimise (a maximised
// objective is negated): the form the policies, the front and the hypervolume take.
ObjectivePoint minimised_objectives(std::span<const Objective> objectives,
                                    const PlanMetrics& metrics);

}  // namespace bitplan::search
