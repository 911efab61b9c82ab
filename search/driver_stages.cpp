#include "search/driver_stages.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <regex>

#include "core/error.hpp"
#include "core/tensor.hpp"
#include "executor/quant/hessian.hpp"
#include "search/exact_solver.hpp"
#include "search/pareto.hpp"

namespace bitplan::search {
namespace {

void say(const Progress& progress, const std::string& text) {
  if (progress.line) progress.line(text);
}

void show(const Progress& progress, const std::string& text) {
  if (progress.status) progress.status(text);
}

// A plan's key ("layer=option;layer=option;...") as a progress line can hold it: short keys
// as they are, long ones (an LLM's 211 layers) as how many layers take each option, most
// first, e.g. "of 211 layers: 120 W3g32z:gptq, 80 W8, 11 W4g32z:gptq"; the full plans are in
// the results folder.
std::string plan_in_a_line(const std::string& key) {
  constexpr std::size_t kLongest = 100;
  if (key.size() <= kLongest) return key;
  std::vector<std::pair<std::string, int>> counts;
  int layers = 0;
  for (std::size_t begin = 0; begin <= key.size();) {
    const std::size_t end = std::min(key.find(';', begin), key.size());
    const std::string_view entry(key.data() + begin, end - begin);
    if (const std::size_t eq = entry.rfind('='); eq != std::string_view::npos) {
      const std::string option(entry.substr(eq + 1));
      auto it = std::find_if(counts.begin(), counts.end(),
                             [&](const auto& c) { return c.first == option; });
      if (it == counts.end()) counts.emplace_back(option, 1);
      else ++it->second;
      ++layers;
    }
    begin = end + 1;
  }
  std::stable_sort(counts.begin(), counts.end(),
                   [](const auto& a, const auto& b) { return a.second > b.second; });
  std::string text = fmt::format("of {} layers:", layers);
  for (std::size_t i = 0; i < counts.size(); ++i)
    text += fmt::format("{} {} {}", i ? "," : "", counts[i].second, counts[i].first);
  return text;
}

// Why `spec` cannot be simulated on `layer` at all (group size not dividing the reduction
// axis), or "".
std::string simulation_refusal(const LayerQuant& spec, const QuantizableLayer& layer,
                               const Graph& graph) {
  if (auto why = weight_method_refusal(spec.method, spec.weights)) return *why;
  if (auto why = method_activation_refusal(spec)) return *why;
  if (auto why = weight_method_layer_refusal(spec.method, layer.op_type)) return *why;
  if (spec.bias_correction && spec.weights.format != FormatId::fp32) {
    if (auto why = bias_correction_refusal(layer.op_type, layer.gemm_beta)) return *why;
  }
  if (weight_method_traits(spec.method).needs_calibration) {
    if (std::string why = input_hessian_refusal(layer); !why.empty())
      return fmt::format("{}: {}", weight_method_traits(spec.method).name, why);
  }
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

std::string duration_text(double seconds) {
  if (!std::isfinite(seconds)) return "?";
  if (seconds < 60) return fmt::format("{:.0f}s", seconds);
  return fmt::format("{:.0f}m{:02.0f}s", std::floor(seconds / 60), std::fmod(seconds, 60));
}

SearchSpace build_space(const std::vector<QuantizableLayer>& layers, const SearchOptions& opt,
                        const std::string& model_name) {
  if (layers.empty()) fail_input("search: model '{}' has no quantizable layer", model_name);
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
  SearchSpace space;
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
    space.layers.push_back(std::move(lo));
  }
  for (std::size_t i = 0; i < override_hits.size(); ++i)
    if (!override_hits[i])
      fail_input(
          "search.overrides: pattern '{}' matches no quantizable layer of {} (layers are "
          "ONNX node names, e.g. '{}')",
          opt.overrides[i].pattern, model_name, layers.front().name);
  for (std::size_t i = 0; i < keep_hits.size(); ++i)
    if (!keep_hits[i])
      fail_input("search.keep_fp32: pattern '{}' matches no quantizable layer of {} (e.g. '{}')",
                 opt.keep_fp32[i], model_name, layers.front().name);
  space.validate();
  return space;
}

PlanCosts::PlanCosts(const Graph& graph, const std::string& model_hash, std::int64_t latency_batch,
                     const HwProfile* profile)
    : context_(CostContext::build(graph, model_hash, latency_batch)),
      latency_(profile ? make_latency_model(context_, *profile) : nullptr),
      size_(make_size_model(context_)),
      bops_(make_bops_model(context_)) {
  for (const Dims& dims : context_.weight_dims) weight_elements_ += product(dims);
}

double PlanCosts::bits_per_weight(double layer_bytes) const {
  return weight_elements_ > 0 ? layer_bytes * 8 / static_cast<double>(weight_elements_) : NAN;
}

double PlanCosts::layer_bytes_at(double bits_per_weight) const {
  return bits_per_weight * static_cast<double>(weight_elements_) / 8;
}

UnsupportedLayers PlanCosts::add_costs(const QuantPlan& plan, PlanMetrics& m) const {
  UnsupportedLayers unsupported;
  m.latency_ms = NAN;
  if (latency_) {
    const PlanCost c = latency_->plan_cost(plan);
    if (c.supported()) m.latency_ms = c.total;
    unsupported = c.unsupported;
  }
  const PlanCost size = size_->plan_cost(plan);
  m.size_bytes = size.total;
  m.bits_per_weight = bits_per_weight(size.total - size.fixed);
  m.gbops = bops_->plan_cost(plan).total;
  return unsupported;
}

CostTables build_cost_tables(const Graph& graph, const std::vector<QuantizableLayer>& layers,
                             const SearchSpace& space, const PlanCosts& costs,
                             const std::string& target) {
  const CostModel* latency = costs.latency();
  const std::size_t n_layers = layers.size();
  CostTables out;
  LayerCostTable& table = out.table;
  out.specs.resize(n_layers);
  table.size.resize(n_layers);
  table.unsupported_reason.resize(n_layers);
  if (latency) table.latency.resize(n_layers);
  out.latency_ms.resize(n_layers);
  for (std::size_t l = 0; l < n_layers; ++l)
    for (const auto& label : space.layers[l].options) {
      LayerQuant q;
      try {
        q = option_spec(label, graph, layers[l]);
      } catch (const Error& e) {
        fail_input(
            "search.options: '{}' is not a spec label (fp32, fp16, bf16, fp8 or a uniform "
            "shorthand such as W8A8, W4A8, W4g128A16, W4g128A16:gptq): {}",
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
      out.latency_ms[l].push_back(latency ? lat : NAN);
      table.size[l].push_back(costs.size().layer_cost(l, q).value);
      table.unsupported_reason[l].push_back(why);
      out.specs[l].push_back(q);
    }
  // Edge latencies (CUDA precision conversions, oneDNN int8 chains), when the model has any.
  if (latency) {
    std::vector<std::vector<std::vector<double>>> edges(n_layers);
    bool any = false;
    for (std::size_t l = 1; l < n_layers; ++l) {
      edges[l].assign(out.specs[l - 1].size(), std::vector<double>(out.specs[l].size(), 0.0));
      for (std::size_t a = 0; a < out.specs[l - 1].size(); ++a)
        for (std::size_t b = 0; b < out.specs[l].size(); ++b) {
          edges[l][a][b] = latency->boundary_cost(l, out.specs[l - 1][a], out.specs[l][b]);
          any = any || edges[l][a][b] != 0;
        }
    }
    if (any) table.latency_edge = std::move(edges);
  }
  table.sensitivity.assign(n_layers, {});  // filled by the sensitivity analysis
  for (std::size_t l = 0; l < n_layers; ++l)
    table.sensitivity[l].assign(space.layers[l].options.size(), 0.0);
  table.validate(space);  // every layer keeps a supported option, or says why not

  std::size_t options = 0, supported_options = 0;
  for (const auto& layer : space.layers) options += layer.options.size();
  for (const auto& layer : table.unsupported_reason)
    for (const auto& why : layer) supported_options += why.empty();
  out.space_description = fmt::format(
      "{} layers, {} (layer, option) pairs of which {} run on {}; 10^{:.1f} plans", n_layers,
      options, supported_options, latency ? target : "(no target)", space.size());
  return out;
}

CostBudgets feasible_budgets(const SearchSpace& space, const LayerCostTable& table,
                             const SearchOptions& opt, const PlanCosts& costs,
                             const Progress& progress) {
  const double latency_fixed = costs.latency() ? costs.latency()->fixed_cost() : 0;
  const double size_fixed = costs.size().fixed_cost();
  CostBudgets budgets;
  if (opt.max_latency_ms) budgets.latency = *opt.max_latency_ms - latency_fixed;
  if (opt.max_size_mb) budgets.size = *opt.max_size_mb * 1e6 - size_fixed;
  // Bits per weight count the layers' bytes only: a bound on the same per-layer sums.
  if (opt.max_bits_per_weight) {
    const double bytes = costs.layer_bytes_at(*opt.max_bits_per_weight);
    budgets.size = budgets.size ? std::min(*budgets.size, bytes) : bytes;
  }
  const SolveResult feasible = solve(space, table, budgets, StateLimit::thin);
  if (feasible.best) return budgets;
  // The solver sees per-layer sums; the limits the user wrote include the fixed costs.
  const double fastest = feasible.lowest.latency + latency_fixed;
  const double smallest = (feasible.lowest.size + size_fixed) / 1e6;
  const double smallest_bpw = costs.bits_per_weight(feasible.lowest.size);
  std::string why;
  if (opt.max_latency_ms && fastest > *opt.max_latency_ms)
    why += fmt::format(" max_latency_ms {} is below the fastest plan of the space, {:.4f} ms;",
                       *opt.max_latency_ms, fastest);
  if (opt.max_size_mb && smallest > *opt.max_size_mb)
    why += fmt::format(" max_size_mb {} is below the smallest plan of the space, {:.4f} MB;",
                       *opt.max_size_mb, smallest);
  if (opt.max_bits_per_weight &&
      feasible.lowest.size > costs.layer_bytes_at(*opt.max_bits_per_weight))
    why += fmt::format(
        " max_bits_per_weight {} is below the smallest plan of the space, {:.4f} bits per "
        "weight;",
        *opt.max_bits_per_weight, smallest_bpw);
  if (why.empty() && !feasible.thinned.empty()) {
    // Each limit alone can be met; whether both can together is beyond the solver's limit.
    say(progress, fmt::format("constraints: each limit alone can be met, both together not "
                              "proven (the space is too big to solve exactly: {})",
                              feasible.thinned));
    return budgets;
  }
  if (why.empty()) {
    // Only the latency and a size limit can clash: both size limits bound the same sums.
    const std::string size_limits = opt.max_size_mb && opt.max_bits_per_weight
                                        ? "max_size_mb and max_bits_per_weight"
                                    : opt.max_size_mb ? "max_size_mb"
                                                      : "max_bits_per_weight";
    why = fmt::format(
        " each limit alone can be met (fastest plan {:.4f} ms, smallest {:.4f} "
        "MB, {:.4f} bits per weight) but no plan meets max_latency_ms and {} together;",
        fastest, smallest, smallest_bpw, size_limits);
  }
  why.pop_back();
  fail_input("search.constraints cannot be met by any plan:{}", why);
}

SingleLayerMeasured measure_single_layer(QuantSimulator& simulator,
                                         const SubsetEvaluator& selection, const QuantPlan& plan) {
  const SubsetOutcome outcome = selection.evaluate(simulator.build(plan));
  return {outcome.fidelity.kl_divergence, measured_metrics(outcome), outcome.seconds};
}

SensitivityTables run_sensitivity(const std::vector<QuantizableLayer>& layers,
                                  const SearchSpace& space, const CostTables& tables,
                                  Runner& runner, const SubsetEvaluator& selection, ResultsDb& db,
                                  const std::string& context, const Progress& progress,
                                  const std::atomic<bool>& stop) {
  const auto& specs = tables.specs;
  const auto& unsupported = tables.table.unsupported_reason;
  SensitivityTables out;
  out.kl.assign(layers.size(), {});
  out.drop.assign(layers.size(), {});
  const double fp32_top1 = selection.reference().top1;
  const double fp32_perplexity = selection.reference().perplexity;
  // A layer's quality loss in the metric's terms: top-1 drop (fraction), perplexity increase
  // (fraction of fp32's), 1 - mean cosine (embedding); fidelity: none beyond the KL.
  const auto loss = [&](const PlanMetrics& m) {
    switch (selection.metric()) {
      case MetricKind::top1:
        return fp32_top1 - m.top1;
      case MetricKind::perplexity:
        return m.perplexity / fp32_perplexity - 1;
      case MetricKind::embedding:
        return 1 - m.cosine;
      case MetricKind::fidelity:
        return 1 - m.agreement;
    }
    return 0.0;
  };
  // The tables from the database; the pairs it does not have become the runner's asks, in
  // (layer, option) order.
  struct Pair {
    std::size_t layer, option;
  };
  std::vector<Pair> pending;
  std::vector<EvaluationAsk> asks;
  for (std::size_t l = 0; l < layers.size(); ++l) {
    out.kl[l].assign(specs[l].size(), 0.0);
    out.drop[l].assign(specs[l].size(), 0.0);
    for (std::size_t o = 0; o < specs[l].size(); ++o) {
      if (!specs[l][o].quantized() || !unsupported[l][o].empty()) continue;
      ++out.pairs;
      const std::string& label = space.layers[l].options[o];
      if (auto stored = db.find_sensitivity(context, layers[l].name, label)) {
        out.kl[l][o] = stored->value;
        out.drop[l][o] = loss(metrics_from_stored_json(stored->metrics));
        continue;
      }
      QuantPlan single;
      single.layers[layers[l].name] = specs[l][o];
      pending.push_back({l, o});
      // The key names the pair in a failed rank's error.
      asks.push_back({std::move(single), fmt::format("sensitivity {} {}", layers[l].name, label)});
    }
  }
  const std::size_t reused = out.pairs - pending.size();
  SingleLayerHooks hooks;
  hooks.stop_before_next = [&] { return stop.load(); };
  hooks.finished = [&](std::size_t i, const SingleLayerMeasured& measured) {
    const auto [l, o] = pending[i];
    const std::string& label = space.layers[l].options[o];
    db.put_sensitivity(
        context, StoredSensitivity{layers[l].name, label, measured.kl,
                                   stored_metrics_json(measured.metrics), measured.seconds, ""});
    out.kl[l][o] = measured.kl;
    out.drop[l][o] = loss(measured.metrics);
    show(progress,
         fmt::format("sensitivity {}/{} ({})", reused + i + 1, out.pairs, layers[l].name));
  };
  const std::size_t told = runner.run_single_layer(asks, hooks).size();
  if (told < pending.size())
    for (std::size_t l = pending[told].layer; l < layers.size(); ++l) {
      out.kl[l].clear();
      out.drop[l].clear();
    }
  return out;
}

std::vector<std::string> baseline_labels(const SearchOptions& options) {
  std::vector<std::string> labels{"fp32", "W8A8", "W4A8", "W4g128A16"};
  for (const auto& label : options.options)
    if (std::find(labels.begin(), labels.end(), label) == labels.end()) labels.push_back(label);
  return labels;
}

std::vector<Baseline> evaluate_baselines(const std::vector<std::string>& labels, const Graph& graph,
                                         const std::vector<QuantizableLayer>& layers,
                                         const std::string& model_hash, Runner& runner,
                                         const PlanCosts& costs, const std::string& target,
                                         const Progress& progress) {
  const auto start = Clock::now();
  std::vector<Baseline> baselines;
  std::vector<int> kept_fp32;
  std::vector<EvaluationAsk> asks;
  for (const auto& name : labels) {
    Baseline b;
    b.name = name;
    b.plan.model_hash = model_hash;
    // A uniform plan applies the spec wherever it can be simulated; layers it cannot fit
    // (a group size that does not divide the reduction axis) stay fp32 and are counted.
    kept_fp32.push_back(0);
    for (const auto& layer : layers) {
      const LayerQuant q = option_spec(name, graph, layer);
      if (!simulation_refusal(q, layer, graph).empty()) {
        ++kept_fp32.back();
        continue;
      }
      if (q.quantized()) b.plan.layers[layer.name] = q;
    }
    asks.push_back({b.plan, "uniform:" + name});
    baselines.push_back(std::move(b));
  }
  // Through the runner: under MPI the baselines are spread over the ranks too.
  RunnerHooks hooks;
  hooks.finished = [&](std::size_t i, const Measured&) {
    show(progress, fmt::format("baseline {}/{} (uniform {})", i + 1, labels.size(), labels[i]));
  };
  const std::vector<Measured> measured = runner.run(asks, hooks);
  for (std::size_t i = 0; i < baselines.size(); ++i) {
    Baseline& b = baselines[i];
    b.metrics = measured[i].metrics;
    const UnsupportedLayers unsupported = costs.add_costs(b.plan, b.metrics);
    if (kept_fp32[i])
      b.unsupported = fmt::format(
          "{} layer(s) kept fp32: the group size does not divide their "
          "reduction axis; ",
          kept_fp32[i]);
    if (!unsupported.empty())
      b.unsupported += fmt::format("no latency on {}: {}", target, unsupported.front().second);
  }
  say(progress, fmt::format("baselines: {} uniform plans in {}", baselines.size(),
                            duration_text(since(start))));
  return baselines;
}

Nsga2Seeds nsga2_seeds(const SearchSpace& space, const LayerCostTable& table,
                       const CostBudgets& budgets, std::size_t population_size) {
  const TracedFront front = trace_front_thinned(space, table, budgets);
  Nsga2Seeds seeds;
  seeds.thinned = front.thinned;
  for (const auto i : bisection_order(front.plans.size())) {
    if (seeds.genomes.size() >= population_size / 2) break;
    seeds.genomes.push_back(front.plans[i].genome);
  }
  return seeds;
}

std::vector<std::vector<double>> layer_features(const CostContext& context,
                                                const LayerCostTable& table) {
  const std::size_t n_layers = table.sensitivity.size();
  std::vector<std::vector<double>> features;
  for (std::size_t l = 0; l < n_layers; ++l) {
    const auto& w = context.workloads[l];
    std::vector<double> f{double(l) / double(n_layers), std::log1p(double(w.macs)),
                          std::log1p(double(w.weight_elements)), w.op == "conv" ? 1.0 : 0.0};
    f.insert(f.end(), table.sensitivity[l].begin(), table.sensitivity[l].end());
    features.push_back(std::move(f));
  }
  // REINFORCE needs the same feature count per layer: pad to the widest option list.
  std::size_t width = 0;
  for (const auto& f : features) width = std::max(width, f.size());
  for (auto& f : features) f.resize(width, 0.0);
  return features;
}

QuantPlan genome_plan(const Genome& genome, const std::vector<QuantizableLayer>& layers,
                      const std::vector<std::vector<LayerQuant>>& specs,
                      const std::string& model_hash) {
  QuantPlan plan;
  plan.model_hash = model_hash;
  for (std::size_t l = 0; l < layers.size(); ++l) {
    const LayerQuant& spec = specs[l][static_cast<std::size_t>(genome[l])];
    if (spec.quantized()) plan.layers[layers[l].name] = spec;
  }
  return plan;
}

PlanScorer::PlanScorer(const PlanCosts& costs, std::vector<Objective> objectives,
                       const SearchOptions& options, double fp32_top1, double fp32_perplexity)
    : costs_(costs),
      objectives_(std::move(objectives)),
      options_(options),
      fp32_top1_(fp32_top1),
      fp32_perplexity_(fp32_perplexity) {}

ObjectivePoint PlanScorer::objective_values(const PlanMetrics& metrics) const {
  return minimised_objectives(objectives_, metrics);
}

double PlanScorer::violation(const PlanMetrics& m) const {
  const SearchOptions& opt = options_;
  double v = 0;
  if (opt.max_latency_ms) v += std::max(0.0, m.latency_ms / *opt.max_latency_ms - 1);
  if (opt.max_size_mb) v += std::max(0.0, m.size_bytes / (*opt.max_size_mb * 1e6) - 1);
  if (opt.max_bits_per_weight) v += std::max(0.0, m.bits_per_weight / *opt.max_bits_per_weight - 1);
  if (opt.max_accuracy_drop)
    v += std::max(0.0, (fp32_top1_ - m.top1) * 100 - *opt.max_accuracy_drop) /
         std::max(*opt.max_accuracy_drop, 0.1);
  if (opt.max_worst_class_drop)
    v += std::max(0.0, m.worst_class_drop * 100 - *opt.max_worst_class_drop) /
         std::max(*opt.max_worst_class_drop, 0.1);
  // The other metrics' limits, relative the same way; a value the run did not measure (NaN)
  // counts as violating, so such a plan is never reported feasible.
  const auto excess = [](double value, double limit, double floor) {
    return std::isfinite(value) ? std::max(0.0, value - limit) / std::max(limit, floor) : 1.0;
  };
  if (opt.max_perplexity_increase)
    v += excess(std::isfinite(fp32_perplexity_) ? (m.perplexity / fp32_perplexity_ - 1) * 100 : NAN,
                *opt.max_perplexity_increase, 0.1);
  // min_cosine: the shortfall relative to the distance the limit allows from 1.
  if (opt.min_cosine)
    v += std::isfinite(m.cosine)
             ? std::max(0.0, *opt.min_cosine - m.cosine) / std::max(1 - *opt.min_cosine, 1e-3)
             : 1.0;
  if (opt.max_kl) v += excess(m.kl, *opt.max_kl, 1e-6);
  return v;
}

void PlanScorer::score(EvaluatedPlan& e) const {
  e.unsupported = costs_.add_costs(e.plan, e.metrics);
  e.objectives = objective_values(e.metrics);
  e.violation = violation(e.metrics);
}

void run_policy_loop(Policy& policy, Runner& runner, const PlanScorer& scorer,
                     const PolicyLoopSettings& settings, SearchResult& result,
                     const Progress& progress, const std::atomic<bool>& stop) {
  const auto start = Clock::now();
  const std::size_t max_evals = settings.max_evaluations;
  auto time_spent = [&] {
    return settings.max_seconds > 0 && since(start) >= settings.max_seconds;
  };
  // Feasible plans the target can run, kept non-dominated after every evaluation.
  IncrementalFront front;
  auto record = [&](EvaluatedPlan e) {
    scorer.score(e);
    (e.from_database ? result.evaluations_reused : result.evaluations_run) += 1;
    if (e.violation == 0 && e.unsupported.empty())
      front.insert(result.evaluations.size(), e.objectives);
    result.evaluations.push_back(std::move(e));
  };
  auto show_state = [&] {
    if (!progress.status) return;
    // The best front value of the first objective: top-1 for accuracy, else its own value.
    const Objective& first = scorer.objectives().front();
    std::string best_text;
    if (first.id == ObjectiveId::accuracy) {
      double best = 0;
      for (const auto i : front.ids()) best = std::max(best, result.evaluations[i].metrics.top1);
      best_text = fmt::format("best top-1 {:.2f}%", 100 * best);
    } else {
      double best = NAN;
      for (const auto i : front.ids()) {
        const double v = first.extract(result.evaluations[i].metrics);
        if (std::isnan(best) || (first.direction == Direction::minimise ? v < best : v > best))
          best = v;
      }
      best_text = fmt::format("best {} {:.5g}", first.name, best);
    }
    const double rate = double(result.evaluations_run) / std::max(since(start), 1e-9);
    const double remaining = max_evals == SIZE_MAX ? NAN
                                                   : double(max_evals - result.evaluations.size()) /
                                                         std::max(rate, 1e-9);
    progress.status(
        fmt::format("{} {}/{} evaluations ({} reused), front {}, {}, {:.1f} eval/s, ETA {}",
                    result.policy, result.evaluations.size(),
                    max_evals == SIZE_MAX ? std::string("-") : std::to_string(max_evals),
                    result.evaluations_reused, front.size(), best_text, rate,
                    duration_text(settings.max_seconds > 0
                                      ? std::min(remaining, settings.max_seconds - since(start))
                                      : remaining)));
  };

  while (result.evaluations.size() < max_evals && !policy.finished()) {
    if (stop) {
      result.interrupted = true;
      result.stop_reason = "interrupted (SIGINT)";
      break;
    }
    if (time_spent()) {
      result.stop_reason = fmt::format("time budget of {} s spent", settings.max_seconds);
      break;
    }
    const std::vector<Genome> asked =
        policy.ask(std::min(settings.batch_size, max_evals - result.evaluations.size()));
    if (asked.empty()) break;
    std::vector<EvaluationAsk> asks;
    for (const Genome& genome : asked)
      asks.push_back({settings.plan_of(genome), genome_key(result.space, genome)});
    RunnerHooks hooks;
    hooks.stop_before_next = [&] { return stop || time_spent(); };
    hooks.finished = [&](std::size_t i, const Measured& measured) {
      EvaluatedPlan e;
      e.genome = asked[i];
      e.key = asks[i].key;
      e.plan = asks[i].plan;
      e.metrics = measured.metrics;
      e.from_database = measured.from_database;
      record(std::move(e));
      show_state();
    };
    const std::size_t first = result.evaluations.size();
    const auto run_start = Clock::now();
    const std::size_t finished = runner.run(asks, hooks).size();
    result.seconds_evaluating += since(run_start);
    std::vector<Evaluation> told;
    for (std::size_t i = first; i < first + finished; ++i) {
      const EvaluatedPlan& e = result.evaluations[i];
      told.push_back({e.genome, e.objectives, e.violation});
    }
    policy.tell(told);
  }
  if (result.stop_reason.empty())
    result.stop_reason = policy.finished() ? "policy finished" : "evaluation budget spent";
  result.seconds_search = since(start);
  // Ascending ids first, then by objectives: the order the batch recomputation gave.
  result.front = front.ids();
  std::sort(result.front.begin(), result.front.end());
  std::sort(result.front.begin(), result.front.end(), [&](std::size_t a, std::size_t b) {
    return result.evaluations[a].objectives < result.evaluations[b].objectives;
  });
}

double front_hypervolume(const SearchResult& result, const PlanScorer& scorer) {
  if (result.front.empty()) return 0;
  std::vector<ObjectivePoint> front;
  for (const auto i : result.front) front.push_back(result.evaluations[i].objectives);
  std::vector<ObjectivePoint> all;
  for (const auto& e : result.evaluations)
    if (e.unsupported.empty()) all.push_back(e.objectives);
  all.push_back(scorer.objective_values(result.fp32));
  return hypervolume(normalize(front, bounds_of(all)),
                     ObjectivePoint(scorer.objectives().size(), 1.1));
}

void reevaluate_final(SearchResult& result, const FinalSelection& selection,
                      const PlanScorer& scorer, const Progress& progress,
                      const std::atomic<bool>& stop) {
  const auto start = Clock::now();
  // Final numbers: measured on the final selection, costs as predicted for the search.
  auto final_metrics = [&](const QuantPlan& plan, const std::string& key,
                           const PlanMetrics& subset) {
    PlanMetrics m = selection.evaluator ? selection.evaluator->evaluate(plan, key).metrics : subset;
    m.latency_ms = subset.latency_ms;
    m.size_bytes = subset.size_bytes;
    m.bits_per_weight = subset.bits_per_weight;
    m.gbops = subset.gbops;
    return m;
  };
  for (std::size_t k = 0; k < result.front.size() && !stop; ++k) {
    EvaluatedPlan& e = result.evaluations[result.front[k]];
    show(progress, fmt::format("final: front point {}/{} on {} samples", k + 1, result.front.size(),
                               selection.samples));
    e.final_metrics = final_metrics(e.plan, e.key, e.metrics);
    if (selection.measure_latency) {
      const Spread s = selection.measure_latency(e.plan);
      e.measured_latency_ms = s.median;
      e.measured_latency_iqr_ms = s.iqr;
    }
  }
  // The uniform baselines on the same final selection, so the comparison is like for like.
  for (std::size_t k = 0; k < result.baselines.size() && !stop; ++k) {
    Baseline& b = result.baselines[k];
    show(progress, fmt::format("final: baseline {}/{} (uniform {}) on {} samples", k + 1,
                               result.baselines.size(), b.name, selection.samples));
    b.final_metrics = final_metrics(b.plan, "uniform:" + b.name, b.metrics);
  }
  if (stop) {
    result.interrupted = true;
    result.stop_reason = "interrupted (SIGINT) during the final re-evaluation";
    result.seconds_final = since(start);
    return;
  }
  say(progress,
      fmt::format("final: {} front plans and {} baselines on {} samples in {}", result.front.size(),
                  result.baselines.size(), selection.samples, duration_text(since(start))));
  // The front was chosen on subset numbers. On the final selection a point can turn out
  // beaten on every objective by another front point or by a uniform baseline; it leaves
  // the front, with a line saying which plan beat it, so no output lists a dominated plan.
  std::vector<std::string> rival_names;
  std::vector<ObjectivePoint> rivals;
  for (const std::size_t i : result.front) {
    rival_names.push_back(fmt::format("front plan {}", plan_in_a_line(result.evaluations[i].key)));
    rivals.push_back(scorer.objective_values(*result.evaluations[i].final_metrics));
  }
  const std::vector<ObjectivePoint> front_points = rivals;
  for (const auto& b : result.baselines) {
    if (!b.unsupported.empty() || !b.final_metrics) continue;
    rival_names.push_back("uniform " + b.name);
    rivals.push_back(scorer.objective_values(*b.final_metrics));
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
    say(progress, fmt::format("final: plan {} leaves the front: on the final selection {} "
                              "is better on every objective",
                              plan_in_a_line(e.key), rival_names[*beaten_by[k]]));
  }
  result.front = std::move(kept);
  result.seconds_final = since(start);
}

}  // namespace bitplan::search
