// Evaluating a model on a dataset: batched execution with bounded memory (one batch of
// inputs and the plan's activation arena), plans built once per batch size and reused,
// top-1/top-5 and per-class accuracy.
#pragma once

#include <span>
#include <vector>

#include "data/dataset.hpp"
#include "executor/plan.hpp"

namespace bitplan {

struct EvalOptions {
  std::int64_t batch = 64;
  bool keep_logits = false;  // store every sample's output row (for parity checks)
};

struct EvalResult {
  std::int64_t samples = 0;
  std::int64_t classes = 0;
  double top1 = 0, top5 = 0;           // fractions
  std::vector<double> class_accuracy;  // top-1 per class (NaN where a class has no sample)
  std::vector<std::int64_t> class_samples;
  std::vector<std::int64_t> predictions;  // top-1 per sample, in selection order
  std::vector<float> logits;              // [samples, classes] when keep_logits
  double model_seconds = 0;               // time inside ExecutionPlan::run
  double load_seconds = 0;                // time decoding and preprocessing inputs
  double plan_seconds = 0;                // building plans (once per batch size)
  std::size_t arena_bytes = 0;            // activation memory of the largest plan
};

// Fails (invalid input) unless `graph` has one input whose dims after the batch axis are
// the dataset's sample dims.
void check_model_takes_samples(const Graph& graph, const Dataset& dataset);

// Runs `graph` (one input, one output [N, classes]) over `indices` of `dataset`.
EvalResult evaluate(const Graph& graph, const Dataset& dataset,
                    std::span<const std::int64_t> indices, const EvalOptions& options);

}  // namespace bitplan
