// The objective table: names, lookups and the minimised values the policies and the front see.
#include <doctest/doctest.h>

#include <cmath>
#include <set>

#include "core/error.hpp"
#include "search/objectives.hpp"

namespace search_objectives_test {

using namespace bitplan;
using namespace bitplan::search;

TEST_CASE("every objective has one row with a unique name and a unit") {
  std::set<std::string_view> names;
  for (const Objective& objective : objective_table()) {
    CHECK(names.insert(objective.name).second);
    CHECK_FALSE(objective.unit.empty());
    CHECK(find_objective(objective.name) == &objective);
  }
  CHECK(objective_names_text() ==
        "accuracy, latency, size, bits_per_weight, bops, worst_class, kl, perplexity, cosine");
  CHECK(find_objective("top1") == nullptr);
}

TEST_CASE("objectives_named keeps the config's order and refuses unknown names") {
  const auto rows = objectives_named({"size", "accuracy"});
  REQUIRE(rows.size() == 2);
  CHECK(rows[0].id == ObjectiveId::size);
  CHECK(rows[1].id == ObjectiveId::accuracy);
  CHECK(has_objective(rows, ObjectiveId::size));
  CHECK_FALSE(has_objective(rows, ObjectiveId::latency));
  CHECK_THROWS_WITH_AS(objectives_named({"accuracy", "speed"}),
                       doctest::Contains("'speed' is not one of accuracy, latency"), Error);
}

TEST_CASE("minimised values: accuracy as the top-1 error, a maximised objective negated") {
  PlanMetrics m;
  m.top1 = 0.875;
  m.latency_ms = 1.5;
  m.size_bytes = 4096;
  m.gbops = 2.5;
  m.worst_class_drop = 0.0625;
  m.kl = 0.01;
  const auto all = objectives_named({"accuracy", "latency", "size", "bops", "worst_class", "kl"});
  CHECK(minimised_objectives(all, m) == ObjectivePoint{0.125, 1.5, 4096, 2.5, 0.0625, 0.01});

  const Objective agreement{ObjectiveId::accuracy, "agreement", "fraction", Direction::maximise,
                            [](const PlanMetrics& metrics) { return metrics.agreement; }};
  m.agreement = 0.75;
  const std::vector<Objective> maximised{agreement};
  CHECK(minimised_objectives(maximised, m) == ObjectivePoint{-0.75});
  // No latency (no profile): NaN passes through, so the front treats it as incomparable.
  m.latency_ms = NAN;
  CHECK(std::isnan(minimised_objectives(objectives_named({"latency"}), m)[0]));
}

TEST_CASE("bits_per_weight is minimised, read off the plan's metrics, fit for any metric") {
  const Objective* row = find_objective("bits_per_weight");
  REQUIRE(row != nullptr);
  CHECK(row->id == ObjectiveId::bits_per_weight);
  CHECK(row->direction == Direction::minimise);
  CHECK(row->unit == "bits per weight element");
  PlanMetrics m;
  m.size_bytes = 4096;
  m.bits_per_weight = 4.5;
  CHECK(minimised_objectives(objectives_named({"perplexity", "bits_per_weight", "size"}), m)[1] ==
        4.5);
  for (const MetricKind kind :
       {MetricKind::top1, MetricKind::fidelity, MetricKind::embedding, MetricKind::perplexity})
    check_objectives_fit_metric({"bits_per_weight"}, kind);
}

TEST_CASE("perplexity is minimised, cosine maximised; each metric has its quality objective") {
  PlanMetrics m;
  m.perplexity = 12.5;
  m.cosine = 0.96;
  CHECK(minimised_objectives(objectives_named({"perplexity", "cosine"}), m) ==
        ObjectivePoint{12.5, -0.96});
  CHECK(quality_objective(MetricKind::top1) == "accuracy");
  CHECK(quality_objective(MetricKind::fidelity) == "kl");
  CHECK(quality_objective(MetricKind::embedding) == "cosine");
  CHECK(quality_objective(MetricKind::perplexity) == "perplexity");
  check_objectives_fit_metric({"perplexity", "kl", "latency"}, MetricKind::perplexity);
  CHECK_THROWS_WITH_AS(
      check_objectives_fit_metric({"accuracy", "latency"}, MetricKind::perplexity),
      doctest::Contains("search objective 'accuracy' needs metric.kind top1, but the run's "
                        "metric is perplexity; its quality objective is 'perplexity'"),
      Error);
  CHECK_THROWS_WITH_AS(check_objectives_fit_metric({"cosine"}, MetricKind::top1),
                       doctest::Contains("'cosine' needs metric.kind embedding"), Error);
}

}  // namespace search_objectives_test
