// The Evaluator behind the search (the quantized executor with the results database in front)
// and the in-process Runner that schedules it.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>

#include "executor/model.hpp"
#include "search/evaluator.hpp"
#include "search/runner.hpp"
#include "tests/skip.hpp"
#include "tests/temp_dir.hpp"
#include "tests/unit/fashion_mnist.hpp"

namespace search_evaluator_test {

using namespace bitplan;
using namespace bitplan::search;

namespace {

// Answers top-1 = 1 / (ask number); counts the asks.
class CountingEvaluator final : public Evaluator {
 public:
  Measured evaluate(const QuantPlan&, const std::string&) override {
    Measured out;
    out.metrics.top1 = 1.0 / double(++asks);
    return out;
  }
  PlanMetrics reference() const override { return {}; }
  int asks = 0;
};

}  // namespace

TEST_CASE("the executor evaluator measures once and then answers from the results database") {
  const std::unique_ptr<Dataset> dataset = testing::open_fashion_mnist_test();
  if (!dataset) {
    testing::skip(testing::kFashionMnistMissing);
    return;
  }
  const LoadedModel model =
      load_model(std::filesystem::path(BITPLAN_SOURCE_DIR) / "models" / "fmnist_mlp.onnx");
  std::vector<std::int64_t> indices(300);
  for (std::size_t i = 0; i < indices.size(); ++i) indices[i] = std::int64_t(i);
  const SubsetEvaluator selection(model.graph, *dataset, indices, 64);
  QuantSimulator simulator(model.graph, "", CalibrationData{});  // per-token: no calibration
  test::TempDir dir;
  ResultsDb db(dir / "results.sqlite");
  ExecutorEvaluator evaluator(simulator, selection, &db, "context-a", std::nullopt);

  const PlanMetrics fp32 = evaluator.reference();
  CHECK(fp32.top1 == selection.reference().top1);
  CHECK(fp32.samples == 300);

  const QuantPlan plan = uniform_plan("W4A8t", model.graph);
  const Measured first = evaluator.evaluate(plan, "w4");
  CHECK_FALSE(first.from_database);
  CHECK(first.metrics.samples == 300);
  CHECK(first.metrics.kl > 0);
  CHECK(first.metrics.top1 == selection.evaluate(simulator.build(plan)).top1);

  const Measured again = evaluator.evaluate(plan, "w4");
  CHECK(again.from_database);
  CHECK(again.metrics.top1 == first.metrics.top1);
  CHECK(again.metrics.kl == first.metrics.kl);
  CHECK(again.metrics.sqnr_db == first.metrics.sqnr_db);

  // Rows are reused only within their context (another selection, calibration, ...).
  ExecutorEvaluator other(simulator, selection, &db, "context-b", std::nullopt);
  CHECK_FALSE(other.evaluate(plan, "w4").from_database);

  // An fp32 "plan" is the reference itself: infinite SQNR, stored as null, read back.
  const Measured identical = evaluator.evaluate(QuantPlan{}, "fp32");
  CHECK(identical.metrics.top1 == fp32.top1);
  CHECK(std::isinf(evaluator.evaluate(QuantPlan{}, "fp32").metrics.sqnr_db));
}

TEST_CASE("stored metrics: infinite SQNR is null, the 999 dB of older versions reads as it") {
  PlanMetrics m;
  m.top1 = 0.5;
  m.sqnr_db = INFINITY;
  m.samples = 7;
  const nlohmann::json stored = stored_metrics_json(m);
  CHECK(stored["sqnr_db"].is_null());
  CHECK(std::isinf(metrics_from_stored_json(stored).sqnr_db));
  CHECK(metrics_from_stored_json(stored).samples == 7);
  nlohmann::json old = stored;
  old["sqnr_db"] = 999.0;
  CHECK(std::isinf(metrics_from_stored_json(old).sqnr_db));
  old["sqnr_db"] = 31.5;
  CHECK(metrics_from_stored_json(old).sqnr_db == 31.5);
}

TEST_CASE("the in-process runner answers in ask order and stops between evaluations") {
  CountingEvaluator evaluator;
  InProcessRunner runner(evaluator);
  const std::vector<EvaluationAsk> asks{{QuantPlan{}, "a"}, {QuantPlan{}, "b"}, {QuantPlan{}, "c"}};
  std::vector<std::size_t> finished;
  RunnerHooks hooks;
  hooks.finished = [&](std::size_t i, const Measured& m) {
    finished.push_back(i);
    CHECK(m.metrics.top1 == 1.0 / double(i + 1));
  };
  CHECK(runner.run(asks, hooks).size() == 3);
  CHECK(finished == std::vector<std::size_t>{0, 1, 2});

  evaluator.asks = 0;
  finished.clear();
  hooks.stop_before_next = [&] { return evaluator.asks == 2; };
  const auto partial = runner.run(asks, hooks);
  REQUIRE(partial.size() == 2);
  CHECK(partial[1].metrics.top1 == 0.5);
  CHECK(finished == std::vector<std::size_t>{0, 1});
}

}  // namespace search_evaluator_test
