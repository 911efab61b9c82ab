#include "search/driver.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <chrono>
#include <nlohmann/json.hpp>

#include "backends/cpu/onednn_profiler.hpp"
#include "core/error.hpp"
#include "executor/quant/simulate.hpp"
#include "search/driver_stages.hpp"
#include "search/exact_solver.hpp"
#include "search/results_db.hpp"

namespace bitplan::search {

LayerQuant option_spec(const std::string& label, [[maybe_unused]] const Graph& graph,
                       [[maybe_unused]] const QuantizableLayer& layer) {
  LayerQuant q;
  if (label == "fp32") return q;
  if (label == "fp16" || label == "bf16") {
    q.weights = parse_quant_spec(label);
    q.activations = parse_quant_spec(label);
    return q;
  }
  if (label == "fp8") {
    q.weights = parse_quant_spec("fp8_e4m3/channel");
    q.activations = parse_quant_spec("fp8_e4m3/tensor");
    return q;
  }
  // The shorthand's LayerQuant as it stands (weight_spec_for sets a layer's channel axis
  // later): an option the layer cannot take, such as bias correction on a MatMul, is then
  // marked unsupported there with the reason rather than quietly changed.
  return uniform_layer_quant(label);
}

namespace {

// The validation samples a search measures plans on, and the results database context that
// names them with everything else that decides a measurement.
struct SearchSubsets {
  std::vector<std::int64_t> shuffled;     // the whole selection, shuffled
  std::vector<std::int64_t> subset;       // the search subset: a prefix of `shuffled`
  std::vector<std::int64_t> sensitivity;  // the sensitivity pass's: a prefix of `subset`
  std::string context_key;
};

SearchSubsets search_subsets(const DriverInputs& in) {
  SearchSubsets out;
  const std::int64_t subset_n =
      std::min<std::int64_t>(in.options.subset, static_cast<std::int64_t>(in.validation.size()));
  out.context_key =
      fmt::format("model={}|data={}|calibration={}|batch={}|subset={}|order=shuffled|simulation={}",
                  in.model_hash, in.dataset_id, in.calibration.selection_id, in.eval_batch,
                  subset_n, kSimulationVersion);
  // Subsets are prefixes of one fixed shuffle of the validation selection: a dataset in class
  // order (image folders) would otherwise give subsets of one or two classes.
  for (const auto i :
       select_indices(Selection{0, 0x5EEDB17, 0}, static_cast<std::int64_t>(in.validation.size()),
                      "search subsets"))
    out.shuffled.push_back(in.validation[static_cast<std::size_t>(i)]);
  out.subset.assign(out.shuffled.begin(), out.shuffled.begin() + subset_n);
  out.sensitivity.assign(out.subset.begin(),
                         out.subset.begin() + std::min(in.options.sensitivity_subset, subset_n));
  return out;
}

// Early stopping is sound for top-1 only (a paired count with a standard error).
std::optional<double> early_stop_drop(const SearchOptions& opt, const SubsetEvaluator& runs) {
  if (opt.max_accuracy_drop && runs.metric() == MetricKind::top1)
    return *opt.max_accuracy_drop / 100.0;
  return std::nullopt;
}

}  // namespace

void serve_search_evaluations(
    const DriverInputs& in,
    const std::function<void(Evaluator&, const MeasureSingleLayer&)>& serve) {
  const SearchSubsets subsets = search_subsets(in);
  QuantSimulator simulator(*in.graph, in.model_hash, in.calibration);
  const SubsetEvaluator subset_runs(*in.graph, *in.dataset, subsets.subset, in.eval_batch,
                                    in.metric);
  const SubsetEvaluator sensitivity_runs(*in.graph, *in.dataset, subsets.sensitivity, in.eval_batch,
                                         in.metric);
  ExecutorEvaluator evaluator(simulator, subset_runs, nullptr, subsets.context_key,
                              early_stop_drop(in.options, subset_runs));
  serve(evaluator, [&](const QuantPlan& plan) {
    return measure_single_layer(simulator, sensitivity_runs, plan);
  });
}

SearchResult run_search(const DriverInputs& in, const Progress& progress,
                        const std::atomic<bool>& stop) {
  const SearchOptions& opt = in.options;
  const Graph& graph = *in.graph;
  auto say = [&](const std::string& s) {
    if (progress.line) progress.line(s);
  };
  SearchResult result;
  const auto names = policy_names();
  if (std::find(names.begin(), names.end(), opt.policy) == names.end())
    fail(ErrorKind::usage, "search.policy '{}' is not one of {}", opt.policy,
         fmt::join(names, ", "));
  const std::vector<Objective> objectives = objectives_named(opt.objectives);
  result.policy = opt.policy;
  result.objective_names = opt.objectives;
  if (in.profile) {
    result.target = in.profile->target;
    result.target_warnings = profile_warnings(*in.profile, in.profile->target);
  }
  if ((has_objective(objectives, ObjectiveId::latency) || opt.max_latency_ms) && !in.profile)
    fail_input(
        "search: latency is an objective or constraint but the config names no target "
        "profile (target: hw_profiles/<name>.yaml)");

  // --- Space, cost tables, budgets: everything --dry-run shows ------------------------------
  const auto layers = quantizable_layers(graph);
  result.space = build_space(layers, opt, in.model_name);
  const Graph& latency_graph = in.latency_graph ? *in.latency_graph : graph;
  const CalibrationData& latency_calibration =
      in.latency_calibration ? *in.latency_calibration : in.calibration;
  const PlanCosts costs(latency_graph, in.model_hash, opt.latency_batch,
                        in.profile ? &*in.profile : nullptr);
  CostTables tables = build_cost_tables(graph, layers, result.space, costs, result.target);
  result.unsupported = tables.table.unsupported_reason;
  result.latency_ms = tables.latency_ms;
  result.space_description = tables.space_description;
  const CostBudgets budgets = feasible_budgets(result.space, tables.table, opt, costs, progress);
  if (in.dry_run) return result;

  // --- Evaluation machinery -----------------------------------------------------------------
  const SearchSubsets subsets = search_subsets(in);
  const std::int64_t subset_n = static_cast<std::int64_t>(subsets.subset.size());
  const std::vector<std::int64_t>& shuffled = subsets.shuffled;
  const std::vector<std::int64_t>& subset = subsets.subset;
  const std::string& context_key = subsets.context_key;
  if (!opt.database.parent_path().empty())
    std::filesystem::create_directories(opt.database.parent_path());
  ResultsDb db(opt.database);
  const std::string run_id =
      fmt::format("{}|{}|seed={}", opt.output.string(), opt.policy, opt.seed);
  db.begin_run(run_id, nlohmann::json{{"model", in.model_name},
                                      {"policy", opt.policy},
                                      {"seed", opt.seed},
                                      {"target", result.target},
                                      {"context", context_key}});

  QuantSimulator simulator(graph, in.model_hash, in.calibration);
  say("calibrating and evaluating the fp32 reference");
  const auto sens_n = static_cast<std::int64_t>(subsets.sensitivity.size());
  const SubsetEvaluator subset_runs(graph, *in.dataset, subset, in.eval_batch, in.metric);
  const SubsetEvaluator sens_runs(graph, *in.dataset, subsets.sensitivity, in.eval_batch,
                                  in.metric);
  const std::optional<double> max_top1_drop = early_stop_drop(opt, subset_runs);
  ExecutorEvaluator evaluator(simulator, subset_runs, &db, context_key, max_top1_drop);
  result.fp32 = evaluator.reference();
  result.metric = subset_runs.metric();
  costs.add_costs(QuantPlan{}, result.fp32);
  // One runner for the sensitivity pass and the policy loop (a worker rank serves both).
  MeasureSingleLayer measure_single = [&](const QuantPlan& plan) {
    return measure_single_layer(simulator, sens_runs, plan);
  };
  const std::unique_ptr<Runner> runner =
      in.make_runner ? in.make_runner(evaluator, std::move(measure_single))
                     : std::make_unique<InProcessRunner>(evaluator, std::move(measure_single));

  // --- Sensitivity ----------------------------------------------------------------------------
  const auto sens_start = Clock::now();
  SensitivityTables sensitivity =
      run_sensitivity(layers, result.space, tables, *runner, sens_runs, db,
                      context_key + fmt::format("|sensitivity={}", sens_n), progress, stop);
  result.sensitivity = sensitivity.kl;
  result.sensitivity_drop = std::move(sensitivity.drop);
  tables.table.sensitivity = std::move(sensitivity.kl);
  result.seconds_sensitivity = since(sens_start);
  if (stop) {
    result.interrupted = true;
    result.stop_reason = "interrupted during sensitivity analysis";
    return result;
  }
  say(fmt::format("sensitivity: {} layer x option pairs in {}", sensitivity.pairs,
                  duration_text(result.seconds_sensitivity)));

  // --- Baselines: uniform plans on the same subset --------------------------------------------
  result.baselines = evaluate_baselines(baseline_labels(opt), graph, layers, in.model_hash, *runner,
                                        costs, result.target, progress);
  if (in.sensitivity_only) {
    result.runner_summary = runner->summary();
    result.stop_reason = "sensitivity analysis only";
    db.finish_run(run_id, "done");
    return result;
  }

  // --- The policy loop ------------------------------------------------------------------------
  PolicyParams params;
  params.seed = opt.seed;
  params.population_size = static_cast<std::size_t>(opt.population);
  params.costs = tables.table;
  params.budgets = budgets;
  params.violation_penalty = 10;
  if (opt.policy == "nsga2") {
    // NSGA-II starts from the exact solver's front (spread) and the uniform plans.
    Nsga2Seeds seeds = nsga2_seeds(result.space, tables.table, budgets, params.population_size);
    if (!seeds.thinned.empty())
      say(
          fmt::format("nsga2: seeded from a thinned exact front (the space is too big to solve "
                      "exactly: {})",
                      seeds.thinned));
    params.initial_genomes = std::move(seeds.genomes);
  }
  params.layer_features = layer_features(costs.context(), tables.table);
  auto policy = make_policy(opt.policy, result.space, params);
  if (const auto* exact = dynamic_cast<const ExactFrontPolicy*>(policy.get());
      exact && !exact->thinned().empty())
    say(fmt::format(
        "exact: the space is too big to solve exactly ({}); the plans asked come from a thinned "
        "front, which nsga2 would improve on",
        exact->thinned()));

  const PlanScorer scorer(costs, objectives, opt, result.fp32.top1, result.fp32.perplexity);
  PolicyLoopSettings loop;
  loop.batch_size = params.population_size;
  if (opt.max_evaluations > 0) loop.max_evaluations = static_cast<std::size_t>(opt.max_evaluations);
  loop.max_seconds = opt.max_seconds;
  loop.plan_of = [&](const Genome& genome) {
    return genome_plan(genome, layers, tables.specs, in.model_hash);
  };
  run_policy_loop(*policy, *runner, scorer, loop, result, progress, stop);
  result.runner_summary = runner->summary();
  result.hypervolume = front_hypervolume(result, scorer);

  // --- Final: the front on the full selection, latency measured here ----------------------
  if (!result.interrupted && !result.front.empty()) {
    const std::int64_t final_n =
        opt.final_samples > 0
            ? std::min<std::int64_t>(opt.final_samples, static_cast<std::int64_t>(shuffled.size()))
            : static_cast<std::int64_t>(shuffled.size());
    FinalSelection final_selection;
    final_selection.samples = final_n;
    std::optional<SubsetEvaluator> full_runs;
    std::optional<ExecutorEvaluator> full;
    if (final_n > subset_n) {
      full_runs.emplace(graph, *in.dataset,
                        std::vector<std::int64_t>(shuffled.begin(), shuffled.begin() + final_n),
                        in.eval_batch, in.metric);
      full.emplace(simulator, *full_runs, &db, context_key + fmt::format("|final={}", final_n),
                   max_top1_drop);
      result.fp32.top1 = full_runs->reference().top1;
      result.fp32.perplexity = full_runs->reference().perplexity;
      result.fp32.samples = full_runs->reference().samples;
      final_selection.evaluator = &*full;
    }
    // Measured end to end only where the profile is of this CPU: elsewhere the two numbers
    // would be of different machines.
    const bool local_cpu = in.profile && in.profile->backend == "onednn" &&
                           cpu_differences_from_host(*in.profile).empty();
    if (local_cpu)
      final_selection.measure_latency = [&](const QuantPlan& plan) {
        CpuProfileOptions timing;
        timing.budget_seconds = 0.3;
        timing.min_repeats = 10;
        timing.calibration = &latency_calibration;
        const Spread microseconds =
            measure_plan_onednn(latency_graph, in.model_hash, plan, opt.latency_batch, timing);
        return Spread{microseconds.median / 1e3, microseconds.iqr / 1e3};
      };
    reevaluate_final(result, final_selection, scorer, progress, stop);
  }
  db.finish_run(run_id, result.interrupted ? "interrupted" : "done");
  return result;
}

}  // namespace bitplan::search
