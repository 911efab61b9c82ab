// Per-layer quantization debugger: where a plan's error comes from.
//
// For every quantized layer of a plan, on a sample subset:
//   * isolated: SQNR of the layer's own output, and of the model output, when only that
//     layer is quantized (the cheapest sensitivity signal the search uses);
//   * cumulative: SQNR of the layer's output when the whole plan is quantized, following
//     how error builds up along the graph;
//   * ranges: weight min/max and outlier ratio (max|w| / std(w)), the calibrated input range.
// All SQNRs stream over batches (sum of signal^2 and noise^2), so memory stays bounded.
#pragma once

#include "executor/quant/simulate.hpp"

namespace bitplan {

struct LayerDebug {
  std::string name, op_type, weights, activations;  // specs as text
  double isolated_layer_sqnr_db = 0;
  double isolated_output_sqnr_db = 0;
  double cumulative_layer_sqnr_db = 0;
  float weight_min = 0, weight_max = 0;
  double weight_outlier_ratio = 0;     // max|w| / std(w)
  float input_min = 0, input_max = 0;  // calibrated (NaN when the input is not quantized)
};

struct PlanDebug {
  std::int64_t samples = 0;
  double output_sqnr_db = 0;  // the whole plan, model output
  std::vector<LayerDebug> layers;
};

PlanDebug debug_plan(QuantSimulator& simulator, const QuantPlan& plan, const Dataset& dataset,
                     std::span<const std::int64_t> indices, std::int64_t batch);

}  // namespace bitplan
