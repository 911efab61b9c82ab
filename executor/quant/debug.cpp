#include "executor/quant/debug.hpp"

#include <cmath>
#include <limits>

#include "executor/evaluate.hpp"
#include "executor/plan.hpp"

namespace bitplan {
namespace {

struct NoiseMeter {
  double signal = 0, noise = 0;
  void add(std::span<const float> ref, std::span<const float> got) {
    for (std::size_t i = 0; i < ref.size(); ++i) {
      const double r = ref[i], d = r - got[i];
      signal += r * r;
      noise += d * d;
    }
  }
  double sqnr_db() const {
    return noise > 0 ? 10 * std::log10(signal / noise) : std::numeric_limits<double>::infinity();
  }
};

// Runs `reference` and `candidate` side by side over the samples and measures the noise of
// each of `tensors` (present in both graphs) plus the model output (last entry).
std::vector<NoiseMeter> compare_runs(const Graph& reference, const Graph& candidate,
                                     const std::vector<std::string>& tensors,
                                     const Dataset& dataset, std::span<const std::int64_t> indices,
                                     std::int64_t batch) {
  auto expose = [&](Graph g) {
    std::vector<ValueInfo> outputs;
    for (const auto& t : tensors) outputs.push_back({t, DType::f32, {}, {}});
    outputs.push_back(g.outputs.at(0));
    g.outputs = outputs;
    return g;
  };
  check_model_takes_samples(reference, dataset);
  const Graph ref = expose(reference), cand = expose(candidate);
  std::vector<NoiseMeter> meters(tensors.size() + 1);
  std::map<std::int64_t, std::pair<std::unique_ptr<ExecutionPlan>, std::unique_ptr<ExecutionPlan>>>
      plans;
  Tensor input;
  for (std::size_t start = 0; start < indices.size(); start += static_cast<std::size_t>(batch)) {
    const std::int64_t n =
        std::min<std::int64_t>(batch, static_cast<std::int64_t>(indices.size() - start));
    auto& [rp, cp] = plans[n];
    if (!rp) {
      rp = std::make_unique<ExecutionPlan>(ref, PlanOptions{n});
      cp = std::make_unique<ExecutionPlan>(cand, PlanOptions{n});
    }
    load_batch(*rp, ref, dataset, indices.subspan(start, static_cast<std::size_t>(n)), input);
    const auto r = rp->run(std::span<const Tensor>(&input, 1));
    const auto c = cp->run(std::span<const Tensor>(&input, 1));
    for (std::size_t i = 0; i < meters.size(); ++i)
      meters[i].add(r[i].values<float>(), c[i].values<float>());
  }
  return meters;
}

}  // namespace

PlanDebug debug_plan(QuantSimulator& simulator, const QuantPlan& plan, const Dataset& dataset,
                     std::span<const std::int64_t> indices, std::int64_t batch) {
  const Graph& fp32 = simulator.fp32_graph();
  std::vector<const QuantizableLayer*> layers;
  std::vector<std::string> outputs;
  for (const auto& layer : simulator.layers())
    if (plan.layers.count(layer.name)) layers.push_back(&layer);
  // Each layer's output (after any fused activation) carries its error forward.
  for (const auto* layer : layers)
    for (const auto& node : fp32.nodes)
      if (node.name == layer->name) outputs.push_back(node.outputs.at(0));

  PlanDebug result;
  result.samples = static_cast<std::int64_t>(indices.size());
  const auto cumulative =
      compare_runs(fp32, simulator.build(plan, false), outputs, dataset, indices, batch);
  result.output_sqnr_db = cumulative.back().sqnr_db();
  for (std::size_t i = 0; i < layers.size(); ++i) {
    const QuantizableLayer& layer = *layers[i];
    const LayerQuant& q = plan.layers.at(layer.name);
    QuantPlan only;
    only.layers[layer.name] = q;
    const auto isolated =
        compare_runs(fp32, simulator.build(only, false), {outputs[i]}, dataset, indices, batch);
    LayerDebug d;
    d.name = layer.name;
    d.op_type = layer.op_type;
    d.weights = to_string(q.weights);
    d.activations = to_string(q.activations);
    d.isolated_layer_sqnr_db = isolated[0].sqnr_db();
    d.isolated_output_sqnr_db = isolated[1].sqnr_db();
    d.cumulative_layer_sqnr_db = cumulative[i].sqnr_db();
    const auto w = fp32.initializer(layer.weight)->values<float>();
    double sum = 0, sum2 = 0, max_abs = 0;
    d.weight_min = d.weight_max = w.empty() ? 0.f : w[0];
    for (float v : w) {
      d.weight_min = std::min(d.weight_min, v);
      d.weight_max = std::max(d.weight_max, v);
      sum += v;
      sum2 += static_cast<double>(v) * v;
      max_abs = std::max(max_abs, std::abs(static_cast<double>(v)));
    }
    const double n = static_cast<double>(std::max<std::size_t>(w.size(), 1));
    const double stddev = std::sqrt(std::max(0.0, sum2 / n - (sum / n) * (sum / n)));
    d.weight_outlier_ratio = stddev > 0 ? max_abs / stddev : 0;
    d.input_min = d.input_max = std::numeric_limits<float>::quiet_NaN();
    if (q.activations.format != FormatId::fp32 && !q.dynamic &&
        format_traits(q.activations.format).has_scale()) {
      const auto& range = simulator.input_range(layer, q);
      d.input_min = range.min;
      d.input_max = range.max;
    }
    result.layers.push_back(std::move(d));
  }
  return result;
}

}  // namespace bitplan
