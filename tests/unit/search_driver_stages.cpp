// The search driver's stages (search/driver_stages.hpp) one at a time, on the fixture MLP
// (three Gemm layers) with a scripted Evaluator in place of the quantized executor.
#include <doctest/doctest.h>
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>

#include "core/error.hpp"
#include "executor/model.hpp"
#include "search/driver_stages.hpp"
#include "search/pareto.hpp"
#include "tests/unit/search_test_spaces.hpp"

namespace search_driver_stages_test {

using namespace bitplan;
using namespace bitplan::search;

namespace {

const LoadedModel& mlp() {
  static const LoadedModel model =
      load_model(std::filesystem::path(BITPLAN_SOURCE_DIR) / "models" / "fmnist_mlp.onnx");
  return model;
}

// Top-1 from a fixed function of the plan's key, so every run scores the same plans alike;
// remembers the keys it was asked, in order.
class ScriptedEvaluator final : public Evaluator {
 public:
  Measured evaluate(const QuantPlan& plan, const std::string& key) override {
    asked.push_back(key);
    Measured out;
    out.metrics.top1 = top1.count(key) ? top1.at(key)
                                       : 0.9 - 0.01 * double(plan.layers.size()) -
                                             0.001 * double(std::hash<std::string>{}(key) % 7);
    out.metrics.samples = 100;
    return out;
  }
  PlanMetrics reference() const override {
    PlanMetrics m;
    m.top1 = 0.9;
    m.samples = 100;
    return m;
  }
  std::vector<std::string> asked;
  std::map<std::string, double> top1;  // overrides by key
};

SearchOptions three_options() {
  SearchOptions options;
  options.options = {"fp32", "W8A8t", "W4A8t"};
  options.objectives = {"accuracy", "size"};
  return options;
}

// What the policy-loop tests share (doctest fixtures): the MLP's space for the options under
// a random policy, its cost tables without a profile, a scorer, a scripted evaluator and the
// in-process runner.
class PolicyLoopSetup {
 protected:
  explicit PolicyLoopSetup(SearchOptions search_options) : options(std::move(search_options)) {
    result.space = build_space(layers, options, "mlp");
    result.policy = "random";
    tables = build_cost_tables(mlp().graph, layers, result.space, costs, "");
    scorer.emplace(costs, objectives_named(options.objectives), options, 0.9);
  }
  const std::vector<QuantizableLayer> layers = quantizable_layers(mlp().graph);
  SearchOptions options;
  SearchResult result;
  const PlanCosts costs{mlp().graph, "", 1, nullptr};
  CostTables tables;
  std::optional<PlanScorer> scorer;
  ScriptedEvaluator evaluator;
  InProcessRunner runner{evaluator};
};

SearchOptions with_accuracy_limit() {
  SearchOptions options = three_options();
  options.max_accuracy_drop = 1.5;  // some plans are infeasible
  return options;
}

struct LimitedPolicyLoop : PolicyLoopSetup {
  LimitedPolicyLoop() : PolicyLoopSetup(with_accuracy_limit()) {}
};

struct PolicyLoop : PolicyLoopSetup {
  PolicyLoop() : PolicyLoopSetup(three_options()) {}
};

std::vector<std::string> names_of(const std::vector<QuantizableLayer>& layers) {
  std::vector<std::string> names;
  for (const auto& layer : layers) names.push_back(layer.name);
  return names;
}

}  // namespace

TEST_CASE("build_space: options, the first matching override, keep_fp32, bad patterns") {
  const auto layers = quantizable_layers(mlp().graph);
  REQUIRE(layers.size() == 3);
  SearchOptions options = three_options();
  options.overrides = {{names_of(layers)[2], {"fp32", "W8A8t"}}, {".*", {"fp32"}}};
  options.keep_fp32 = {names_of(layers)[0]};
  const SearchSpace space = build_space(layers, options, "mlp");
  REQUIRE(space.layers.size() == 3);
  CHECK(space.layers[0].options == std::vector<std::string>{"fp32"});  // kept fp32
  CHECK(space.layers[1].options == std::vector<std::string>{"fp32"});  // the second override
  CHECK(space.layers[2].options == std::vector<std::string>{"fp32", "W8A8t"});

  options.keep_fp32 = {"/nowhere/.*"};
  CHECK_THROWS_WITH_AS(build_space(layers, options, "mlp"),
                       doctest::Contains("'/nowhere/.*' matches no quantizable layer of mlp"),
                       Error);
  options.keep_fp32 = {"(unclosed"};
  CHECK_THROWS_WITH_AS(build_space(layers, options, "mlp"),
                       doctest::Contains("not a valid regular expression"), Error);
  CHECK_THROWS_WITH_AS(build_space({}, three_options(), "mlp"),
                       doctest::Contains("no quantizable layer"), Error);
}

TEST_CASE("cost tables without a profile: sizes per option, no latency, a description") {
  const Graph& graph = mlp().graph;
  const auto layers = quantizable_layers(graph);
  const SearchSpace space = build_space(layers, three_options(), "mlp");
  const PlanCosts costs(graph, "", 1, nullptr);
  CHECK(costs.latency() == nullptr);
  const CostTables tables = build_cost_tables(graph, layers, space, costs, "");
  REQUIRE(tables.specs.size() == 3);
  CHECK_FALSE(tables.specs[0][0].quantized());
  CHECK(tables.specs[0][1].quantized());
  CHECK(tables.table.latency.empty());
  CHECK(std::isnan(tables.latency_ms[0][1]));
  for (const auto& row : tables.table.size) CHECK(row[0] > row[1]);  // fp32 > W8A8t > W4A8t
  for (const auto& row : tables.table.size) CHECK(row[1] > row[2]);
  CHECK(tables.space_description ==
        "3 layers, 9 (layer, option) pairs of which 9 run on "
        "(no target); 10^1.4 plans");

  SearchOptions bad = three_options();
  bad.options = {"fp32", "W3A3z"};
  CHECK_THROWS_WITH_AS(build_cost_tables(graph, layers, build_space(layers, bad, "mlp"), costs, ""),
                       doctest::Contains("'W3A3z' is not a spec label"), Error);

  // Without latency, feasibility is a size question the solver answers exactly.
  SearchOptions tight = three_options();
  tight.max_size_mb = 1e-6;
  CHECK_THROWS_WITH_AS(feasible_budgets(space, tables.table, tight, costs, {}),
                       doctest::Contains("max_size_mb 1e-06 is below the smallest plan"), Error);
  tight.max_size_mb = 1.0;
  CHECK(feasible_budgets(space, tables.table, tight, costs, {}).size.has_value());
}

namespace {

// Two linear layers whose reduction axes (64, 32) take groups of 32: x [N, 64] -> Gemm
// (W [64, 32], bias [32]) -> MatMul (W [32, 8]). 2048 + 256 = 2304 weight elements.
Graph two_linear_layers() {
  Graph g;
  g.name = "two_linear";
  g.opset = 13;
  g.inputs.push_back({"x", DType::f32, {-1, 64}, {"batch", ""}});
  g.outputs.push_back({"y", DType::f32, {-1, 8}, {"batch", ""}});
  g.initializers["w1"] = Tensor(DType::f32, {64, 32});
  g.initializers["b1"] = Tensor(DType::f32, {32});
  g.initializers["w2"] = Tensor(DType::f32, {32, 8});
  g.nodes = {{"fc1", "Gemm", "", {"x", "w1", "b1"}, {"h"}, {}},
             {"fc2", "MatMul", "", {"h", "w2"}, {"y"}, {}}};
  return g;
}

}  // namespace

TEST_CASE("bits per weight: the layers' codes and scales over their weights, biases left out") {
  const Graph g = two_linear_layers();
  const PlanCosts costs(g, "", 1, nullptr);
  REQUIRE(quantizable_layers(g).size() == 2);
  CHECK(costs.weight_elements() == 64 * 32 + 32 * 8);
  const auto bpw = [&](const QuantPlan& plan) {
    PlanMetrics m;
    costs.add_costs(plan, m);
    // The size keeps the fp32 bias (32 floats) that bits per weight leave out.
    CHECK(m.size_bytes == doctest::Approx(m.bits_per_weight * 2304 / 8 + 32 * 4));
    return m.bits_per_weight;
  };
  CHECK(bpw(QuantPlan{}) == 32.0);
  // int4 codes and an fp32 scale per group of 32: 4 + 32/32.
  CHECK(bpw(uniform_plan("W4g32", g)) == 5.0);
  CHECK(bpw(uniform_plan("W4g32A8", g)) == 5.0);  // activations are not stored
  // int8 codes and an fp32 scale per output channel: 8 + 32/K per layer (K = 64, 32),
  // weighted by the layers' elements.
  CHECK(bpw(uniform_plan("W8", g)) == doctest::Approx((2048 * (8 + 32.0 / 64) + 256 * 9.0) / 2304));
  CHECK(bpw(uniform_plan("W8", g)) == doctest::Approx(8 + 32.0 * (32 + 8) / 2304));
  // The first layer W4g32, the second fp32: (2048 * 5 + 256 * 32) / 2304.
  QuantPlan mixed = uniform_plan("W4g32", g);
  mixed.layers.erase("fc2");
  CHECK(bpw(mixed) == 8.0);
  CHECK(costs.layer_bytes_at(8.0) == 2304.0);
  CHECK(costs.bits_per_weight(2304.0) == 8.0);
}

TEST_CASE("max_bits_per_weight: a size budget on the layers' sums, refused below the smallest") {
  const Graph g = two_linear_layers();
  const auto layers = quantizable_layers(g);
  SearchOptions options;
  options.options = {"fp32", "W8", "W4g32"};
  options.objectives = {"accuracy", "bits_per_weight"};
  const SearchSpace space = build_space(layers, options, "two_linear");
  const PlanCosts costs(g, "", 1, nullptr);
  const CostTables tables = build_cost_tables(g, layers, space, costs, "");

  // The smallest plan is W4g32 everywhere, 5.0 bits per weight.
  options.max_bits_per_weight = 4.5;
  CHECK_THROWS_WITH_AS(
      feasible_budgets(space, tables.table, options, costs, {}),
      doctest::Contains("search.constraints cannot be met by any plan: max_bits_per_weight 4.5 "
                        "is below the smallest plan of the space, 5.0000 bits per weight"),
      Error);
  options.max_bits_per_weight = 5.0;  // exactly the smallest plan: feasible
  CHECK(feasible_budgets(space, tables.table, options, costs, {}).size == 5.0 * 2304 / 8);
  options.max_bits_per_weight = 8.0;
  CHECK(feasible_budgets(space, tables.table, options, costs, {}).size == 2304.0);
  // With max_size_mb too, the tighter of the two budgets stands (sizes less the bias).
  options.max_size_mb = 1e-6 * (2000 + 32 * 4);
  CHECK(feasible_budgets(space, tables.table, options, costs, {}).size == doctest::Approx(2000));
  options.max_size_mb = 1.0;
  CHECK(feasible_budgets(space, tables.table, options, costs, {}).size == 2304.0);

  // Plans over the bound violate it by their relative excess; bits_per_weight is an objective.
  options.max_size_mb.reset();
  options.max_bits_per_weight = 6.0;
  const PlanScorer scorer(costs, objectives_named(options.objectives), options, 0.9);
  EvaluatedPlan w8;
  w8.plan = uniform_plan("W8", g);
  w8.metrics.top1 = 0.9;
  scorer.score(w8);
  const double w8_bpw = 8 + 32.0 * 40 / 2304;
  CHECK(w8.metrics.bits_per_weight == doctest::Approx(w8_bpw));
  REQUIRE(w8.objectives.size() == 2);
  CHECK(w8.objectives[0] == doctest::Approx(0.1));
  CHECK(w8.objectives[1] == doctest::Approx(w8_bpw));
  CHECK(w8.violation == doctest::Approx(w8_bpw / 6 - 1));
  EvaluatedPlan w4;
  w4.plan = uniform_plan("W4g32", g);
  w4.metrics.top1 = 0.9;
  scorer.score(w4);
  CHECK(w4.violation == 0);
}

TEST_CASE("genome_plan, layer_features and the scorer's objectives and violation") {
  const Graph& graph = mlp().graph;
  const auto layers = quantizable_layers(graph);
  SearchOptions options = three_options();
  const SearchSpace space = build_space(layers, options, "mlp");
  const PlanCosts costs(graph, "hash", 1, nullptr);
  CostTables tables = build_cost_tables(graph, layers, space, costs, "");

  CHECK(genome_plan({0, 0, 0}, layers, tables.specs, "hash").layers.empty());
  const QuantPlan mixed = genome_plan({1, 0, 2}, layers, tables.specs, "hash");
  CHECK(mixed.model_hash == "hash");
  CHECK(mixed.layers.size() == 2);
  CHECK(mixed.layers.count(layers[1].name) == 0);

  tables.table.sensitivity = {{0, 0.5, 1}, {0, 0.25, 2}, {0, 0.125, 4}};
  const auto features = layer_features(costs.context(), tables.table);
  REQUIRE(features.size() == 3);
  CHECK(features[2].size() == 4 + 3);  // position, log MACs, log weights, conv; 3 options
  CHECK(features[1][0] == doctest::Approx(1.0 / 3));
  CHECK(features[0][3] == 0.0);  // a Gemm
  CHECK(features[2][6] == 4.0);

  options.max_accuracy_drop = 1.0;  // percentage points
  options.max_size_mb = 0.1;
  const PlanScorer scorer(costs, objectives_named(options.objectives), options, 0.9);
  EvaluatedPlan e;
  e.plan = mixed;
  e.metrics.top1 = 0.88;  // 2 points below fp32: one point over the limit
  scorer.score(e);
  CHECK(e.unsupported.empty());
  REQUIRE(e.objectives.size() == 2);
  CHECK(e.objectives[0] == doctest::Approx(0.12));
  CHECK(e.objectives[1] == e.metrics.size_bytes);
  const double size_excess = std::max(0.0, e.metrics.size_bytes / 1e5 - 1);
  CHECK(e.violation == doctest::Approx(1.0 + size_excess));
}

TEST_CASE("baselines: each label uniform, costed, with layers it cannot fit named") {
  const Graph& graph = mlp().graph;
  const auto layers = quantizable_layers(graph);
  const PlanCosts costs(graph, "", 1, nullptr);
  ScriptedEvaluator evaluator;
  std::vector<std::string> lines, states;
  Progress progress{[&](const std::string& s) { lines.push_back(s); },
                    [&](const std::string& s) { states.push_back(s); }};
  const auto labels = baseline_labels(three_options());
  CHECK(labels == std::vector<std::string>{"fp32", "W8A8", "W4A8", "W4g128A16", "W8A8t", "W4A8t"});
  InProcessRunner runner(evaluator);
  const auto baselines = evaluate_baselines({"fp32", "W8A8t", "W4g128A16"}, graph, layers, "",
                                            runner, costs, "", progress);
  REQUIRE(baselines.size() == 3);
  CHECK(evaluator.asked ==
        std::vector<std::string>{"uniform:fp32", "uniform:W8A8t", "uniform:W4g128A16"});
  CHECK(baselines[0].plan.layers.empty());
  CHECK(baselines[1].plan.layers.size() == 3);
  CHECK(baselines[1].metrics.size_bytes < baselines[0].metrics.size_bytes);
  CHECK(baselines[1].unsupported.empty());
  // 128-element groups do not divide the first Gemm's 784 inputs: that layer stays fp32.
  CHECK(baselines[2].plan.layers.size() == 2);
  CHECK(baselines[2].unsupported.find("1 layer(s) kept fp32") == 0);
  CHECK(states.size() == 3);
  CHECK(states[1] == "baseline 2/3 (uniform W8A8t)");
  REQUIRE(lines.size() == 1);
  CHECK(lines[0].find("baselines: 3 uniform plans in ") == 0);
}

TEST_CASE_FIXTURE(LimitedPolicyLoop,
                  "the policy loop evaluates in ask order and keeps the front of feasible plans") {
  PolicyParams params;
  params.population_size = 4;
  auto policy = make_policy("random", result.space, params);
  PolicyLoopSettings settings;
  settings.batch_size = 4;
  settings.max_evaluations = 20;
  settings.plan_of = [&](const Genome& g) { return genome_plan(g, layers, tables.specs, ""); };
  std::size_t states = 0;
  Progress progress{nullptr, [&](const std::string&) { ++states; }};
  const std::atomic<bool> stop{false};
  run_policy_loop(*policy, runner, *scorer, settings, result, progress, stop);

  REQUIRE(result.evaluations.size() == 20);
  CHECK(states == 20);
  CHECK(result.evaluations_run == 20);
  CHECK(result.stop_reason == "evaluation budget spent");
  CHECK_FALSE(result.interrupted);
  for (std::size_t i = 0; i < 20; ++i) CHECK(evaluator.asked[i] == result.evaluations[i].key);

  // The incrementally kept front is the batch front of the feasible evaluations, sorted by
  // objectives.
  std::vector<ObjectivePoint> feasible;
  std::vector<std::size_t> index;
  for (std::size_t i = 0; i < result.evaluations.size(); ++i)
    if (result.evaluations[i].violation == 0) {
      feasible.push_back(result.evaluations[i].objectives);
      index.push_back(i);
    }
  std::vector<std::size_t> expected;
  for (const auto k : non_dominated(feasible)) expected.push_back(index[k]);
  std::sort(expected.begin(), expected.end(), [&](std::size_t a, std::size_t b) {
    return result.evaluations[a].objectives < result.evaluations[b].objectives;
  });
  CHECK(result.front == expected);
  CHECK_FALSE(result.front.empty());
  CHECK(feasible.size() < result.evaluations.size());  // the limit took some plans out
}

TEST_CASE_FIXTURE(PolicyLoop, "the policy loop stops between evaluations when asked to") {
  auto policy = make_policy("random", result.space, PolicyParams{});
  PolicyLoopSettings settings;
  settings.batch_size = 4;
  settings.plan_of = [&](const Genome& g) { return genome_plan(g, layers, tables.specs, ""); };
  std::atomic<bool> stop{false};
  // An interrupt arriving during the fifth evaluation's progress report.
  Progress progress{nullptr, [&](const std::string&) {
                      if (evaluator.asked.size() == 5) stop = true;
                    }};
  run_policy_loop(*policy, runner, *scorer, settings, result, progress, stop);
  CHECK(result.evaluations.size() == 5);
  CHECK(result.interrupted);
  CHECK(result.stop_reason == "interrupted (SIGINT)");
}

TEST_CASE("NSGA-II seeds from a thinned front where the exact solver would fail") {
  const SearchSpace space = test_spaces::make_space(22, 2);
  const LayerCostTable table = test_spaces::past_the_state_limit(space);
  const Nsga2Seeds seeds = nsga2_seeds(space, table, {}, 16);
  CHECK(seeds.genomes.size() == 8);
  CHECK(seeds.thinned.find("layer20") != std::string::npos);

  PolicyParams params;
  params.population_size = 16;
  params.costs = table;
  params.initial_genomes = seeds.genomes;
  auto policy = make_policy("nsga2", space, params);
  const auto first = policy->ask(16);
  REQUIRE(first.size() == 16);
  // The seeds come first (in NSGA-II's own spread order).
  std::vector<Genome> asked_first(first.begin(), first.begin() + 8), expected = seeds.genomes;
  std::sort(asked_first.begin(), asked_first.end());
  std::sort(expected.begin(), expected.end());
  CHECK(asked_first == expected);
}

TEST_CASE("the final re-evaluation: final numbers, measured latency, beaten plans leave") {
  const Graph& graph = mlp().graph;
  const auto layers = quantizable_layers(graph);
  const SearchOptions options = three_options();
  const PlanCosts costs(graph, "", 1, nullptr);
  const PlanScorer scorer(costs, objectives_named(options.objectives), options, 0.9);

  SearchResult result;
  auto add = [&](const std::string& key, double top1, double size) {
    EvaluatedPlan e;
    e.key = key;
    e.metrics.top1 = top1;
    e.metrics.size_bytes = size;
    e.metrics.gbops = 1;
    e.objectives = scorer.objective_values(e.metrics);
    result.front.push_back(result.evaluations.size());
    result.evaluations.push_back(e);
  };
  // "a" is an LLM-sized key: its progress line counts the options instead of listing 60 layers.
  std::string a;
  for (int i = 0; i < 60; ++i)
    a += fmt::format("{}/model/layers.{}/MatMul={}", i ? ";" : "", i, i % 3 ? "W8" : "W4g32z:gptq");
  add(a, 0.90, 100);
  add("b", 0.89, 90);
  Baseline w8;
  w8.name = "W8A8";
  w8.metrics.top1 = 0.85;
  w8.metrics.size_bytes = 95;
  result.baselines.push_back(w8);

  // On the final selection the baseline turns out better than "a" on every objective.
  ScriptedEvaluator final_selection;
  final_selection.top1 = {{a, 0.91}, {"b", 0.88}, {"uniform:W8A8", 0.95}};
  FinalSelection selection{&final_selection, 1000, [](const QuantPlan&) {
                             return Spread{0.5, 0.01};
                           }};
  std::vector<std::string> lines;
  Progress progress{[&](const std::string& s) { lines.push_back(s); }, nullptr};
  const std::atomic<bool> stop{false};
  reevaluate_final(result, selection, scorer, progress, stop);

  CHECK(final_selection.asked == std::vector<std::string>{a, "b", "uniform:W8A8"});
  CHECK(result.front == std::vector<std::size_t>{1});
  REQUIRE(result.dropped_from_front.size() == 1);
  CHECK(result.dropped_from_front[0] == std::pair<std::string, std::string>{a, "uniform W8A8"});
  const EvaluatedPlan& b = result.evaluations[1];
  REQUIRE(b.final_metrics.has_value());
  CHECK(b.final_metrics->top1 == 0.88);
  CHECK(b.final_metrics->size_bytes == 90);  // costs as predicted for the search
  CHECK(b.measured_latency_ms == 0.5);
  CHECK(result.baselines[0].final_metrics->top1 == 0.95);
  REQUIRE(lines.size() == 2);
  CHECK(lines[0].find("final: 2 front plans and 1 baselines on 1000 samples in ") == 0);
  CHECK(lines[1] ==
        "final: plan of 60 layers: 40 W8, 20 W4g32z:gptq leaves the front: on the final "
        "selection uniform W8A8 is better on every objective");
  CHECK_FALSE(result.interrupted);
}

}  // namespace search_driver_stages_test
