#include "executor/quant/simulate.hpp"

#include <set>

#include "core/files.hpp"
#include "executor/plan.hpp"

namespace bitplan {
namespace fs = std::filesystem;

CalibrationRanges calibrate(const Graph& graph, const Dataset& dataset,
                            std::span<const std::int64_t> indices,
                            const std::vector<std::string>& tensors,
                            const CalibrationOptions& options, std::int64_t batch) {
  if (indices.empty())
    fail_input("calibrating '{}': the calibration selection is empty", graph.name);
  // Expose the observed activations as extra graph outputs: the planner keeps their buffers.
  Graph observed = graph;
  observed.outputs.clear();
  for (const auto& name : tensors) observed.outputs.push_back({name, DType::f32, {}, {}});
  std::map<std::string, RangeObserver> observers;
  for (const auto& name : tensors) observers.emplace(name, RangeObserver(options));

  std::map<std::int64_t, std::unique_ptr<ExecutionPlan>> plans;
  Tensor input;
  for (std::size_t start = 0; start < indices.size(); start += static_cast<std::size_t>(batch)) {
    const std::int64_t n =
        std::min<std::int64_t>(batch, static_cast<std::int64_t>(indices.size() - start));
    auto& plan = plans[n];
    if (!plan) plan = std::make_unique<ExecutionPlan>(observed, PlanOptions{n});
    if (input.empty() || input.dims() != plan->input_meta()[0].dims)
      input = Tensor(DType::f32, plan->input_meta()[0].dims);
    dataset.load(indices.subspan(start, static_cast<std::size_t>(n)), input.data<float>());
    const auto outputs = plan->run(std::span<const Tensor>(&input, 1));
    for (std::size_t i = 0; i < tensors.size(); ++i)
      observers.at(tensors[i]).observe(outputs[i].values<float>());
  }
  CalibrationRanges ranges;
  for (const auto& [name, observer] : observers) {
    try {
      ranges[name] = observer.range();
    } catch (const Error& e) {
      fail_input("calibrating activation '{}' of '{}': {}", name, graph.name, e.what());
    }
  }
  return ranges;
}

QuantSimulator::QuantSimulator(const Graph& graph, std::string model_hash,
                               CalibrationData calibration)
    : graph_(graph),
      model_hash_(std::move(model_hash)),
      calibration_(std::move(calibration)),
      layers_(quantizable_layers(graph)) {}

const CalibrationRanges& QuantSimulator::ranges(CalibrationMethod method, bool symmetric, int bits) {
  auto key = std::make_tuple(method, symmetric, bits);
  if (auto it = ranges_.find(key); it != ranges_.end()) return it->second;
  CalibrationOptions options;
  options.method = method;
  options.symmetric = symmetric;
  options.target_bits = bits;
  std::vector<std::string> tensors;
  std::set<std::string> seen;
  for (const auto& layer : layers_)
    if (seen.insert(layer.input).second) tensors.push_back(layer.input);
  fs::path cache_file;
  if (!calibration_.cache_dir.empty())
    cache_file = calibration_.cache_dir /
                 (calibration_cache_key(model_hash_, calibration_.selection_id, options) + ".json");
  if (!cache_file.empty() && fs::exists(cache_file)) {
    CalibrationRanges cached = read_calibration_cache(cache_file);
    bool complete = true;
    for (const auto& t : tensors) complete = complete && cached.count(t);
    if (complete) return ranges_[key] = std::move(cached);
  }
  if (!calibration_.dataset)
    fail(ErrorKind::usage, "quantizing '{}': static activation quantization needs calibration data",
         graph_.name);
  CalibrationRanges computed = calibrate(graph_, *calibration_.dataset, calibration_.indices,
                                         tensors, options, calibration_.batch);
  if (!cache_file.empty()) {
    fs::create_directories(cache_file.parent_path());
    write_calibration_cache(cache_file, computed);
  }
  return ranges_[key] = std::move(computed);
}

const Tensor& QuantSimulator::quantized_weight(const QuantizableLayer& layer,
                                               const QuantSpec& spec) {
  const QuantSpec s = weight_spec_for(spec, layer);
  const std::string key = layer.name + "|" + to_string(s);
  if (auto it = weight_cache_.find(key); it != weight_cache_.end()) return it->second;
  const Tensor& w = *graph_.initializer(layer.weight);
  const QuantParams params = choose_weight_params(s, w, layer.reduction_axis);
  Tensor out;
  fake_quantize(s, params, w, out, layer.reduction_axis);
  return weight_cache_[key] = std::move(out);
}

Graph QuantSimulator::build(const QuantPlan& plan) {
  Graph g = graph_;
  std::map<std::string, std::size_t> node_index;
  for (std::size_t i = 0; i < g.nodes.size(); ++i) node_index[g.nodes[i].name] = i;
  std::vector<Node> fake_quant_nodes;
  for (const auto& layer : layers_) {
    auto it = plan.layers.find(layer.name);
    if (it == plan.layers.end() || !it->second.quantized()) continue;
    const LayerQuant& q = it->second;
    Node& node = g.nodes[node_index.at(layer.name)];
    if (q.weights.format != FormatId::fp32) {
      const std::string name = layer.weight + "@" + layer.name + "@" + to_string(q.weights);
      g.initializers[name] = quantized_weight(layer, q.weights);
      node.inputs[1] = name;
    }
    if (q.activations.format != FormatId::fp32) {
      Node fq;
      fq.name = layer.name + "/input_quant";
      fq.op_type = "FakeQuant";
      fq.domain = "bitplan";
      fq.inputs = {layer.input};
      fq.outputs = {layer.input + "@q@" + layer.name};
      fq.attrs["format"] = static_cast<std::int64_t>(q.activations.format);
      fq.attrs["symmetric"] = static_cast<std::int64_t>(q.activations.symmetric);
      if (q.dynamic) {
        fq.attrs["dynamic"] = std::int64_t{1};
      } else if (!format_traits(q.activations.format).has_scale()) {
        // fp16 / bf16: plain rounding, nothing to calibrate.
        fq.attrs["scale"] = 1.f;
        fq.attrs["zero_point"] = 0.f;
      } else {
        const auto& range = ranges(q.calibration, q.activations.symmetric,
                                   format_traits(q.activations.format).bits)
                                .at(layer.input);
        const AffineParams p = affine_params_from_range(
            q.activations.format, q.activations.symmetric, range.min, range.max);
        fq.attrs["scale"] = p.scale;
        fq.attrs["zero_point"] = p.zero_point;
      }
      node.inputs[0] = fq.outputs[0];
      fake_quant_nodes.push_back(std::move(fq));
    }
  }
  g.nodes.insert(g.nodes.end(), fake_quant_nodes.begin(), fake_quant_nodes.end());
  topological_sort(g);
  remove_dead_nodes(g);
  return g;
}

}  // namespace bitplan
