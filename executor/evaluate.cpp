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

void check_model_takes_samples(const Graph& graph, const Dataset& dataset) {
  if (graph.inputs.size() != 1)
    fail_unsupported(
        "feeding '{}' from a dataset: the model has {} inputs; bitplan feeds one image input",
        graph.name, graph.inputs.size());
  const ValueInfo& input = graph.inputs[0];
  bool ok = input.dims.size() == dataset.sample_dims().size() + 1;
  for (std::size_t i = 1; ok && i < input.dims.size(); ++i)
    ok = input.dims[i] < 0 || input.dims[i] == dataset.sample_dims()[i - 1];
  if (!ok)
    fail_input(
        "feeding '{}' from a dataset: the model input '{}' has shape {} but the dataset's samples "
        "are {} "
        "(plus the batch axis); check the dataset's layout/resize/crop",
        graph.name, input.name, to_string(input.dims), to_string(dataset.sample_dims()));
}

EvalResult evaluate(const Graph& graph, const Dataset& dataset,
                    std::span<const std::int64_t> indices, const EvalOptions& options) {
  if (graph.outputs.size() != 1)
    fail_unsupported(
        "evaluating '{}': the model has {} outputs; evaluation needs one logits output", graph.name,
        graph.outputs.size());
  check_model_takes_samples(graph, dataset);
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
      plan = std::make_unique<ExecutionPlan>(graph, PlanOptions{n});
      r.plan_seconds += seconds_since(t);
      r.arena_bytes = std::max(r.arena_bytes, plan->arena_bytes());
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
    Dims in_dims = plan->input_meta()[0].dims;
    if (batch_input.empty() || batch_input.dims() != in_dims)
      batch_input = Tensor(DType::f32, in_dims);
    auto t = Clock::now();
    const auto batch_indices = indices.subspan(start, static_cast<std::size_t>(n));
    dataset.load(batch_indices, batch_input.data<float>());
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
