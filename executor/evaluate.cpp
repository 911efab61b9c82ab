#include "executor/evaluate.hpp"

#include <fmt/ranges.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <memory>
#include <numeric>

namespace bitplan {
namespace {
using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

std::string input_names(const Graph& graph) {
  std::vector<std::string> names;
  for (const auto& input : graph.inputs) names.push_back(input.name);
  return fmt::format("{}", fmt::join(names, ", "));
}
}  // namespace

const ValueInfo& sample_input(const Graph& graph) {
  if (graph.inputs.size() != 1)
    fail_unsupported(
        "feeding '{}' from a dataset: the model has {} inputs ({}); give each its file with "
        "dataset.inputs: {{NAME: FILE, ...}}",
        graph.name, graph.inputs.size(), input_names(graph));
  return graph.inputs[0];
}

std::vector<std::size_t> feed_order(const Graph& graph, const Dataset& dataset) {
  const auto& data = dataset.inputs();
  if (data.size() == 1 && data[0].name.empty()) {
    sample_input(graph);  // exactly one model input
    return {0};
  }
  std::vector<std::size_t> order;
  std::vector<std::string> missing;
  for (const ValueInfo& input : graph.inputs) {
    const auto it = std::find_if(data.begin(), data.end(),
                                 [&](const DataInput& d) { return d.name == input.name; });
    if (it == data.end())
      missing.push_back(input.name);
    else
      order.push_back(static_cast<std::size_t>(it - data.begin()));
  }
  if (!missing.empty())
    fail_input(
        "feeding '{}' from a dataset: model input{} '{}' ha{} no data; the model's inputs are "
        "[{}]: dataset.inputs must name each",
        graph.name, missing.size() == 1 ? "" : "s", fmt::join(missing, "', '"),
        missing.size() == 1 ? "s" : "ve", input_names(graph));
  for (const DataInput& d : data)
    if (std::none_of(graph.inputs.begin(), graph.inputs.end(),
                     [&](const ValueInfo& input) { return input.name == d.name; }))
      fail_input(
          "feeding '{}' from a dataset: dataset.inputs.{} ('{}') is not a model input; the "
          "model's inputs are [{}]",
          graph.name, d.name, d.source, input_names(graph));
  return order;
}

std::int64_t model_batch(const Graph& graph, std::int64_t requested, std::string* note) {
  if (note) note->clear();
  std::int64_t fixed = -1;
  for (const ValueInfo& input : graph.inputs) {
    if (input.dims.empty() || input.dims[0] < 1) return requested;  // a free batch axis
    if (fixed >= 0 && input.dims[0] != fixed) return requested;     // no one batch axis
    fixed = input.dims[0];
  }
  if (fixed < 1 || fixed == requested) return requested;
  if (note)
    *note = fmt::format(
        "batch {}: the model fixes its batch axis to {} (input '{}' is {}), so it runs {} "
        "sample{} at a time",
        fixed, fixed, graph.inputs[0].name, to_string(graph.inputs[0].dims), fixed,
        fixed == 1 ? "" : "s");
  return fixed;
}

namespace {

// The sample dims a model input takes from data of `sample` dims: the same, or without the
// unit channel of one-channel image data ({1, H, W} feeding [N, H, W]); empty when neither
// fits (free dims matching anything where `free_ok`).
std::optional<Dims> taken_dims(const ValueInfo& input, const Dims& sample, bool free_ok) {
  const auto fits = [&](const Dims& dims) {
    if (input.dims.size() != dims.size() + 1) return false;
    for (std::size_t i = 1; i < input.dims.size(); ++i)
      if (!(input.dims[i] == dims[i - 1] || (free_ok && input.dims[i] < 0))) return false;
    return true;
  };
  if (fits(sample)) return sample;
  if (sample.size() == 3 && sample[0] == 1) {
    Dims squeezed(sample.begin() + 1, sample.end());
    if (fits(squeezed)) return squeezed;
  }
  return std::nullopt;
}

[[noreturn]] void fail_sample_shape(const Graph& graph, const ValueInfo& input,
                                    const DataInput& data) {
  fail_input(
      "feeding '{}' from a dataset: the model input '{}' has shape {} but the dataset's samples "
      "are {} (plus the batch axis{}); check the dataset's layout/resize/crop",
      graph.name, input.name, to_string(input.dims), to_string(data.sample_dims),
      data.source.empty() ? "" : fmt::format(", from '{}'", data.source));
}

}  // namespace

void bind_input_to_samples(Graph& graph, const Dataset& dataset) {
  const std::vector<std::size_t> order = feed_order(graph, dataset);
  for (std::size_t i = 0; i < order.size(); ++i) {
    ValueInfo& input = graph.inputs[i];
    const DataInput& data = dataset.inputs()[order[i]];
    const auto dims = taken_dims(input, data.sample_dims, true);
    if (!dims) fail_sample_shape(graph, input, data);
    for (std::size_t d = 1; d < input.dims.size(); ++d) input.dims[d] = (*dims)[d - 1];
  }
}

void check_model_takes_samples(const Graph& graph, const Dataset& dataset) {
  const std::vector<std::size_t> order = feed_order(graph, dataset);
  for (std::size_t i = 0; i < order.size(); ++i) {
    const ValueInfo& input = graph.inputs[i];
    const DataInput& data = dataset.inputs()[order[i]];
    if (!taken_dims(input, data.sample_dims, true)) fail_sample_shape(graph, input, data);
    for (std::size_t d = 1; d < input.dims.size(); ++d)
      BITPLAN_ASSERT(input.dims[d] >= 0);  // bind_input_to_samples gives free dims the data's
  }
}

void check_plan_takes_batch(const ExecutionPlan& plan, const Graph& graph, const Dataset& dataset,
                            std::int64_t n) {
  const std::vector<std::size_t> order = feed_order(graph, dataset);
  for (std::size_t i = 0; i < order.size(); ++i) {
    const ValueInfo& info = graph.inputs[i];
    const DataInput& data = dataset.inputs()[order[i]];
    const Dims& planned = plan.input_meta().at(i).dims;
    Dims data_dims = taken_dims(info, data.sample_dims, false).value_or(data.sample_dims);
    data_dims.insert(data_dims.begin(), n);
    if (planned == data_dims) continue;
    const bool fixed_batch = !info.dims.empty() && info.dims[0] >= 0;
    fail_input(
        "feeding '{}' from a dataset: input '{}' is planned as {} but a batch of the data is {}{}",
        graph.name, info.name, to_string(planned), to_string(data_dims),
        fixed_batch && !planned.empty() && planned[0] != data_dims[0]
            ? fmt::format("; the model fixes the batch axis to {}: run with batch {} "
                          "(--batch, evaluate.batch)",
                          info.dims[0], info.dims[0])
            : "");
  }
}

void load_batch(const ExecutionPlan& plan, const Graph& graph, const Dataset& dataset,
                std::span<const std::int64_t> indices, std::vector<Tensor>& inputs) {
  check_plan_takes_batch(plan, graph, dataset, static_cast<std::int64_t>(indices.size()));
  const std::vector<std::size_t> order = feed_order(graph, dataset);
  inputs.resize(order.size());
  for (std::size_t i = 0; i < order.size(); ++i) {
    const ValueMeta& planned = plan.input_meta().at(i);
    if (inputs[i].empty() || inputs[i].dims() != planned.dims ||
        inputs[i].dtype() != planned.dtype)
      inputs[i] = Tensor(planned.dtype, planned.dims);
    dataset.load_input(order[i], indices, inputs[i]);
  }
}

void load_batch(const ExecutionPlan& plan, const Graph& graph, const Dataset& dataset,
                std::span<const std::int64_t> indices, Tensor& input) {
  sample_input(graph);
  std::vector<Tensor> inputs(1);
  inputs[0] = std::move(input);
  load_batch(plan, graph, dataset, indices, inputs);
  input = std::move(inputs[0]);
}

namespace {

// The index of the output named `name` (empty: the first).
std::size_t output_index(const Graph& graph, const std::string& name) {
  if (graph.outputs.empty()) fail_unsupported("evaluating '{}': the model has no output", graph.name);
  if (name.empty()) return 0;
  for (std::size_t i = 0; i < graph.outputs.size(); ++i)
    if (graph.outputs[i].name == name) return i;
  std::vector<std::string> names;
  for (const auto& o : graph.outputs) names.push_back(o.name);
  fail_input("evaluating '{}': metric.output '{}' is not a model output; the outputs are [{}]",
             graph.name, name, fmt::join(names, ", "));
}

// The position of the model input named `name`, or -1.
int input_position(const Graph& graph, const std::string& name) {
  for (std::size_t i = 0; i < graph.inputs.size(); ++i)
    if (graph.inputs[i].name == name) return static_cast<int>(i);
  return -1;
}

}  // namespace

EvalResult evaluate(const Graph& graph, const Dataset& dataset,
                    std::span<const std::int64_t> indices, const EvalOptions& options) {
  const std::size_t judged = output_index(graph, options.output);
  Graph bound = graph;  // tensors are shared, not copied
  bind_input_to_samples(bound, dataset);
  if (options.batch < 1) fail(ErrorKind::usage, "evaluating: batch {} must be >= 1", options.batch);
  const std::int64_t batch = model_batch(bound, options.batch);
  if (batch != options.batch && indices.size() % static_cast<std::size_t>(batch) != 0)
    fail_input(
        "evaluating '{}': {} samples do not fill batches of {}, the batch size the model fixes; "
        "select a multiple of it (--count, dataset.validation.count)",
        graph.name, indices.size(), batch);

  EvalResult r;
  r.batch = batch;
  r.labelled = dataset.has_labels() && options.score_labels && dataset.num_classes() > 0;
  r.classes = r.labelled ? dataset.num_classes() : 0;
  r.class_samples.assign(static_cast<std::size_t>(r.classes), 0);
  std::vector<std::int64_t> class_correct(static_cast<std::size_t>(r.classes), 0);
  std::int64_t correct1 = 0, correct5 = 0;

  // Next-token scoring reads the tokens (and mask) from the fed inputs.
  int tokens_at = -1, mask_at = -1;
  if (options.next_token) {
    tokens_at = input_position(bound, options.next_token->tokens_input);
    if (tokens_at < 0)
      fail_input(
          "evaluating '{}': the perplexity metric reads the tokens from input '{}' "
          "(metric.tokens_input), which the model does not have; its inputs are [{}]",
          graph.name, options.next_token->tokens_input, input_names(bound));
    mask_at = input_position(bound, options.next_token->mask_input);
  }
  std::int64_t reference_position = 0;

  // At most two plans: the full batch and the remainder.
  std::map<std::int64_t, std::unique_ptr<ExecutionPlan>> plans;
  std::vector<Tensor> batch_inputs;
  for (std::size_t start = 0; start < indices.size(); start += static_cast<std::size_t>(batch)) {
    const std::int64_t n =
        std::min<std::int64_t>(batch, static_cast<std::int64_t>(indices.size() - start));
    auto& plan = plans[n];
    if (!plan) {
      const auto t = Clock::now();
      plan = std::make_unique<ExecutionPlan>(bound, PlanOptions{n});
      r.plan_seconds += seconds_since(t);
      r.arena_bytes = std::max(r.arena_bytes, plan->arena_bytes());
      check_plan_takes_batch(*plan, bound, dataset, n);
      const ValueMeta& out = plan->output_meta()[judged];
      if (out.dtype != DType::f32 || out.dims.empty() || out.dims[0] != n)
        fail_unsupported(
            "evaluating '{}': output '{}' is {} {}; evaluation needs float outputs [N, ...] "
            "with the batch first",
            graph.name, graph.outputs[judged].name, dtype_name(out.dtype), to_string(out.dims));
      if (r.labelled && out.dims.size() != 2)
        fail_unsupported(
            "evaluating '{}': output '{}' is {} {}; top-1 against the labels needs float logits "
            "[N, classes] (for other outputs set metric.kind: fidelity, embedding or perplexity)",
            graph.name, graph.outputs[judged].name, dtype_name(out.dtype), to_string(out.dims));
      if (r.labelled && out.dims[1] < r.classes)
        fail_input("evaluating '{}': the model has {} outputs but the dataset has {} classes",
                   graph.name, out.dims[1], r.classes);
      if (options.next_token && out.dims.size() != 3)
        fail_unsupported(
            "evaluating '{}': output '{}' is {}; the perplexity metric needs logits [N, T, "
            "vocabulary]",
            graph.name, graph.outputs[judged].name, to_string(out.dims));
      r.output_dims = out.dims;
    }
    auto t = Clock::now();
    const auto batch_indices = indices.subspan(start, static_cast<std::size_t>(n));
    load_batch(*plan, bound, dataset, batch_indices, batch_inputs);
    r.load_seconds += seconds_since(t);
    t = Clock::now();
    const std::vector<Tensor> outputs = plan->run(batch_inputs);
    r.model_seconds += seconds_since(t);

    const Tensor& output = outputs[judged];
    const std::int64_t width = output.numel() / n;
    r.width = width;
    const float* rows = output.data<float>();
    if (options.next_token) {
      const Tensor& tokens = batch_inputs[static_cast<std::size_t>(tokens_at)];
      const std::vector<std::int64_t> token_values = tokens.to_int64_vector();
      std::vector<std::int64_t> mask_values;
      if (mask_at >= 0) mask_values = batch_inputs[static_cast<std::size_t>(mask_at)].to_int64_vector();
      if (tokens.dims().size() != 2 || tokens.dim(1) != output.dim(1) ||
          (!mask_values.empty() && mask_values.size() != token_values.size()))
        fail_input(
            "evaluating '{}': the tokens of input '{}' are {} but the logits are {}; the "
            "perplexity metric needs tokens [N, T] and logits [N, T, vocabulary]",
            graph.name, options.next_token->tokens_input, to_string(tokens.dims()),
            to_string(output.dims()));
      add_next_token(output.values<float>(), token_values, mask_values, n, output.dim(1),
                     output.dim(2), r.next_token, options.next_token->reference,
                     &reference_position, options.next_token->record);
    }
    for (std::int64_t i = 0; i < n; ++i) {
      const float* row = rows + i * width;
      if (options.keep_logits) r.logits.insert(r.logits.end(), row, row + width);
      if (!r.labelled) continue;
      std::vector<std::int64_t> order(static_cast<std::size_t>(width));
      std::iota(order.begin(), order.end(), 0);
      const std::size_t k = std::min<std::size_t>(5, order.size());
      std::partial_sort(
          order.begin(), order.begin() + static_cast<std::ptrdiff_t>(k), order.end(),
          [&](auto a, auto b) { return row[a] > row[b] || (row[a] == row[b] && a < b); });
      const std::int64_t label = dataset.label(batch_indices[static_cast<std::size_t>(i)]);
      const bool hit1 = order[0] == label;
      correct1 += hit1;
      correct5 += std::find(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(k), label) !=
                  order.begin() + static_cast<std::ptrdiff_t>(k);
      ++r.class_samples[static_cast<std::size_t>(label)];
      class_correct[static_cast<std::size_t>(label)] += hit1;
      r.predictions.push_back(order[0]);
    }
    if (!r.labelled && r.output_dims.size() == 2)
      for (std::int64_t i = 0; i < n; ++i) {
        const float* row = rows + i * width;
        r.predictions.push_back(std::max_element(row, row + width) - row);
      }
  }
  r.samples = static_cast<std::int64_t>(indices.size());
  const double total = static_cast<double>(std::max<std::int64_t>(r.samples, 1));
  r.top1 = static_cast<double>(correct1) / total;
  r.top5 = static_cast<double>(correct5) / total;
  for (std::size_t c = 0; c < class_correct.size(); ++c)
    r.class_accuracy.push_back(r.class_samples[c] ? static_cast<double>(class_correct[c]) /
                                                        static_cast<double>(r.class_samples[c])
                                                  : NAN);
  return r;
}

}  // namespace bitplan
