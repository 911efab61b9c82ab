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

// The one input samples are fed to; fails (unsupported) when the model has several.
const ValueInfo& sample_input(const Graph& graph);

// Gives the free dimensions after the batch axis of `graph`'s one input the dataset's
// sample dims (models often leave H and W symbolic: [N, 3, H, W]). Fails like
// check_model_takes_samples when the ranks or a fixed dimension disagree.
void bind_input_to_samples(Graph& graph, const Dataset& dataset);

// Fails (invalid input) unless `graph` has one input whose dims after the batch axis are
// the dataset's sample dims; a free one among them must have been bound first
// (bind_input_to_samples).
void check_model_takes_samples(const Graph& graph, const Dataset& dataset);

// Fails (invalid input) unless `plan`'s one input is planned as [n, sample dims...], naming
// the input, the planned shape and the data's (and the batch to use when the model fixes it).
void check_plan_takes_batch(const ExecutionPlan& plan, const Graph& graph, const Dataset& dataset,
                            std::int64_t n);

// Loads samples `indices` into `input` (allocated anew when its dims differ) for `plan`, after
// check_plan_takes_batch: data of any other shape would be written past the buffer.
void load_batch(const ExecutionPlan& plan, const Graph& graph, const Dataset& dataset,
                std::span<const std::int64_t> indices, Tensor& input);

// Runs `graph` (one input, one output [N, classes]) over `indices` of `dataset`, with the
// input's free dimensions bound to the samples (bind_input_to_samples).
EvalResult evaluate(const Graph& graph, const Dataset& dataset,
                    std::span<const std::int64_t> indices, const EvalOptions& options);

}  // namespace bitplan
