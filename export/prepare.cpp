// prepare_export: each quantized layer's numbers, taken from the simulation itself (its
// graph's FakeQuant nodes and fake-quantized weights) so every exporter writes what bitplan
// measured.
#include <algorithm>
#include <set>

#include "export/export.hpp"
#include "ir/onnx_import.hpp"

namespace bitplan {
namespace {

constexpr std::string_view kFormatNames[] = {"onnx-qdq", "trt-precisions", "ort-overrides", "json"};

// What the stored format holds for one weight (see ExportLayer::weight_codes), through the
// format's reference functions: the definition the simulation's fast path reproduces.
float stored_code(const FormatTraits& f, const QuantParams& p, std::int64_t slice, float w) {
  const auto k = static_cast<std::size_t>(slice);
  switch (f.kind) {
    case FormatKind::none:
      return w;
    case FormatKind::integer:
      return f.quantize(w, p.scale[k], p.zero_point[k]);
    case FormatKind::ternary:
      return f.quantize(w, p.scale[k], 0.f);
    case FormatKind::floating:
      return f.has_scale() ? f.round_to_format(w / p.scale[k]) : f.round_to_format(w);
    case FormatKind::pow2:
      return f.round_to_pow2_level(w / p.scale[k]);
    case FormatKind::codebook: {
      const auto size = static_cast<std::size_t>(f.codebook_size());
      const std::span<const float> book(p.codebook.data() + k * size, size);
      const float entry = round_to_codebook(book, w);
      return static_cast<float>(std::lower_bound(book.begin(), book.end(), entry) - book.begin());
    }
  }
  return w;
}

// The BatchNormalization the import folded into `layer`, if any: in the original graph the
// layer's only reader is a BatchNormalization that bitplan's graph no longer has.
std::string folded_batchnorm_of(const Graph& original, const Graph& simplified,
                                const std::string& layer) {
  const auto node = std::find_if(original.nodes.begin(), original.nodes.end(),
                                 [&](const Node& n) { return n.name == layer; });
  if (node == original.nodes.end() || node->outputs.empty()) return "";
  std::vector<const Node*> readers;
  for (const auto& n : original.nodes)
    if (std::find(n.inputs.begin(), n.inputs.end(), node->outputs[0]) != n.inputs.end())
      readers.push_back(&n);
  if (readers.size() != 1 || readers[0]->op_type != "BatchNormalization") return "";
  const bool kept = std::any_of(simplified.nodes.begin(), simplified.nodes.end(),
                                [&](const Node& n) { return n.name == readers[0]->name; });
  return kept ? "" : readers[0]->name;
}

const Node* node_named(const Graph& graph, const std::string& name) {
  const auto it = std::find_if(graph.nodes.begin(), graph.nodes.end(),
                               [&](const Node& n) { return n.name == name; });
  return it == graph.nodes.end() ? nullptr : &*it;
}

// A layer the plan leaves in fp32 that cross-layer equalization rescaled, as the equalized
// graph holds it.
ExportModel::FloatLayer rescaled_float_layer(const Graph& original, const Graph& graph,
                                             const std::string& name,
                                             const std::filesystem::path& model_path) {
  const Node* node = node_named(graph, name);
  const Node* in_file = node_named(original, name);
  if (!node || !node->has_input(1) || !in_file || in_file->inputs.size() < 2)
    fail_unsupported(
        "exporting '{}' with cross-layer equalization: layer '{}' was rescaled but is not a "
        "node with a weight input in the model file; export without quantization.equalize",
        model_path.string(), name);
  ExportModel::FloatLayer l;
  l.name = name;
  l.weight = *graph.initializer(node->inputs[1]);
  if (node->has_input(2)) l.bias = *graph.initializer(node->inputs[2]);
  l.folded_batchnorm = folded_batchnorm_of(original, graph, name);
  return l;
}

// The model file's value whose producer, a Clip (ReLU6), cross-layer equalization replaced by
// a Relu: the output of `name` in the equalized graph (a layer the import fused the Clip into,
// or the Clip node itself), traced back through Identity nodes the import removed.
std::string relu_output(const Graph& original, const Graph& graph, const std::string& name,
                        const std::filesystem::path& model_path) {
  const Node* node = node_named(graph, name);
  std::string value = node && !node->outputs.empty() ? node->outputs[0] : "";
  const Node* producer = nullptr;
  for (int hops = 0; hops < 64 && !value.empty(); ++hops) {
    const auto it = std::find_if(original.nodes.begin(), original.nodes.end(), [&](const Node& n) {
      return std::find(n.outputs.begin(), n.outputs.end(), value) != n.outputs.end();
    });
    producer = it == original.nodes.end() ? nullptr : &*it;
    if (!producer || !(producer->op_type == "Identity" || producer->op_type == "Dropout")) break;
    value = producer->inputs.empty() ? "" : producer->inputs[0];
  }
  if (!producer || producer->op_type != "Clip" || producer->outputs.size() != 1)
    fail_unsupported(
        "exporting '{}' with relu6_to_relu: the ReLU6 replaced at '{}' is no Clip node of the "
        "model file that the export could turn into a Relu; export without relu6_to_relu",
        model_path.string(), name);
  return value;
}

}  // namespace

std::string_view export_format_name(ExportFormat format) {
  return kFormatNames[static_cast<std::size_t>(format)];
}

ExportFormat parse_export_format(std::string_view name) {
  for (std::size_t i = 0; i < std::size(kFormatNames); ++i)
    if (kFormatNames[i] == name) return static_cast<ExportFormat>(i);
  fail(ErrorKind::usage,
       "--format '{}' is not an export format; formats: onnx-qdq, "
       "trt-precisions, ort-overrides, json",
       name);
}

std::string_view bitplan_version() {
  return BITPLAN_VERSION;
}

ExportModel prepare_export(QuantSimulator& simulator, const QuantPlan& plan,
                           const std::filesystem::path& model_path,
                           const EqualizationReport* equalization) {
  ExportModel model;
  model.model_path = model_path;
  model.model_hash = plan.model_hash;
  model.plan = plan;
  const Graph& graph = simulator.fp32_graph();
  const Graph original = load_onnx(model_path);
  // Unfused: every layer keeps its own FakeQuant node, named "<layer>/input_quant".
  const Graph simulated = simulator.build(plan, /*fuse=*/false);
  // Layers cross-layer equalization rescaled (layer1 weights and bias, layer2 weights).
  std::set<std::string> rescaled;
  if (equalization) {
    model.equalized = true;
    for (const auto& p : equalization->equalized) {
      rescaled.insert(p.first);
      rescaled.insert(p.second);
    }
    for (const auto& name : equalization->relu6_replaced)
      model.relu_outputs.push_back(relu_output(original, graph, name, model_path));
  }
  for (const auto& layer : simulator.layers()) {
    const auto it = plan.layers.find(layer.name);
    if (it == plan.layers.end() || !it->second.quantized()) {
      model.float_layers.push_back(layer.name);
      continue;
    }
    ExportLayer e;
    e.layer = layer;
    e.quant = it->second;
    e.weight_spec = weight_spec_for(e.quant.weights, layer);
    e.weight = *graph.initializer(layer.weight);
    const Node& node = *std::find_if(graph.nodes.begin(), graph.nodes.end(),
                                     [&](const Node& n) { return n.name == layer.name; });
    const auto in_file = std::find_if(original.nodes.begin(), original.nodes.end(),
                                      [&](const Node& n) { return n.name == layer.name; });
    if (in_file == original.nodes.end() || in_file->inputs.size() < 2)
      fail_input("exporting '{}': layer '{}' is not a node with a weight input in the model file",
                 model_path.string(), layer.name);
    e.model_input = in_file->inputs[0];
    e.model_weight = in_file->inputs[1];
    e.folded_batchnorm = folded_batchnorm_of(original, graph, layer.name);
    if (!e.folded_batchnorm.empty() && node.has_input(2))
      e.folded_bias = *graph.initializer(node.inputs[2]);

    const Node& simulated_node = *std::find_if(simulated.nodes.begin(), simulated.nodes.end(),
                                               [&](const Node& n) { return n.name == layer.name; });
    if (e.quant.weights.format != FormatId::fp32) {
      e.weight = simulator.method_float_weight(layer, e.quant);
      e.input_scale = inverse_input_scale(simulator.input_scale(layer, e.quant));
      const FormatTraits& f = format_traits(e.quant.weights.format);
      e.weight_params = choose_weight_params(e.weight_spec, e.weight, layer.reduction_axis);
      // From the simulator, not the simulated node: a layer it computes with integer sums
      // (per-token W4A8) reads the kernel's packed codes there.
      e.simulated_weight = simulator.quantized_weight(layer, e.quant);
      // The codes of the weights the simulation ran: a method other than round-to-nearest
      // (GPTQ) picks other levels than the fp32 weights' nearest, on the same grid, and the
      // simulated weights sit exactly on levels, so coding them again is exact.
      e.weight_codes = Tensor(DType::f32, e.weight.dims());
      const float* w = e.simulated_weight.data<float>();
      float* codes = e.weight_codes.data<float>();
      const std::vector<std::int64_t> slices =
          slice_indices(e.weight_spec, e.weight.dims(), layer.reduction_axis);
      for (std::int64_t i = 0; i < e.weight.numel(); ++i)
        codes[i] = stored_code(f, e.weight_params, slices[static_cast<std::size_t>(i)], w[i]);
    }
    if (e.quant.bias_correction && e.quant.weights.format != FormatId::fp32) {
      const Tensor& corrected = *simulated.initializer(simulated_node.inputs.at(2));
      (e.folded_batchnorm.empty() ? e.corrected_bias : e.folded_bias) = corrected;
    }
    e.rescaled = rescaled.count(layer.name) != 0;
    if (e.rescaled && e.folded_batchnorm.empty() && e.corrected_bias.empty() && node.has_input(2))
      e.equalized_bias = *graph.initializer(node.inputs[2]);
    const FormatTraits& a = format_traits(e.quant.activations.format);
    if (a.has_scale() && !e.quant.dynamic) {
      const std::string fake_quant = layer.name + "/input_quant";
      const Node& fq = *std::find_if(simulated.nodes.begin(), simulated.nodes.end(),
                                     [&](const Node& n) { return n.name == fake_quant; });
      e.input = {fq.attr_float("scale", 1.f), fq.attr_float("zero_point", 0.f)};
      const RangeObserver::Range& range = simulator.input_range(layer, e.quant);
      e.input_min = range.min;
      e.input_max = range.max;
    }
    rescaled.erase(layer.name);
    model.layers.push_back(std::move(e));
  }
  // What remains are rescaled layers the plan leaves in fp32.
  for (const auto& name : rescaled)
    model.rescaled_float_layers.push_back(rescaled_float_layer(original, graph, name, model_path));
  return model;
}

}  // namespace bitplan
