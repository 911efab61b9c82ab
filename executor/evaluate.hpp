// Evaluating a model on a dataset: batched execution with bounded memory (one batch of
// inputs and the plan's activation arena), plans built once per batch size and reused,
// top-1/top-5 and per-class accuracy when there are labels, and the judged output's rows or
// next-token statistics for the other metrics (executor/metrics.hpp).
#pragma once

#include <span>
#include <string>
#include <vector>

#include "data/dataset.hpp"
#include "executor/metrics.hpp"
#include "executor/plan.hpp"

namespace bitplan {

// Next-token scoring of a causal LM during evaluate (MetricKind::perplexity).
struct NextTokenOptions {
  std::string tokens_input = "input_ids";       // the model input holding the tokens
  std::string mask_input = "attention_mask";    // scored only where non-zero, when present
  const NextTokenReference* reference = nullptr;  // KL against it, when given
  NextTokenReference* record = nullptr;           // the run's own top-k, when given
};

struct EvalOptions {
  std::int64_t batch = 64;
  bool keep_logits = false;  // store every sample's judged output (for fidelity, embeddings)
  std::string output = {};   // the judged output; empty: the first
  bool score_labels = true;  // with labels: top-1/top-5 of logits [N, classes]
  const NextTokenOptions* next_token = nullptr;
};

struct EvalResult {
  std::int64_t samples = 0;
  std::int64_t classes = 0;
  bool labelled = false;               // top1/top5/per class are measured only with labels
  double top1 = 0, top5 = 0;           // fractions
  std::vector<double> class_accuracy;  // top-1 per class (NaN where a class has no sample)
  std::vector<std::int64_t> class_samples;
  std::vector<std::int64_t> predictions;  // argmax per sample row, in selection order
  std::vector<float> logits;              // [samples, width] when keep_logits
  std::int64_t width = 0;                 // values per sample of the judged output
  Dims output_dims;                       // the judged output's dims for one batch
  NextTokenStats next_token;              // with EvalOptions::next_token
  std::int64_t batch = 0;                 // the batch it ran at
  double model_seconds = 0;               // time inside ExecutionPlan::run
  double load_seconds = 0;                // time decoding and preprocessing inputs
  double plan_seconds = 0;                // building plans (once per batch size)
  std::size_t arena_bytes = 0;            // activation memory of the largest plan
};

// The one input samples are fed to; fails (unsupported) when the model has several.
const ValueInfo& sample_input(const Graph& graph);

// For each input of `graph`, in order, the index of the dataset input that feeds it: the
// one unnamed input (`dataset.images`) feeds a one-input model; named inputs
// (`dataset.inputs`) feed the model inputs of their names. Fails (invalid input) naming the
// model inputs without data, or the data without a model input.
std::vector<std::size_t> feed_order(const Graph& graph, const Dataset& dataset);

// The batch size to run `graph` at: `requested`, unless the model fixes its inputs' batch
// axis (a static export, [1, 3, 224, 224]), whose size is then used; `note` (when given)
// says so, or is left empty.
std::int64_t model_batch(const Graph& graph, std::int64_t requested, std::string* note = nullptr);

// Gives the free dimensions after the batch axis of each input of `graph` its data's sample
// dims (models often leave H and W symbolic: [N, 3, H, W], or T: [N, T]). Image data of one
// channel ({1, H, W}) also feeds a model input [N, H, W]. Fails like
// check_model_takes_samples when the ranks or a fixed dimension disagree.
void bind_input_to_samples(Graph& graph, const Dataset& dataset);

// Fails (invalid input) unless every input of `graph` takes its data's samples (feed_order):
// its dims after the batch axis are the sample dims; a free one among them must have been
// bound first (bind_input_to_samples).
void check_model_takes_samples(const Graph& graph, const Dataset& dataset);

// Fails (invalid input) unless `plan`'s inputs are planned as [n, sample dims...], naming
// the input, the planned shape and the data's (and the batch to use when the model fixes it).
void check_plan_takes_batch(const ExecutionPlan& plan, const Graph& graph, const Dataset& dataset,
                            std::int64_t n);

// Loads samples `indices` into `inputs` (one per graph input, in its order; allocated anew
// when their dims differ) for `plan`, after check_plan_takes_batch: data of any other shape
// would be written past the buffer.
void load_batch(const ExecutionPlan& plan, const Graph& graph, const Dataset& dataset,
                std::span<const std::int64_t> indices, std::vector<Tensor>& inputs);
// The same for a one-input model.
void load_batch(const ExecutionPlan& plan, const Graph& graph, const Dataset& dataset,
                std::span<const std::int64_t> indices, Tensor& input);

// Runs `graph` over `indices` of `dataset`, with its inputs' free dimensions bound to the
// samples (bind_input_to_samples), at model_batch(graph, options.batch). With labels (and
// score_labels) the judged output must be logits [N, classes] and top-1/top-5 are measured.
EvalResult evaluate(const Graph& graph, const Dataset& dataset,
                    std::span<const std::int64_t> indices, const EvalOptions& options);

}  // namespace bitplan
