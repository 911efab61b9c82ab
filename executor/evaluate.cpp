#include "executor/evaluate.hpp"

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
}  // namespace

const ValueInfo& sample_input(const Graph& graph) {
  if (graph.inputs.size() != 1)
    fail_unsupported(
        "feeding '{}' from a dataset: the model has {} inputs; bitplan feeds one image input",
        graph.name, graph.inputs.size());
  return graph.inputs[0];
}

namespace {

// Whether each dimension after the batch axis is the sample's, or free where `free_ok`.
bool takes_samples(const ValueInfo& input, const Dims& sample, bool free_ok) {
  if (input.dims.size() != sample.size() + 1) return false;
  for (std::size_t i = 1; i < input.dims.size(); ++i)
    if (!(input.dims[i] == sample[i - 1] || (free_ok && input.dims[i] < 0))) return false;
  return true;
}

[[noreturn]] void fail_sample_shape(const Graph& graph, const ValueInfo& input,
                                    const Dataset& dataset) {
  fail_input(
      "feeding '{}' from a dataset: the model input '{}' has shape {} but the dataset's samples "
      "are {} (plus the batch axis); check the dataset's layout/resize/crop",
      graph.name, input.name, to_string(input.dims), to_string(dataset.sample_dims()));
}

}  // namespace

void bind_input_to_samples(Graph& graph, const Dataset& dataset) {
  sample_input(graph);  // exactly one input
  ValueInfo& input = graph.inputs[0];
  if (!takes_samples(input, dataset.sample_dims(), true)) fail_sample_shape(graph, input, dataset);
  for (std::size_t i = 1; i < input.dims.size(); ++i) input.dims[i] = dataset.sample_dims()[i - 1];
}

void check_model_takes_samples(const Graph& graph, const Dataset& dataset) {
  const ValueInfo& input = sample_input(graph);
  if (!takes_samples(input, dataset.sample_dims(), true)) fail_sample_shape(graph, input, dataset);
  for (std::size_t i = 1; i < input.dims.size(); ++i)
    BITPLAN_ASSERT(input.dims[i] >= 0);  // bind_input_to_samples gives free dims the data's
}

void check_plan_takes_batch(const ExecutionPlan& plan, const Graph& graph, const Dataset& dataset,
                            std::int64_t n) {
  Dims data_dims = dataset.sample_dims();
  data_dims.insert(data_dims.begin(), n);
  const Dims& planned = plan.input_meta().at(0).dims;
  if (planned != data_dims) {
    const ValueInfo& info = sample_input(graph);
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
                std::span<const std::int64_t> indices, Tensor& input) {
  check_plan_takes_batch(plan, graph, dataset, static_cast<std::int64_t>(indices.size()));
  const Dims& planned = plan.input_meta().at(0).dims;
  if (input.empty() || input.dims() != planned) input = Tensor(DType::f32, planned);
  dataset.load(indices, input.data<float>());
}

EvalResult evaluate(const Graph& graph, const Dataset& dataset,
                    std::span<const std::int64_t> indices, const EvalOptions& options) {
  if (graph.outputs.size() != 1)
    fail_unsupported(
        "evaluating '{}': the model has {} outputs; evaluation needs one logits output", graph.name,
        graph.outputs.size());
  Graph bound = graph;  // tensors are shared, not copied
  bind_input_to_samples(bound, dataset);
  if (options.batch < 1) fail(ErrorKind::usage, "evaluating: batch {} must be >= 1", options.batch);

  EvalResult r;
  r.classes = dataset.num_classes();
  r.class_samples.assign(static_cast<std::size_t>(r.classes), 0);
  std::vector<std::int64_t> class_correct(static_cast<std::size_t>(r.classes), 0);
  std::int64_t correct1 = 0, correct5 = 0;

  // At most two plans: the full batch and the remainder.
  std::map<std::int64_t, std::unique_ptr<ExecutionPlan>> plans;
  Tensor batch_input;
  for (std::size_t start = 0; start < indices.size();
       start += static_cast<std::size_t>(options.batch)) {
    const std::int64_t n =
        std::min<std::int64_t>(options.batch, static_cast<std::int64_t>(indices.size() - start));
    auto& plan = plans[n];
    if (!plan) {
      const auto t = Clock::now();
      plan = std::make_unique<ExecutionPlan>(bound, PlanOptions{n});
      r.plan_seconds += seconds_since(t);
      r.arena_bytes = std::max(r.arena_bytes, plan->arena_bytes());
      check_plan_takes_batch(*plan, bound, dataset, n);
      const ValueMeta& out = plan->output_meta()[0];
      if (out.dims.size() != 2 || out.dims[0] != n || out.dtype != DType::f32)
        fail_unsupported(
            "evaluating '{}': output '{}' is {} {}; evaluation needs float logits [N, "
            "classes]",
            graph.name, graph.outputs[0].name, dtype_name(out.dtype), to_string(out.dims));
      if (out.dims[1] < r.classes)
        fail_input("evaluating '{}': the model has {} outputs but the dataset has {} classes",
                   graph.name, out.dims[1], r.classes);
    }
    auto t = Clock::now();
    const auto batch_indices = indices.subspan(start, static_cast<std::size_t>(n));
    load_batch(*plan, bound, dataset, batch_indices, batch_input);
    r.load_seconds += seconds_since(t);
    t = Clock::now();
    const std::vector<Tensor> outputs = plan->run(std::span<const Tensor>(&batch_input, 1));
    r.model_seconds += seconds_since(t);

    const std::int64_t width = outputs[0].dim(1);
    const float* logits = outputs[0].data<float>();
    std::vector<std::int64_t> order(static_cast<std::size_t>(width));
    for (std::int64_t i = 0; i < n; ++i) {
      const float* row = logits + i * width;
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
      if (options.keep_logits) r.logits.insert(r.logits.end(), row, row + width);
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
