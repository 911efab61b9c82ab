// The stages of a search run, each with its inputs and outputs spelled out so that it can be
// tested alone; run_search (search/driver.hpp) wires them in this order:
//
//   build_space          quantizable layers + search.options/overrides/keep_fp32 -> space
//   PlanCosts            the cost models of one model and target: a plan's latency, size, BOPs
//   build_cost_tables    space -> per-(layer, option) specs, costs and unsupported reasons
//   feasible_budgets     the search's limits as the solver's budgets, failing when no plan
//                        can meet them
//   run_sensitivity      each (layer, option) alone on a subset -> sensitivity tables
//   evaluate_baselines   the uniform plans on the search subset
//   nsga2_seeds,         policy parameters from the tables
//   layer_features
//   run_policy_loop      policy ask -> Runner (search/runner.hpp) -> tell; the front kept
//                        up to date after every evaluation
//   front_hypervolume    the front's quality in one number
//   reevaluate_final     the front and the baselines on the final selection, latency
//                        measured; front points beaten there leave the front
//
// Measurements go through an Evaluator (search/evaluator.hpp); objectives are rows of the
// objective table (search/objectives.hpp).
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/timing_stats.hpp"
#include "cost_models/cost_model.hpp"
#include "search/driver.hpp"
#include "search/evaluator.hpp"
#include "search/objectives.hpp"
#include "search/policy.hpp"
#include "search/runner.hpp"

namespace bitplan::search {

// Layers paired with the reason the target cannot run them, as the latency model says.
using UnsupportedLayers = std::vector<std::pair<std::string, std::string>>;

// One LayerOptions per layer: search.options, the first matching override, fp32 where a
// keep_fp32 pattern matches. Fails (invalid_input) on a pattern that is no regular
// expression or matches no layer.
SearchSpace build_space(const std::vector<QuantizableLayer>& layers, const SearchOptions& options,
                        const std::string& model_name);

// The cost models of one model (and target, when a profile is given).
class PlanCosts {
 public:
  PlanCosts(const Graph& graph, const std::string& model_hash, std::int64_t latency_batch,
            const HwProfile* profile);
  // The models hold a reference to context_: a PlanCosts stays where it was built.
  PlanCosts(const PlanCosts&) = delete;
  PlanCosts& operator=(const PlanCosts&) = delete;

  const CostContext& context() const { return context_; }
  const CostModel* latency() const { return latency_.get(); }  // null without a profile
  const CostModel& size() const { return *size_; }
  // The quantizable layers' weight elements, all together: what bits per weight divide by.
  std::int64_t weight_elements() const { return weight_elements_; }
  // Bits per weight of a sum of the size model's per-layer bytes (its fixed cost left out),
  // and back: a max_bits_per_weight bound is a size bound on the same per-layer sums.
  double bits_per_weight(double layer_bytes) const;
  double layer_bytes_at(double bits_per_weight) const;

  // Sets the cost fields of `metrics` (latency NaN without a profile or where the target
  // cannot run the plan) and returns the layers the target cannot run.
  UnsupportedLayers add_costs(const QuantPlan& plan, PlanMetrics& metrics) const;

 private:
  CostContext context_;
  std::unique_ptr<CostModel> latency_, size_, bops_;
  std::int64_t weight_elements_ = 0;
};

struct CostTables {
  std::vector<std::vector<LayerQuant>> specs;  // [layer][option]
  // Latency (with edges), size and unsupported reasons; sensitivity 0 until the analysis.
  LayerCostTable table;
  std::vector<std::vector<double>> latency_ms;  // [layer][option], NaN without a profile
  std::string space_description;                // for --dry-run and the report
};

// Fails (invalid_input) on an option that is no spec label and on a layer left without an
// option the target can run.
CostTables build_cost_tables(const Graph& graph, const std::vector<QuantizableLayer>& layers,
                             const SearchSpace& space, const PlanCosts& costs,
                             const std::string& target);

// The latency and size limits as budgets on the per-layer sums (the fixed costs taken off);
// max_bits_per_weight is a size budget too (the tighter of it and max_size_mb stands).
// Fails (invalid_input) when no plan of the space meets them, naming the fastest or smallest
// plan. Where the space is too big to decide that exactly, says so on progress.line and
// lets the policy find out.
CostBudgets feasible_budgets(const SearchSpace& space, const LayerCostTable& table,
                             const SearchOptions& options, const PlanCosts& costs,
                             const Progress& progress);

struct SensitivityTables {
  std::vector<std::vector<double>> kl;    // [layer][option], 0 for fp32 and unsupported
  std::vector<std::vector<double>> drop;  // [layer][option] top-1 drop
  std::size_t pairs = 0;                  // (layer, option) pairs analysed
};

// `plan` built by `simulator` and measured on `selection`: the sensitivity pass's
// measurement (MeasureSingleLayer), the same on every rank.
SingleLayerMeasured measure_single_layer(QuantSimulator& simulator,
                                         const SubsetEvaluator& selection, const QuantPlan& plan);

// Each quantized, supported (layer, option) alone on `selection`, reusing the database rows
// of `context`; the others measured through `runner` (Runner::run_single_layer) and stored
// in (layer, option) order as they are told. When `stop` is set no more are started, and
// the rows from the first layer with a pair left unmeasured on are missing.
SensitivityTables run_sensitivity(const std::vector<QuantizableLayer>& layers,
                                  const SearchSpace& space, const CostTables& tables,
                                  Runner& runner, const SubsetEvaluator& selection, ResultsDb& db,
                                  const std::string& context, const Progress& progress,
                                  const std::atomic<bool>& stop);

// fp32, W8A8, W4A8, W4g128A16, then the search's own options not among them.
std::vector<std::string> baseline_labels(const SearchOptions& options);

// Each label as a uniform plan, evaluated through `runner` (its evaluator's selection,
// its database) and costed; layers the label cannot be simulated on stay fp32 and are named
// in Baseline::unsupported.
std::vector<Baseline> evaluate_baselines(const std::vector<std::string>& labels, const Graph& graph,
                                         const std::vector<QuantizableLayer>& layers,
                                         const std::string& model_hash, Runner& runner,
                                         const PlanCosts& costs, const std::string& target,
                                         const Progress& progress);

// NSGA-II's seed plans: up to half of `population_size` from the exact solver's front,
// spread first. The front is traced with StateLimit::thin, so a space too big to solve
// exactly still seeds (from a thinned front, said in `thinned`) and never fails the run.
struct Nsga2Seeds {
  std::vector<Genome> genomes;
  std::string thinned;  // "" when the seeds come from the exact front
};
Nsga2Seeds nsga2_seeds(const SearchSpace& space, const LayerCostTable& table,
                       const CostBudgets& budgets, std::size_t population_size);

// REINFORCE's per-layer features: position, log MACs, log weights, conv or not, then the
// sensitivity of each option, padded to the widest option list.
std::vector<std::vector<double>> layer_features(const CostContext& context,
                                                const LayerCostTable& table);

// The genome's plan: each layer's chosen spec where it quantizes.
QuantPlan genome_plan(const Genome& genome, const std::vector<QuantizableLayer>& layers,
                      const std::vector<std::vector<LayerQuant>>& specs,
                      const std::string& model_hash);

// From measured metrics to the search's numbers: costs, objective values, violation.
class PlanScorer {
 public:
  // `fp32_top1` on the search subset: the accuracy-drop limits are relative to it, as
  // max_perplexity_increase is to `fp32_perplexity` (perplexity metric).
  PlanScorer(const PlanCosts& costs, std::vector<Objective> objectives,
             const SearchOptions& options, double fp32_top1, double fp32_perplexity = kNotMeasured);

  const std::vector<Objective>& objectives() const { return objectives_; }
  ObjectivePoint objective_values(const PlanMetrics& metrics) const;
  // Relative excess over each limit, summed: 0 = feasible.
  double violation(const PlanMetrics& metrics) const;
  // Costs, unsupported layers, objectives and violation of `plan` from its measured metrics.
  void score(EvaluatedPlan& plan) const;

 private:
  const PlanCosts& costs_;
  std::vector<Objective> objectives_;
  const SearchOptions& options_;
  double fp32_top1_;
  double fp32_perplexity_;
};

struct PolicyLoopSettings {
  std::size_t batch_size = 16;             // plans asked at a time
  std::size_t max_evaluations = SIZE_MAX;  // SIZE_MAX: no limit
  double max_seconds = 0;                  // 0: no limit
  std::function<QuantPlan(const Genome&)> plan_of;
};

// Asks `policy` for batches, has `runner` evaluate them, scores and tells the results, until
// the policy finishes, a budget is spent or `stop` is set. Appends to result.evaluations,
// counts run and reused evaluations, sets result.front (feasible, supported, non-dominated;
// ordered by objectives), stop_reason, interrupted, seconds_search and seconds_evaluating.
void run_policy_loop(Policy& policy, Runner& runner, const PlanScorer& scorer,
                     const PolicyLoopSettings& settings, SearchResult& result,
                     const Progress& progress, const std::atomic<bool>& stop);

// Hypervolume of the front over objectives normalised by the bounds of fp32 and every
// supported evaluation (so runs of different policies on one config compare); reference
// 1.1 per axis. 0 for an empty front.
double front_hypervolume(const SearchResult& result, const PlanScorer& scorer);

struct FinalSelection {
  // The final selection; null when it is the search subset (the subset numbers stand).
  Evaluator* evaluator = nullptr;
  std::int64_t samples = 0;
  // Measures a plan's end-to-end latency in ms; null when the profile is not of this CPU.
  std::function<Spread(const QuantPlan&)> measure_latency;
};

// The front's plans and the baselines on the final selection (final_metrics, predicted
// costs kept), each front plan's latency measured where possible; then front plans that a
// front plan or baseline beats on every objective there leave the front
// (result.dropped_from_front). Stops when `stop` is set (result.interrupted).
void reevaluate_final(SearchResult& result, const FinalSelection& selection,
                      const PlanScorer& scorer, const Progress& progress,
                      const std::atomic<bool>& stop);

using Clock = std::chrono::steady_clock;

// Seconds since `t` on the steady clock.
inline double since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// "42s", "3m07s", "?" for a time not known.
std::string duration_text(double seconds);

}  // namespace bitplan::search
