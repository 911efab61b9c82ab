// The kinds of metric a run is judged by (the run config's `metric.kind`), as plain data:
// the search names objectives after them and the config reader parses them, neither of
// which runs a model. How each is measured lives in executor/metrics.hpp.
#pragma once

#include <cstddef>
#include <iterator>
#include <string_view>

namespace bitplan {

enum class MetricKind {
  top1,        // labels: top-1/top-5 accuracy of logits [N, classes] (default with labels)
  fidelity,    // no labels needed: top-1 agreement, KL, cosine, SQNR of the outputs vs fp32
  embedding,   // output rows [N, D]: cosine to fp32; Spearman on pairs; centroid accuracy
  perplexity,  // causal LM logits [N, T, V]: perplexity of the tokens, next-token KL vs fp32
};

inline constexpr std::string_view kMetricNames[] = {"top1", "fidelity", "embedding", "perplexity"};

// "top1" ...
constexpr std::string_view metric_name(MetricKind kind) {
  return kMetricNames[static_cast<std::size_t>(kind)];
}

// The kind named `name`, or false.
constexpr bool metric_from_name(std::string_view name, MetricKind& kind) {
  for (std::size_t i = 0; i < std::size(kMetricNames); ++i)
    if (kMetricNames[i] == name) {
      kind = static_cast<MetricKind>(i);
      return true;
    }
  return false;
}

}  // namespace bitplan
