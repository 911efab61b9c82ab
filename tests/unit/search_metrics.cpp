// The search judged by other metrics than top-1: a causal LM's perplexity and next-token KL,
// an encoder's cosine to fp32 and centroid accuracy, stored and read back with the results.
#include <doctest/doctest.h>

#include <cmath>
#include <random>

#include "cost_models/cost_model.hpp"
#include "data/npy.hpp"
#include "executor/evaluate.hpp"
#include "executor/model.hpp"
#include "search/driver.hpp"
#include "search/driver_stages.hpp"
#include "search/evaluator.hpp"
#include "search/report.hpp"
#include "tests/temp_dir.hpp"

namespace search_metrics_test {

using namespace bitplan;
using namespace bitplan::search;

namespace {

Tensor random_tensor(Dims dims, std::uint32_t seed, float spread = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-spread, spread);
  Tensor t(DType::f32, std::move(dims));
  for (std::int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = dist(rng);
  return t;
}

// A toy causal LM: input_ids int64 [N, T] -> Gather(embedding [V, D]) -> MatMul [D, V] ->
// logits [N, T, V], V = 8, D = 4. `seed` picks the output weights.
Graph toy_lm(std::uint32_t seed = 2) {
  Graph g;
  g.name = "toy_lm";
  g.opset = 13;
  g.inputs.push_back({"input_ids", DType::i64, {-1, 6}, {"batch", ""}});
  g.outputs.push_back({"logits", DType::f32, {-1, 6, 8}, {"batch", "", ""}});
  g.initializers["emb"] = random_tensor({8, 4}, 1, 2.0f);
  g.initializers["w"] = random_tensor({4, 8}, seed, 2.0f);
  g.nodes = {{"embed", "Gather", "", {"emb", "input_ids"}, {"h"}, {}},
             {"head", "MatMul", "", {"h", "w"}, {"logits"}, {}}};
  return g;
}

// A toy encoder: features float [N, 6] -> MatMul [6, 4] -> embeddings [N, 4].
Graph toy_encoder(std::uint32_t seed = 3) {
  Graph g;
  g.name = "toy_encoder";
  g.opset = 13;
  g.inputs.push_back({"features", DType::f32, {-1, 6}, {"batch", ""}});
  g.outputs.push_back({"embedding", DType::f32, {-1, 4}, {"batch", ""}});
  g.initializers["w"] = random_tensor({6, 4}, seed);
  g.nodes = {{"proj", "MatMul", "", {"features", "w"}, {"embedding"}, {}}};
  return g;
}

std::vector<std::int64_t> all(std::int64_t n) {
  std::vector<std::int64_t> out(static_cast<std::size_t>(n));
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<std::int64_t>(i);
  return out;
}

}  // namespace

TEST_CASE("the perplexity metric: fp32's perplexity, a candidate's next-token KL to it") {
  test::TempDir dir;
  std::mt19937 rng(5);
  std::vector<std::int64_t> ids(10 * 6);
  for (auto& id : ids) id = static_cast<std::int64_t>(rng() % 8);
  write_npy(dir / "ids.npy", Tensor::from_values<std::int64_t>({10, 6}, ids));
  DatasetConfig data;
  data.format = "npy";
  data.inputs = {{"input_ids", dir / "ids.npy"}};
  const auto dataset = open_dataset(data);
  MetricConfig metric;
  metric.kind = MetricKind::perplexity;
  metric.kind_given = true;
  const SubsetEvaluator subset(toy_lm(), *dataset, all(10), 4, metric);
  CHECK(subset.metric() == MetricKind::perplexity);
  const SubsetOutcome& fp32 = subset.reference();
  CHECK(fp32.samples == 10);
  CHECK(fp32.perplexity > 1);
  CHECK(fp32.perplexity < 1e6);
  CHECK(fp32.fidelity.kl_divergence == 0);

  // The same model scores the same; another head diverges.
  const SubsetOutcome same = subset.evaluate(toy_lm());
  CHECK(same.perplexity == doctest::Approx(fp32.perplexity));
  CHECK(same.fidelity.kl_divergence < 1e-6);  // the reference keeps float log-probabilities
  const SubsetOutcome other = subset.evaluate(toy_lm(7));
  CHECK(other.fidelity.kl_divergence > 0.01);
  CHECK(other.perplexity != doctest::Approx(fp32.perplexity));

  // What the results database keeps, and reads back.
  const PlanMetrics m = measured_metrics(other);
  CHECK(m.kl == other.fidelity.kl_divergence);
  const PlanMetrics back = metrics_from_stored_json(stored_metrics_json(m));
  CHECK(back.perplexity == doctest::Approx(other.perplexity));
  CHECK(back.kl == doctest::Approx(m.kl));
  CHECK(std::isnan(back.cosine));
}

TEST_CASE("search.latency_sequence costs a token model at that many tokens, judged on all") {
  test::TempDir dir;
  std::vector<std::int64_t> ids(10 * 6);
  for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<std::int64_t>(i % 8);
  write_npy(dir / "ids.npy", Tensor::from_values<std::int64_t>({10, 6}, ids));
  DatasetConfig data;
  data.format = "npy";
  data.inputs = {{"input_ids", dir / "ids.npy"}};
  const std::shared_ptr<const Dataset> dataset = open_dataset(data);
  // The sequence axis free, as exported LLMs have it: bound to the data's 6 tokens for the
  // metric, and to 1 in the copy the latency is costed on.
  Graph graph = toy_lm();
  graph.inputs[0].dims = {-1, -1};
  graph.outputs[0].dims = {-1, -1, 8};
  Graph one_token = graph;
  bind_input_to_samples(graph, *dataset);
  bind_input_to_samples(one_token, *token_window(dataset, 1));
  CHECK(input_dims_text(graph) == "input_ids=6");
  CHECK(input_dims_text(one_token) == "input_ids=1");

  // A profile with the head at both sequences, and the time outside the layers of both.
  const std::string head_6 = CostContext::build(graph, "h", 1).workloads.at(0).key;
  const std::string head_1 = CostContext::build(one_token, "h", 1).workloads.at(0).key;
  CHECK(head_6 != head_1);
  HwProfile profile;
  profile.target = "synthetic";
  profile.backend = "onednn";
  profile.put(ProfileEntry{head_6, "fp32", 60.0, 1, 10, "", ""});
  profile.put(ProfileEntry{head_1, "fp32", 10.0, 1, 10, "", ""});
  profile.put(ModelOverhead{"h", "toy", 1, 400.0, 1, 0, "input_ids=6"});
  profile.put(ModelOverhead{"h", "toy", 1, 4.0, 1, 0, "input_ids=1"});

  search::DriverInputs in;
  in.graph = &graph;
  in.model_name = "toy";
  in.model_hash = "h";
  in.dataset = dataset.get();
  in.validation = all(10);
  in.metric.kind = MetricKind::perplexity;
  in.metric.kind_given = true;
  in.profile = profile;
  in.options.options = {"fp32"};
  in.options.objectives = {"perplexity", "latency"};
  in.dry_run = true;
  const std::atomic<bool> stop{false};
  const auto head_ms = [&] {
    const SearchResult r = run_search(in, {}, stop);
    REQUIRE(r.latency_ms.size() == 1);
    return r.latency_ms[0].at(0);
  };
  CHECK(head_ms() == doctest::Approx(0.060));  // at the data's sequence
  in.latency_graph = &one_token;
  CHECK(head_ms() == doctest::Approx(0.010));  // at one token
  // The model's whole predicted time takes the overhead of its own inputs.
  const PlanCosts costs(one_token, "h", 1, &profile);
  PlanMetrics m;
  costs.add_costs(QuantPlan{}, m);
  CHECK(m.latency_ms == doctest::Approx((4.0 + 10.0) / 1e3));
}

TEST_CASE("the embedding metric: cosine to fp32 and leave-one-out centroid accuracy") {
  test::TempDir dir;
  write_npy(dir / "x.npy", random_tensor({12, 6}, 11));
  std::vector<std::int64_t> labels(12);
  for (std::size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<std::int64_t>(i % 3);
  write_npy(dir / "y.npy", Tensor::from_values<std::int64_t>({12}, labels));
  DatasetConfig data;
  data.format = "npy";
  data.images = dir / "x.npy";
  data.labels = dir / "y.npy";
  const auto dataset = open_dataset(data);
  MetricConfig metric;
  metric.kind = MetricKind::embedding;
  metric.kind_given = true;
  const SubsetEvaluator subset(toy_encoder(), *dataset, all(12), 5, metric);
  CHECK(subset.reference().cosine.mean == doctest::Approx(1.0));
  CHECK(subset.reference().centroid_accuracy >= 0);
  const SubsetOutcome same = subset.evaluate(toy_encoder());
  CHECK(same.cosine.mean == doctest::Approx(1.0));
  CHECK(same.cosine.worst == doctest::Approx(1.0));
  const SubsetOutcome other = subset.evaluate(toy_encoder(9));
  CHECK(other.cosine.mean < 0.99);
  CHECK(other.cosine.worst <= other.cosine.mean);
  const PlanMetrics m = metrics_from_stored_json(stored_metrics_json(measured_metrics(other)));
  CHECK(m.cosine == doctest::Approx(other.cosine.mean));
  CHECK(m.cosine_worst == doctest::Approx(other.cosine.worst));
  CHECK(std::isnan(m.perplexity));
}

TEST_CASE(
    "without labels the default metric is fidelity; stored rows of before read as unmeasured") {
  test::TempDir dir;
  write_npy(dir / "x.npy", random_tensor({8, 6}, 4));
  DatasetConfig data;
  data.format = "npy";
  data.images = dir / "x.npy";
  const auto dataset = open_dataset(data);
  const SubsetEvaluator subset(toy_encoder(), *dataset, all(8), 8);
  CHECK(subset.metric() == MetricKind::fidelity);
  CHECK(subset.evaluate(toy_encoder(9)).fidelity.kl_divergence > 0);
  // A row stored by an earlier version has no perplexity or cosine.
  const nlohmann::json old = {{"top1", 0.5},           {"worst_class_drop", 0.0}, {"kl", 0.1},
                              {"sqnr_db", 20.0},       {"agreement", 0.9},        {"samples", 8},
                              {"stopped_early", false}};
  const PlanMetrics m = metrics_from_stored_json(old);
  CHECK(std::isnan(m.perplexity));
  CHECK(std::isnan(m.cosine));
  CHECK(m.kl == 0.1);
}

TEST_CASE("constraints of the other metrics: perplexity increase, lowest cosine, largest KL") {
  Graph graph = toy_lm();
  const PlanCosts costs(graph, "", 1, nullptr);
  SearchOptions options;
  options.objectives = {"perplexity", "size"};
  options.max_perplexity_increase = 10;  // percent of fp32's perplexity
  options.max_kl = 0.01;
  const PlanScorer scorer(costs, objectives_named(options.objectives), options, 0, 20.0);
  PlanMetrics m;
  m.perplexity = 21.0;  // +5%: within
  m.kl = 0.005;
  CHECK(scorer.violation(m) == 0);
  m.perplexity = 24.0;  // +20%: 10 points over a limit of 10
  CHECK(scorer.violation(m) == doctest::Approx(1.0));
  m.perplexity = 21.0;
  m.kl = 0.02;  // twice the limit
  CHECK(scorer.violation(m) == doctest::Approx(1.0));
  m.kl = NAN;  // not measured: never feasible
  CHECK(scorer.violation(m) == doctest::Approx(1.0));

  SearchOptions embedding;
  embedding.min_cosine = 0.98;
  const PlanScorer cosine(costs, objectives_named({"cosine"}), embedding, 0);
  m = PlanMetrics{};
  m.cosine = 0.99;
  CHECK(cosine.violation(m) == 0);
  m.cosine = 0.97;  // 0.01 short of a limit 0.02 from 1
  CHECK(cosine.violation(m) == doctest::Approx(0.5));
  CHECK(cosine.objective_values(m) == ObjectivePoint{-0.97});
}

TEST_CASE("the report plots and tabulates the run's metric: perplexity, not a top-1 of 0") {
  SearchResult r;
  r.metric = MetricKind::perplexity;
  r.fp32.perplexity = 25.2;
  r.fp32.samples = 16;
  r.policy = "random";
  Baseline w8;
  w8.name = "W8A8";
  w8.metrics.perplexity = 43.1;
  w8.metrics.samples = 16;
  w8.metrics.size_bytes = 1e6;
  w8.metrics.latency_ms = NAN;
  r.baselines.push_back(w8);
  const std::string html = report_html(r, OutputInfo{"lm.onnx", "h", "run.yaml", "bitplan search"});
  CHECK(html.find("fp32 perplexity 25.2 (16 samples)") != std::string::npos);
  CHECK(html.find("<th>perplexity (subset)</th><th>perplexity (final)</th>") != std::string::npos);
  CHECK(html.find("<td class=l>W8A8</td><td>43.1</td>") != std::string::npos);
  CHECK(html.find("perplexity vs model size") != std::string::npos);
  CHECK(html.find("fp32 top-1") == std::string::npos);
}

}  // namespace search_metrics_test
