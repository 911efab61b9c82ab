// Candidate evaluation for the search: a plan's accuracy and fidelity on a fixed subset.
//
// Plan once, run many: the subset's inputs are loaded and preprocessed once into batches;
// the fp32 reference outputs are computed once; each candidate then costs one graph build
// (QuantSimulator: cached quantized weights, fused activation fake-quant), one
// ExecutionPlan and the batched runs. A candidate whose first batches already show it
// cannot meet an accuracy-drop limit is stopped early (the rest of its batches are not run).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "data/dataset.hpp"
#include "executor/metrics.hpp"
#include "ir/graph.hpp"

namespace bitplan::search {

struct SubsetOutcome {
  std::int64_t samples = 0;  // evaluated (fewer than the subset when stopped early)
  double top1 = 0;
  double worst_class_drop = 0;  // largest per-class top-1 drop vs fp32 (fraction)
  Fidelity fidelity;            // against the fp32 outputs
  bool stopped_early = false;
  double seconds = 0;
};

class SubsetEvaluator {
 public:
  // Loads `indices` of `dataset` and runs `fp32_graph` on them for the reference.
  SubsetEvaluator(const Graph& fp32_graph, const Dataset& dataset,
                  std::vector<std::int64_t> indices, std::int64_t batch);

  const SubsetOutcome& reference() const { return reference_; }
  std::int64_t size() const { return static_cast<std::int64_t>(labels_.size()); }

  // `max_top1_drop`: stop once the drop is certainly above it (see evaluator.cpp).
  SubsetOutcome evaluate(const Graph& graph,
                         std::optional<double> max_top1_drop = std::nullopt) const;

 private:
  SubsetOutcome run(const Graph& graph, std::optional<double> max_top1_drop,
                    std::vector<float>* outputs_out) const;

  std::int64_t batch_;
  std::int64_t classes_ = 0;
  std::vector<Tensor> inputs_;  // one per batch (the last may be smaller)
  std::vector<std::int64_t> labels_;
  std::vector<float> reference_outputs_;
  std::vector<double> reference_class_accuracy_;
  SubsetOutcome reference_;
};

}  // namespace bitplan::search
