#include "search/driver.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>

#include "backends/cpu/onednn_profiler.hpp"
#include "backends/device.hpp"
#include "core/error.hpp"
#include "cost_models/cost_model.hpp"
#include "search/evaluator.hpp"
#include "search/exact_solver.hpp"
#include "search/pareto.hpp"
#include "search/policy.hpp"
#include "search/results_db.hpp"

namespace bitplan::search {
namespace {

using Clock = std::chrono::steady_clock;
using json = nlohmann::json;

double since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

std::string duration_text(double seconds) {
  if (!std::isfinite(seconds)) return "?";
  if (seconds < 60) return fmt::format("{:.0f}s", seconds);
  return fmt::format("{:.0f}m{:02.0f}s", std::floor(seconds / 60), std::fmod(seconds, 60));
}

json metrics_to_json(const PlanMetrics& m) {
  return {{"top1", m.top1},
          {"worst_class_drop", m.worst_class_drop},
          {"kl", m.kl},
          {"sqnr_db", std::isfinite(m.sqnr_db) ? json(m.sqnr_db) : json(nullptr)},
          {"agreement", m.agreement},
          {"samples", m.samples},
          {"stopped_early", m.stopped_early}};
}

PlanMetrics metrics_from_json(const json& j) {
  PlanMetrics m;
  m.top1 = j.at("top1");
  m.worst_class_drop = j.at("worst_class_drop");
  m.kl = j.at("kl");
  // null: outputs identical to fp32 (infinite SQNR); earlier bitplan versions stored 999.
  const json& sqnr = j.at("sqnr_db");
  m.sqnr_db = sqnr.is_null() || sqnr == 999.0 ? INFINITY : sqnr.get<double>();
  m.agreement = j.at("agreement");
  m.samples = j.at("samples");
  m.stopped_early = j.at("stopped_early");
  return m;
}

PlanMetrics to_metrics(const SubsetOutcome& o) {
  PlanMetrics m;
  m.top1 = o.top1;
  m.worst_class_drop = o.worst_class_drop;
  m.kl = o.fidelity.kl_divergence;
  m.sqnr_db = o.fidelity.sqnr_db;
  m.agreement = o.fidelity.top1_agreement;
  m.samples = o.samples;
  m.stopped_early = o.stopped_early;
  return m;
}

// Why `spec` cannot be simulated on `layer` at all (group size not dividing the reduction
// axis), or "".
std::string simulation_refusal(const LayerQuant& spec, const QuantizableLayer& layer,
                               const Graph& graph) {
  if (spec.weights.granularity != Granularity::per_group) return "";
  const Tensor* w = graph.initializer(layer.weight);
  const std::int64_t k = w->dim(static_cast<std::size_t>(layer.reduction_axis));
  // As the simulator rules: one group spanning a short axis is per-channel; otherwise whole
  // groups only.
  if (spec.weights.group_size >= k || k % spec.weights.group_size == 0) return "";
  return fmt::format("group size {} does not divide the layer's reduction axis ({} elements)",
                     spec.weights.group_size, k);
}

}  // namespace

LayerQuant option_spec(const std::string& label, const Graph& graph,
                       const QuantizableLayer& layer) {
  // Uniform shorthands are defined for whole graphs; take this layer's share.
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
  const QuantPlan uniform = uniform_plan(label, graph);
  return uniform.layers.at(layer.name);
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
  result.policy = opt.policy;
  result.objective_names = opt.objectives;
  if (in.profile) result.target = in.profile->target;
  const bool wants_latency =
      std::count(opt.objectives.begin(), opt.objectives.end(), "latency") || opt.max_latency_ms;
  if (wants_latency && !in.profile)
    fail_input(
        "search: latency is an objective or constraint but the config names no target "
        "profile (target: hw_profiles/<name>.yaml)");

  // --- The space -------------------------------------------------------------------------
  const auto layers = quantizable_layers(graph);
  if (layers.empty()) fail_input("search: model '{}' has no quantizable layer", in.model_name);
  std::vector<std::regex> keep;
  std::vector<std::pair<std::regex, const SpaceOverride*>> overrides;
  std::vector<int> override_hits(opt.overrides.size()), keep_hits(opt.keep_fp32.size());
  auto compile = [](const std::string& pattern, const char* where) {
    try {
      return std::regex(pattern);
    } catch (const std::regex_error& e) {
      fail_input("search.{}: '{}' is not a valid regular expression ({})", where, pattern,
                 e.what());
    }
  };
  for (const auto& k : opt.keep_fp32) keep.push_back(compile(k, "keep_fp32"));
  for (const auto& o : opt.overrides) overrides.emplace_back(compile(o.pattern, "overrides"), &o);
  for (const auto& layer : layers) {
    LayerOptions lo{layer.name, opt.options};
    for (std::size_t i = 0; i < overrides.size(); ++i)
      if (std::regex_match(layer.name, overrides[i].first)) {
        lo.options = overrides[i].second->options;
        ++override_hits[i];
        break;
      }
    for (std::size_t i = 0; i < keep.size(); ++i)
      if (std::regex_match(layer.name, keep[i])) {
        lo.options = {"fp32"};
        ++keep_hits[i];
      }
    result.space.layers.push_back(std::move(lo));
  }
  for (std::size_t i = 0; i < override_hits.size(); ++i)
    if (!override_hits[i])
      fail_input(
          "search.overrides: pattern '{}' matches no quantizable layer of {} (layers are "
          "ONNX node names, e.g. '{}')",
          opt.overrides[i].pattern, in.model_name, layers.front().name);
  for (std::size_t i = 0; i < keep_hits.size(); ++i)
    if (!keep_hits[i])
      fail_input("search.keep_fp32: pattern '{}' matches no quantizable layer of {} (e.g. '{}')",
                 opt.keep_fp32[i], in.model_name, layers.front().name);
  result.space.validate();

  // --- Specs and cost tables ----------------------------------------------------------------
  const CostContext context = CostContext::build(graph, in.model_hash, opt.latency_batch);
  std::unique_ptr<CostModel> latency;
  if (in.profile) latency = make_latency_model(context, *in.profile);
  const auto size = make_size_model(context);
  const auto bops = make_bops_model(context);
  std::vector<std::vector<LayerQuant>> specs(layers.size());
  LayerCostTable table;
  const std::size_t n_layers = layers.size();
  table.size.resize(n_layers);
  table.unsupported_reason.resize(n_layers);
  if (latency) table.latency.resize(n_layers);
  result.latency_ms.resize(n_layers);
  for (std::size_t l = 0; l < n_layers; ++l)
    for (const auto& label : result.space.layers[l].options) {
      LayerQuant q;
      try {
        q = option_spec(label, graph, layers[l]);
      } catch (const Error& e) {
        fail_input(
            "search.options: '{}' is not a spec label (fp32, fp16, bf16, fp8 or a uniform "
            "shorthand such as W8A8, W4A8, W4g128A16): {}",
            label, e.what());
      }
      std::string why = simulation_refusal(q, layers[l], graph);
      double lat = 0;
      if (latency) {
        const LayerCost c = latency->layer_cost(l, q);
        if (why.empty() && !c.unsupported.empty()) why = c.unsupported;
        lat = c.value;
        table.latency[l].push_back(lat);
      }
      result.latency_ms[l].push_back(latency ? lat : NAN);
      table.size[l].push_back(size->layer_cost(l, q).value);
      table.unsupported_reason[l].push_back(why);
      specs[l].push_back(q);
    }
  // Edge latencies (CUDA precision conversions, oneDNN int8 chains), when the model has any.
  if (latency) {
    std::vector<std::vector<std::vector<double>>> edges(n_layers);
    bool any = false;
    for (std::size_t l = 1; l < n_layers; ++l) {
      edges[l].assign(specs[l - 1].size(), std::vector<double>(specs[l].size(), 0.0));
      for (std::size_t a = 0; a < specs[l - 1].size(); ++a)
        for (std::size_t b = 0; b < specs[l].size(); ++b) {
          edges[l][a][b] = latency->boundary_cost(l, specs[l - 1][a], specs[l][b]);
          any = any || edges[l][a][b] != 0;
        }
    }
    if (any) table.latency_edge = std::move(edges);
  }
  result.unsupported = table.unsupported_reason;
  table.sensitivity.assign(n_layers, {});  // filled by the sensitivity analysis below
  for (std::size_t l = 0; l < n_layers; ++l)
    table.sensitivity[l].assign(result.space.layers[l].options.size(), 0.0);
  table.validate(result.space);  // every layer keeps a supported option, or says why not

  std::size_t supported_options = 0;
  for (const auto& layer : table.unsupported_reason)
    for (const auto& why : layer) supported_options += why.empty();
  result.space_description = fmt::format(
      "{} layers, {} (layer, option) pairs of which {} run on {}; 10^{:.1f} plans", n_layers,
      [&] {
        std::size_t n = 0;
        for (const auto& l : result.space.layers) n += l.options.size();
        return n;
      }(),
      supported_options, in.profile ? in.profile->target : "(no target)", result.space.size());

  auto plan_of = [&](const Genome& g) {
    QuantPlan p;
    p.model_hash = in.model_hash;
    for (std::size_t l = 0; l < n_layers; ++l)
      if (specs[l][static_cast<std::size_t>(g[l])].quantized())
        p.layers[layers[l].name] = specs[l][static_cast<std::size_t>(g[l])];
    return p;
  };

  // Budgets: the solver's tables hold the per-layer part; fixed costs are subtracted.
  CostBudgets budgets;
  if (opt.max_latency_ms)
    budgets.latency = *opt.max_latency_ms - (latency ? latency->fixed_cost() : 0);
  if (opt.max_size_mb) budgets.size = *opt.max_size_mb * 1e6 - size->fixed_cost();
  {
    const SolveResult feasible = solve(result.space, table, budgets);
    if (!feasible.best) {
      // The solver sees per-layer sums; the limits the user wrote include the fixed costs.
      const double fastest = feasible.lowest.latency + (latency ? latency->fixed_cost() : 0);
      const double smallest = (feasible.lowest.size + size->fixed_cost()) / 1e6;
      std::string why;
      if (opt.max_latency_ms && fastest > *opt.max_latency_ms)
        why += fmt::format(" max_latency_ms {} is below the fastest plan of the space, {:.4f} ms;",
                           *opt.max_latency_ms, fastest);
      if (opt.max_size_mb && smallest > *opt.max_size_mb)
        why += fmt::format(" max_size_mb {} is below the smallest plan of the space, {:.4f} MB;",
                           *opt.max_size_mb, smallest);
      if (why.empty())
        why = fmt::format(
            " each limit alone can be met (fastest plan {:.4f} ms, smallest {:.4f} "
            "MB) but no plan meets max_latency_ms and max_size_mb together;",
            fastest, smallest);
      why.pop_back();
      fail_input("search.constraints cannot be met by any plan:{}", why);
    }
  }
  if (in.dry_run) return result;

  // --- Evaluation machinery -----------------------------------------------------------------
  const std::int64_t subset_n =
      std::min<std::int64_t>(opt.subset, static_cast<std::int64_t>(in.validation.size()));
  const std::string context_key = fmt::format(
      "model={}|data={}|calibration={}|batch={}|subset={}|order=shuffled", in.model_hash,
      in.dataset_id, in.calibration.selection_id, in.eval_batch, subset_n);
  if (!opt.database.parent_path().empty())
    std::filesystem::create_directories(opt.database.parent_path());
  ResultsDb db(opt.database);
  const std::string run_id =
      fmt::format("{}|{}|seed={}", opt.output.string(), opt.policy, opt.seed);
  db.begin_run(run_id, json{{"model", in.model_name},
                            {"policy", opt.policy},
                            {"seed", opt.seed},
                            {"target", result.target},
                            {"context", context_key}});

  QuantSimulator simulator(graph, in.model_hash, in.calibration);
  say("calibrating and evaluating the fp32 reference");
  // Subsets are prefixes of one fixed shuffle of the validation selection: a dataset in class
  // order (image folders) would otherwise give subsets of one or two classes.
  std::vector<std::int64_t> shuffled;
  for (const auto i :
       select_indices(Selection{0, 0x5EEDB17, 0}, static_cast<std::int64_t>(in.validation.size()),
                      "search subsets"))
    shuffled.push_back(in.validation[static_cast<std::size_t>(i)]);
  const std::int64_t sens_n = std::min(opt.sensitivity_subset, subset_n);
  const std::vector<std::int64_t> subset(shuffled.begin(), shuffled.begin() + subset_n);
  const SubsetEvaluator evaluator(graph, *in.dataset, subset, in.eval_batch);
  const SubsetEvaluator sens_evaluator(
      graph, *in.dataset, std::vector<std::int64_t>(subset.begin(), subset.begin() + sens_n),
      in.eval_batch);
  result.fp32 = to_metrics(evaluator.reference());
  const double fp32_top1 = result.fp32.top1;

  auto cost_metrics = [&](const QuantPlan& plan, PlanMetrics& m,
                          std::vector<std::pair<std::string, std::string>>* unsupported) {
    m.latency_ms = NAN;
    if (latency) {
      const PlanCost c = latency->plan_cost(plan);
      if (c.supported()) m.latency_ms = c.total;
      if (unsupported) *unsupported = c.unsupported;
    }
    m.size_bytes = size->plan_cost(plan).total;
    m.gbops = bops->plan_cost(plan).total;
  };
  cost_metrics(QuantPlan{}, result.fp32, nullptr);

  auto evaluate_plan = [&](const QuantPlan& plan, const SubsetEvaluator& ev,
                           const std::string& db_context, const std::string& key,
                           bool* reused) -> PlanMetrics {
    if (auto stored = db.find(db_context, key)) {
      if (reused) *reused = true;
      return metrics_from_json(stored->metrics);
    }
    const Graph g = simulator.build(plan);
    std::optional<double> limit;
    if (opt.max_accuracy_drop) limit = *opt.max_accuracy_drop / 100.0;
    const SubsetOutcome o = ev.evaluate(g, limit);
    PlanMetrics m = to_metrics(o);
    // The database keeps what the executor measured; objectives are recomputed from the
    // metrics and the cost models (which a new profile may change).
    StoredEvaluation stored;
    stored.genome_key = key;
    stored.objectives = {1.0 - m.top1};
    stored.metrics = metrics_to_json(m);
    stored.seconds = o.seconds;
    db.put(db_context, stored);
    if (reused) *reused = false;
    return m;
  };

  // --- Sensitivity ----------------------------------------------------------------------------
  const auto sens_start = Clock::now();
  const std::string sens_context = context_key + fmt::format("|sensitivity={}", sens_n);
  table.sensitivity.assign(n_layers, {});
  result.sensitivity.assign(n_layers, {});
  result.sensitivity_drop.assign(n_layers, {});
  std::size_t total_pairs = 0, done_pairs = 0;
  for (std::size_t l = 0; l < n_layers; ++l)
    for (std::size_t o = 0; o < specs[l].size(); ++o)
      total_pairs += specs[l][o].quantized() && table.unsupported_reason[l][o].empty();
  for (std::size_t l = 0; l < n_layers && !stop; ++l) {
    for (std::size_t o = 0; o < specs[l].size(); ++o) {
      double kl = 0, drop = 0;
      if (specs[l][o].quantized() && table.unsupported_reason[l][o].empty()) {
        const std::string& label = result.space.layers[l].options[o];
        QuantPlan single;
        single.layers[layers[l].name] = specs[l][o];
        if (auto stored = db.find_sensitivity(sens_context, layers[l].name, label)) {
          kl = stored->value;
          drop = sens_evaluator.reference().top1 - metrics_from_json(stored->metrics).top1;
        } else {
          const SubsetOutcome out = sens_evaluator.evaluate(simulator.build(single));
          kl = out.fidelity.kl_divergence;
          drop = sens_evaluator.reference().top1 - out.top1;
          db.put_sensitivity(sens_context,
                             StoredSensitivity{layers[l].name, label, kl,
                                               metrics_to_json(to_metrics(out)), out.seconds, ""});
        }
        ++done_pairs;
        if (progress.status)
          progress.status(
              fmt::format("sensitivity {}/{} ({})", done_pairs, total_pairs, layers[l].name));
      }
      table.sensitivity[l].push_back(kl);
      result.sensitivity[l].push_back(kl);
      result.sensitivity_drop[l].push_back(drop);
    }
  }
  result.seconds_sensitivity = since(sens_start);
  if (stop) {
    result.interrupted = true;
    result.stop_reason = "interrupted during sensitivity analysis";
    return result;
  }
  say(fmt::format("sensitivity: {} layer x option pairs in {}", total_pairs,
                  duration_text(result.seconds_sensitivity)));

  // --- Baselines: uniform plans on the same subset --------------------------------------------
  std::vector<std::string> baseline_names{"fp32", "W8A8", "W4A8", "W4g128A16"};
  for (const auto& label : opt.options)
    if (std::find(baseline_names.begin(), baseline_names.end(), label) == baseline_names.end())
      baseline_names.push_back(label);
  for (const auto& name : baseline_names) {
    Baseline b;
    b.name = name;
    QuantPlan plan;
    plan.model_hash = in.model_hash;
    // A uniform plan applies the spec wherever it can be simulated; layers it cannot fit
    // (a group size that does not divide the reduction axis) stay fp32 and are counted.
    int kept_fp32 = 0;
    for (const auto& layer : layers) {
      const LayerQuant q = option_spec(name, graph, layer);
      if (!simulation_refusal(q, layer, graph).empty()) {
        ++kept_fp32;
        continue;
      }
      if (q.quantized()) plan.layers[layer.name] = q;
    }
    b.plan = plan;
    b.metrics = evaluate_plan(plan, evaluator, context_key, "uniform:" + name, nullptr);
    std::vector<std::pair<std::string, std::string>> unsupported;
    cost_metrics(plan, b.metrics, &unsupported);
    if (kept_fp32)
      b.unsupported = fmt::format(
          "{} layer(s) kept fp32: the group size does not divide their "
          "reduction axis; ",
          kept_fp32);
    if (!unsupported.empty())
      b.unsupported +=
          fmt::format("no latency on {}: {}", result.target, unsupported.front().second);
    result.baselines.push_back(std::move(b));
  }

  if (in.sensitivity_only) {
    result.stop_reason = "sensitivity analysis only";
    db.finish_run(run_id, "done");
    return result;
  }

  // --- The policy loop ------------------------------------------------------------------------
  PolicyParams params;
  params.seed = opt.seed;
  params.population_size = static_cast<std::size_t>(opt.population);
  params.costs = table;
  params.budgets = budgets;
  params.violation_penalty = 10;
  // NSGA-II starts from the exact solver's front (spread) and the uniform plans.
  {
    const auto front = trace_front(result.space, table, budgets);
    for (const auto i : bisection_order(front.size())) {
      if (params.initial_genomes.size() >= params.population_size / 2) break;
      params.initial_genomes.push_back(front[i].genome);
    }
  }
  for (std::size_t l = 0; l < n_layers; ++l) {
    const auto& w = context.workloads[l];
    std::vector<double> f{double(l) / double(n_layers), std::log1p(double(w.macs)),
                          std::log1p(double(w.weight_elements)), w.op == "conv" ? 1.0 : 0.0};
    for (std::size_t o = 0; o < specs[l].size(); ++o) f.push_back(table.sensitivity[l][o]);
    params.layer_features.push_back(std::move(f));
  }
  // REINFORCE needs the same feature count per layer: pad to the widest option list.
  std::size_t width = 0;
  for (const auto& f : params.layer_features) width = std::max(width, f.size());
  for (auto& f : params.layer_features) f.resize(width, 0.0);
  auto policy = make_policy(opt.policy, result.space, params);

  auto objectives_of = [&](const PlanMetrics& m) {
    std::vector<double> out;
    for (const auto& name : opt.objectives) {
      if (name == "accuracy")
        out.push_back(1.0 - m.top1);
      else if (name == "latency")
        out.push_back(m.latency_ms);
      else if (name == "size")
        out.push_back(m.size_bytes);
      else if (name == "bops")
        out.push_back(m.gbops);
      else if (name == "worst_class")
        out.push_back(m.worst_class_drop);
      else if (name == "kl")
        out.push_back(m.kl);
    }
    return out;
  };
  // Relative excess over each limit, summed: 0 = feasible.
  auto violation_of = [&](const PlanMetrics& m) {
    double v = 0;
    if (opt.max_latency_ms) v += std::max(0.0, m.latency_ms / *opt.max_latency_ms - 1);
    if (opt.max_size_mb) v += std::max(0.0, m.size_bytes / (*opt.max_size_mb * 1e6) - 1);
    if (opt.max_accuracy_drop)
      v += std::max(0.0, (fp32_top1 - m.top1) * 100 - *opt.max_accuracy_drop) /
           std::max(*opt.max_accuracy_drop, 0.1);
    if (opt.max_worst_class_drop)
      v += std::max(0.0, m.worst_class_drop * 100 - *opt.max_worst_class_drop) /
           std::max(*opt.max_worst_class_drop, 0.1);
    return v;
  };

  const auto search_start = Clock::now();
  const std::size_t max_evals =
      opt.max_evaluations > 0 ? static_cast<std::size_t>(opt.max_evaluations) : SIZE_MAX;
  auto front_indices = [&] {
    std::vector<ObjectivePoint> pts;
    std::vector<std::size_t> idx;
    for (std::size_t i = 0; i < result.evaluations.size(); ++i)
      if (result.evaluations[i].violation == 0 && result.evaluations[i].unsupported.empty()) {
        pts.push_back(result.evaluations[i].objectives);
        idx.push_back(i);
      }
    std::vector<std::size_t> out;
    for (const auto i : non_dominated(pts)) out.push_back(idx[i]);
    return out;
  };
  while (result.evaluations.size() < max_evals && !policy->finished()) {
    if (stop) {
      result.interrupted = true;
      result.stop_reason = "interrupted (SIGINT)";
      break;
    }
    if (opt.max_seconds > 0 && since(search_start) >= opt.max_seconds) {
      result.stop_reason = fmt::format("time budget of {} s spent", opt.max_seconds);
      break;
    }
    const auto asked = policy->ask(
        std::min<std::size_t>(params.population_size, max_evals - result.evaluations.size()));
    if (asked.empty()) break;
    std::vector<Evaluation> told;
    for (const auto& genome : asked) {
      if (stop || (opt.max_seconds > 0 && since(search_start) >= opt.max_seconds)) break;
      EvaluatedPlan e;
      e.genome = genome;
      e.key = genome_key(result.space, genome);
      e.plan = plan_of(genome);
      bool reused = false;
      e.metrics = evaluate_plan(e.plan, evaluator, context_key, e.key, &reused);
      e.from_database = reused;
      cost_metrics(e.plan, e.metrics, &e.unsupported);
      e.objectives = objectives_of(e.metrics);
      e.violation = violation_of(e.metrics);
      (reused ? result.evaluations_reused : result.evaluations_run) += 1;
      told.push_back({genome, e.objectives, e.violation});
      result.evaluations.push_back(std::move(e));
      if (progress.status) {
        const auto front = front_indices();
        double best = 0;
        for (const auto i : front) best = std::max(best, result.evaluations[i].metrics.top1);
        const double rate = double(result.evaluations_run) / std::max(since(search_start), 1e-9);
        const double remaining =
            max_evals == SIZE_MAX
                ? NAN
                : double(max_evals - result.evaluations.size()) / std::max(rate, 1e-9);
        progress.status(fmt::format(
            "{} {}/{} evaluations ({} reused), front {}, best top-1 {:.2f}%, {:.1f} eval/s, ETA {}",
            opt.policy, result.evaluations.size(),
            max_evals == SIZE_MAX ? std::string("-") : std::to_string(max_evals),
            result.evaluations_reused, front.size(), 100 * best, rate,
            duration_text(opt.max_seconds > 0
                              ? std::min(remaining, opt.max_seconds - since(search_start))
                              : remaining)));
      }
    }
    policy->tell(told);
  }
  if (result.stop_reason.empty())
    result.stop_reason = policy->finished() ? "policy finished" : "evaluation budget spent";
  result.seconds_search = since(search_start);
  result.front = front_indices();
  std::sort(result.front.begin(), result.front.end(), [&](std::size_t a, std::size_t b) {
    return result.evaluations[a].objectives < result.evaluations[b].objectives;
  });

  // Hypervolume over normalised objectives: bounds from fp32 and the baselines + evaluations
  // so that runs of different policies on the same config compare.
  {
    std::vector<ObjectivePoint> pts;
    for (const auto i : result.front) pts.push_back(result.evaluations[i].objectives);
    std::vector<ObjectivePoint> all;
    for (const auto& e : result.evaluations)
      if (e.unsupported.empty()) all.push_back(e.objectives);
    all.push_back(objectives_of(result.fp32));
    if (!pts.empty()) {
      const auto bounds = bounds_of(all);
      result.hypervolume =
          hypervolume(normalize(pts, bounds), ObjectivePoint(opt.objectives.size(), 1.1));
    }
  }

  // --- Final: the front on the full selection, latency measured here ----------------------
  if (!result.interrupted && !result.front.empty()) {
    const auto final_start = Clock::now();
    const std::int64_t final_n =
        opt.final_samples > 0
            ? std::min<std::int64_t>(opt.final_samples, static_cast<std::int64_t>(shuffled.size()))
            : static_cast<std::int64_t>(shuffled.size());
    const bool local_cpu = in.profile && in.profile->backend == "onednn" &&
                           in.profile->device.count("name") &&
                           in.profile->device.at("name") == query_cpu().model;
    std::optional<SubsetEvaluator> full;
    const std::string final_context = context_key + fmt::format("|final={}", final_n);
    if (final_n > subset_n) {
      full.emplace(graph, *in.dataset,
                   std::vector<std::int64_t>(shuffled.begin(), shuffled.begin() + final_n),
                   in.eval_batch);
      result.fp32.top1 = full->reference().top1;
      result.fp32.samples = full->reference().samples;
    }
    for (std::size_t k = 0; k < result.front.size() && !stop; ++k) {
      EvaluatedPlan& e = result.evaluations[result.front[k]];
      if (progress.status)
        progress.status(fmt::format("final: front point {}/{} on {} samples", k + 1,
                                    result.front.size(), final_n));
      PlanMetrics m =
          full ? evaluate_plan(e.plan, *full, final_context, e.key, nullptr) : e.metrics;
      m.latency_ms = e.metrics.latency_ms;
      m.size_bytes = e.metrics.size_bytes;
      m.gbops = e.metrics.gbops;
      e.final_metrics = m;
      if (local_cpu) {
        CpuProfileOptions timing;
        timing.budget_seconds = 0.3;
        timing.min_repeats = 10;
        const Spread s =
            measure_plan_onednn(graph, in.model_hash, e.plan, opt.latency_batch, timing);
        e.measured_latency_ms = s.median / 1e3;
        e.measured_latency_iqr_ms = s.iqr / 1e3;
      }
    }
    // The uniform baselines on the same final selection, so the comparison is like for like.
    for (auto& b : result.baselines) {
      if (stop) break;
      PlanMetrics m =
          full ? evaluate_plan(b.plan, *full, final_context, "uniform:" + b.name, nullptr)
               : b.metrics;
      m.latency_ms = b.metrics.latency_ms;
      m.size_bytes = b.metrics.size_bytes;
      m.gbops = b.metrics.gbops;
      b.final_metrics = m;
    }
    if (stop) {
      result.interrupted = true;
      result.stop_reason = "interrupted (SIGINT) during the final re-evaluation";
    } else {
      // The front was chosen on subset numbers. On the final selection a point can turn out
      // beaten on every objective by another front point or by a uniform baseline; it leaves
      // the front, with a line saying which plan beat it, so no output lists a dominated plan.
      std::vector<std::string> rival_names;
      std::vector<ObjectivePoint> rivals;
      for (const std::size_t i : result.front) {
        rival_names.push_back(fmt::format("front plan {}", result.evaluations[i].key));
        rivals.push_back(objectives_of(*result.evaluations[i].final_metrics));
      }
      const std::vector<ObjectivePoint> front_points = rivals;
      for (const auto& b : result.baselines) {
        if (!b.unsupported.empty() || !b.final_metrics) continue;
        rival_names.push_back("uniform " + b.name);
        rivals.push_back(objectives_of(*b.final_metrics));
      }
      const auto beaten_by = first_dominators(front_points, rivals);
      std::vector<std::size_t> kept;
      for (std::size_t k = 0; k < result.front.size(); ++k) {
        if (!beaten_by[k]) {
          kept.push_back(result.front[k]);
          continue;
        }
        const EvaluatedPlan& e = result.evaluations[result.front[k]];
        result.dropped_from_front.push_back({e.key, rival_names[*beaten_by[k]]});
        if (progress.line)
          progress.line(
              fmt::format("final: plan {} leaves the front: on the final selection {} "
                          "is better on every objective",
                          e.key, rival_names[*beaten_by[k]]));
      }
      result.front = std::move(kept);
    }
    result.seconds_final = since(final_start);
  }
  db.finish_run(run_id, result.interrupted ? "interrupted" : "done");
  return result;
}

}  // namespace bitplan::search
