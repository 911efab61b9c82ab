// The search driver: one run from a config to a Pareto front of measured plans.
//
//   model + dataset + profile + SearchOptions
//     -> space (per-layer candidate specs; unsupported ones marked with the reason)
//     -> cost tables (latency from the profile, size, BOPs: cost_models/)
//     -> sensitivity (each layer x option alone, on a subset; cached in the results DB)
//     -> policy loop (ask/tell; each plan evaluated by the quantized executor, or taken
//        from the results DB when an earlier run evaluated it)
//     -> front (non-dominated feasible plans), re-evaluated on the full selection, latency
//        measured end to end when the profile is of this CPU
//     -> results/<run>/ (search/output.hpp)
// Each step is a stage of search/driver_stages.hpp; run_search wires them together.
// A killed run resumes by running again: every finished evaluation is in the database, the
// policies are deterministic for a seed, so the replay reaches the same front.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "backends/hw_profile.hpp"
#include "executor/metrics.hpp"
#include "executor/quant/simulate.hpp"
#include "search/options.hpp"
#include "search/plan_metrics.hpp"
#include "search/runner.hpp"
#include "search/space.hpp"

namespace bitplan::search {

struct DriverInputs {
  const Graph* graph = nullptr;  // imported, simplified
  std::string model_name, model_hash;
  const Dataset* dataset = nullptr;
  std::vector<std::int64_t> validation;  // selection, in order (subsets are prefixes)
  std::string dataset_id;                // names the dataset and selection (results key)
  CalibrationData calibration;
  // The model as its latency is costed and measured, with its calibration samples: null for
  // `graph` and `calibration` themselves; with search.latency_sequence, a copy whose token
  // inputs hold that many tokens (a decoding step's shapes at 1), its samples cut alike.
  const Graph* latency_graph = nullptr;
  const CalibrationData* latency_calibration = nullptr;
  std::optional<HwProfile> profile;  // none: latency is not an objective
  std::int64_t eval_batch = 64;
  bitplan::MetricConfig metric;  // what judges a plan (executor/metrics.hpp)
  SearchOptions options;
  bool dry_run = false;           // resolve and describe, evaluate nothing
  bool sensitivity_only = false;  // stop after the sensitivity analysis (and baselines)
  // The runner of the sensitivity pass's, the baselines' and the policy loop's evaluations
  // (everything but the final re-evaluation), given this process's evaluator (the results
  // database in front of the executor) and its single-layer measurement; null:
  // InProcessRunner.
  std::function<std::unique_ptr<Runner>(ExecutorEvaluator&, MeasureSingleLayer)> make_runner;
};

struct EvaluatedPlan {
  Genome genome;
  std::string key;
  QuantPlan plan;
  PlanMetrics metrics;
  std::vector<double> objectives;
  double violation = 0;
  bool from_database = false;
  std::vector<std::pair<std::string, std::string>> unsupported;  // layer, reason
  // Front points only: the full selection and a measured end-to-end latency.
  std::optional<PlanMetrics> final_metrics;
  std::optional<double> measured_latency_ms, measured_latency_iqr_ms;
};

struct Baseline {
  std::string name;
  PlanMetrics metrics;      // on the search subset
  std::string unsupported;  // why the target cannot run it (latency then NaN)
  QuantPlan plan;
  std::optional<PlanMetrics> final_metrics;  // on the final selection, beside the front's
};

struct SearchResult {
  SearchSpace space;
  std::vector<std::vector<std::string>> unsupported;  // [layer][option]
  std::vector<std::vector<double>> sensitivity;       // [layer][option] KL (0 for fp32)
  std::vector<std::vector<double>> sensitivity_drop;  // [layer][option] top-1 drop
  std::vector<std::vector<double>> latency_ms;        // [layer][option]
  PlanMetrics fp32;
  bitplan::MetricKind metric = bitplan::MetricKind::top1;  // what judged every plan
  std::vector<Baseline> baselines;
  std::vector<EvaluatedPlan> evaluations;  // in evaluation order
  std::vector<std::size_t> front;          // indices into evaluations
  // Subset-front plans the final re-evaluation showed beaten on every objective: (plan key,
  // the plan that beat it). They are no longer in `front`.
  std::vector<std::pair<std::string, std::string>> dropped_from_front;
  std::vector<std::string> objective_names;
  double hypervolume = 0;  // normalised objectives, reference 1.1 per axis
  double seconds_sensitivity = 0, seconds_search = 0, seconds_final = 0;
  // Of seconds_search, the time inside Runner::run (the rest is the policy's own), and what
  // the runner says of it (Runner::summary).
  double seconds_evaluating = 0;
  std::string runner_summary;
  std::int64_t evaluations_run = 0, evaluations_reused = 0;
  bool interrupted = false;
  std::string stop_reason;
  std::string target;  // profile target, or "" without one
  // What a reader of the results must know about the profile (another CPU's, too noisy):
  // backends/hw_profile.hpp profile_warnings. Shown in the report and pareto.json.
  std::vector<std::string> target_warnings;
  std::string policy;
  std::string space_description;  // for --dry-run and the report
};

struct Progress {
  std::function<void(const std::string&)> line;    // a finished step
  std::function<void(const std::string&)> status;  // the current state (overwritten)
};

// Fails (invalid_input) for impossible requests before any evaluation: infeasible latency
// or size budgets (naming the fastest / smallest possible plan), empty spaces, override
// patterns that match no layer, options no layer can run.
SearchResult run_search(const DriverInputs& inputs, const Progress& progress,
                        const std::atomic<bool>& stop);

// A worker's share of run_search (an MPI rank other than 0): the simulator, the search
// subset and the sensitivity subset built exactly as run_search builds them (same
// selections, calibration, early stopping), without the results database. `serve` gets the
// evaluator and the single-layer measurement and returns when the job ends.
void serve_search_evaluations(
    const DriverInputs& inputs,
    const std::function<void(Evaluator&, const MeasureSingleLayer&)>& serve);

// The LayerQuant of an option label for a layer: "fp32", "fp16", "bf16", "fp8" or a uniform
// shorthand (W8A8, W4A8, W4g128A16, ...; see executor/quant/plan.hpp).
LayerQuant option_spec(const std::string& label, const Graph& graph, const QuantizableLayer& layer);

}  // namespace bitplan::search
