// What the search knows about one plan: accuracy and fidelity measured on a selection (by an
// Evaluator, search/evaluator.hpp) and the costs predicted by the cost models. Plain data.
#pragma once

#include <cstdint>
#include <limits>

namespace bitplan::search {

// What the configured metric (executor/metrics.hpp) measured; NaN where it does not apply.
inline constexpr double kNotMeasured = std::numeric_limits<double>::quiet_NaN();

struct PlanMetrics {
  double top1 = 0;  // on the subset (or the final selection for final_*); top1 metric
  double worst_class_drop = 0;
  // Against fp32: kl is the output KL (top1, fidelity, embedding) or, for the perplexity
  // metric, the mean next-token KL; sqnr_db and agreement of the output rows.
  double kl = 0, sqnr_db = 0, agreement = 0;
  double perplexity = kNotMeasured;         // perplexity metric
  double cosine = kNotMeasured;             // embedding: mean row cosine to fp32
  double cosine_worst = kNotMeasured;       // embedding: worst row cosine to fp32
  double spearman = kNotMeasured;           // embedding with metric.pairs
  double centroid_accuracy = kNotMeasured;  // embedding with labels
  std::int64_t samples = 0;
  bool stopped_early = false;
  double latency_ms = 0;  // predicted from the profile (NaN without one)
  double size_bytes = 0;
  // The quantizable layers' weight storage (codes, scales, zero points, codebooks; fp32
  // layers at 32 bits) in bits per weight element: size_bytes without the other float
  // initializers (biases, norms), times 8, over the layers' weight elements.
  double bits_per_weight = 0;
  double gbops = 0;
};

}  // namespace bitplan::search
