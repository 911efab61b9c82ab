// The metric functions against hand-computed values (executor/metrics.hpp).
#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <vector>

#include "core/error.hpp"
#include "executor/metrics.hpp"

namespace bitplan::executor_metrics_test {
namespace {

TEST_CASE("metric names round-trip and the default follows the labels") {
  MetricKind kind{};
  for (const char* name : {"top1", "fidelity", "embedding", "perplexity"}) {
    REQUIRE(metric_from_name(name, kind));
    CHECK(metric_name(kind) == name);
  }
  CHECK_FALSE(metric_from_name("accuracy", kind));
  MetricConfig config;
  CHECK(resolved_metric(config, true) == MetricKind::top1);
  CHECK(resolved_metric(config, false) == MetricKind::fidelity);
  config.kind = MetricKind::embedding;
  config.kind_given = true;
  CHECK(resolved_metric(config, true) == MetricKind::embedding);
}

TEST_CASE("row cosines: mean and worst of the rows") {
  const std::vector<float> reference{1, 0, 1, 1, 0, 0};
  const std::vector<float> candidate{0, 1, 2, 2, 0, 0};  // 0, 1, and two zero rows: 1
  const CosineStats stats = row_cosines(reference, candidate, 2);
  CHECK(stats.mean == doctest::Approx(2.0 / 3));
  CHECK(stats.worst == doctest::Approx(0.0));
}

TEST_CASE("spearman: ranks, ties at their average rank, constant input") {
  // d = {0, 1, 1, 0}: 1 - 6 * 2 / (4 * 15) = 0.8.
  CHECK(spearman(std::vector<double>{1, 2, 3, 4}, std::vector<double>{1, 3, 2, 4}) ==
        doctest::Approx(0.8));
  // Ranks {1, 2.5, 2.5, 4} vs {1, 2, 3, 4}: Pearson 4.5 / sqrt(4.5 * 5).
  CHECK(spearman(std::vector<double>{1, 2, 2, 3}, std::vector<double>{10, 20, 30, 40}) ==
        doctest::Approx(4.5 / std::sqrt(22.5)));
  CHECK(std::isnan(spearman(std::vector<double>{1, 1, 1}, std::vector<double>{1, 2, 3})));
  CHECK(std::isnan(spearman(std::vector<double>{1}, std::vector<double>{1})));
}

TEST_CASE("pair spearman: cosine of the pairs' rows against their scores") {
  // cos(e0, e1) = 2 / sqrt 5, cos(e0, e2) = 0, cos(e1, e2) = 1 / sqrt 5.
  const std::vector<float> embeddings{1, 0, 2, 1, 0, 1};
  const std::vector<std::int64_t> pairs{0, 1, 0, 2, 1, 2};
  CHECK(pair_spearman(embeddings, 2, pairs, std::vector<float>{3, 1, 2}) == doctest::Approx(1.0));
  // Ranks {3, 1, 2} vs {1, 2, 3}: d^2 = 4 + 1 + 1, 1 - 36 / 24.
  CHECK(pair_spearman(embeddings, 2, pairs, std::vector<float>{1, 2, 3}) == doctest::Approx(-0.5));
}

TEST_CASE("nearest-centroid accuracy, leave-one-out") {
  // Rows 0-2 are class 0 but row 2 points along class 1's axis: 4 of 5 right.
  const std::vector<float> embeddings{1, 0, 1, 0.1f, 0, 1, 0.1f, 1, 0, 2};
  const std::vector<std::int64_t> labels{0, 0, 0, 1, 1};
  CHECK(nearest_centroid_accuracy(embeddings, 2, labels) == doctest::Approx(0.8));
  // Without the outlier every row is right.
  CHECK(nearest_centroid_accuracy(std::vector<float>{1, 0, 1, 0.1f, 0.1f, 1, 0, 2}, 2,
                                  std::vector<std::int64_t>{0, 0, 1, 1}) == doctest::Approx(1.0));
  // A row alone in its class has no centroid of its own: it counts as wrong.
  CHECK(nearest_centroid_accuracy(std::vector<float>{1, 0, 1, 0.1f, 0, 1}, 2,
                                  std::vector<std::int64_t>{0, 0, 1}) == doctest::Approx(2.0 / 3));
  CHECK(std::isnan(nearest_centroid_accuracy(std::vector<float>{1, 0, 0, 1}, 2,
                                             std::vector<std::int64_t>{0, 0})));
}

TEST_CASE("next-token perplexity: logits at t score token t + 1, masked positions skipped") {
  // Two sequences of T = 3 over a vocabulary of 3. Sequence 0: logits log{1, 2, 3} at t = 0
  // give q = {1/6, 2/6, 3/6}; token 2 follows: -log(1/2). At t = 1, uniform logits and
  // token 0: log 3. Sequence 1's mask hides position 2, so only t = 0 scores: uniform, log 3.
  const float l1 = 0, l2 = std::log(2.0f), l3 = std::log(3.0f);
  const std::vector<float> logits{l1, l2, l3, 0, 0, 0, 9, 9, 9,  //
                                  0,  0,  0,  5, 1, 2, 7, 7, 7};
  const std::vector<std::int64_t> tokens{1, 2, 0, 0, 1, 2};
  const std::vector<std::int64_t> mask{1, 1, 1, 1, 1, 0};
  NextTokenStats stats;
  add_next_token(logits, tokens, mask, 2, 3, 3, stats, nullptr, nullptr, nullptr);
  CHECK(stats.positions == 3);
  const double nll = std::log(2.0) + 2 * std::log(3.0);
  CHECK(stats.nll_sum == doctest::Approx(nll));
  CHECK(stats.perplexity() == doctest::Approx(std::exp(nll / 3)));
  CHECK(stats.mean_kl() == doctest::Approx(0.0));
  // Without a mask every position but the last of each sequence scores.
  NextTokenStats all;
  add_next_token(logits, tokens, {}, 2, 3, 3, all, nullptr, nullptr, nullptr);
  CHECK(all.positions == 4);
  // A token outside the vocabulary is an error naming it.
  const std::vector<std::int64_t> bad{1, 7, 0, 0, 1, 2};
  NextTokenStats ignored;
  CHECK_THROWS_AS(add_next_token(logits, bad, {}, 2, 3, 3, ignored, nullptr, nullptr, nullptr),
                  Error);
}

TEST_CASE("next-token KL against a recorded reference: exact within the top k") {
  // One sequence of T = 2, V = 3: the reference is uniform, the candidate log{1, 2, 3}.
  // KL(p || q) = 1/3 (log 2 + log 1 + log 2/3) = log(4/3) / 3.
  const std::vector<std::int64_t> tokens{0, 1};
  NextTokenReference reference;
  NextTokenStats fp32;
  add_next_token(std::vector<float>{0, 0, 0, 0, 0, 0}, tokens, {}, 1, 2, 3, fp32, nullptr,
                 nullptr, &reference);
  CHECK(reference.positions() == 1);
  CHECK(reference.k == 3);
  CHECK(std::isinf(reference.log_tail[0]));  // the top 3 of 3 hold all the mass
  NextTokenStats candidate;
  std::int64_t position = 0;
  const float l2 = std::log(2.0f), l3 = std::log(3.0f);
  add_next_token(std::vector<float>{0, l2, l3, 0, 0, 0}, tokens, {}, 1, 2, 3, candidate,
                 &reference, &position, nullptr);
  CHECK(position == 1);
  CHECK(candidate.mean_kl() == doctest::Approx(std::log(4.0 / 3) / 3));
  CHECK(candidate.nll_sum == doctest::Approx(-std::log(2.0 / 6)));
}

TEST_CASE("next-token KL over a vocabulary beyond the top k is a lower bound of the full KL") {
  const std::int64_t vocabulary = 500, steps = 5;
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  std::vector<float> a(static_cast<std::size_t>(steps * vocabulary)), b(a.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    a[i] = normal(rng);
    b[i] = a[i] + 0.5f * normal(rng);
  }
  const std::vector<std::int64_t> tokens{1, 2, 3, 4, 5};
  NextTokenReference reference;
  NextTokenStats fp32, candidate;
  add_next_token(a, tokens, {}, 1, steps, vocabulary, fp32, nullptr, nullptr, &reference);
  CHECK(reference.k == NextTokenReference::kTopK);
  std::int64_t position = 0;
  add_next_token(b, tokens, {}, 1, steps, vocabulary, candidate, &reference, &position, nullptr);
  // The full KL over the scored positions (t = 0..3).
  const auto full = compare_outputs(std::span(a).subspan(0, 4 * vocabulary),
                                    std::span(b).subspan(0, 4 * vocabulary), vocabulary);
  CHECK(candidate.mean_kl() > 0);
  CHECK(candidate.mean_kl() <= full.kl_divergence + 1e-9);
  CHECK(candidate.mean_kl() > 0.25 * full.kl_divergence);  // much of the mass is in the top k
}

}  // namespace
}  // namespace bitplan::executor_metrics_test
