#include "executor/quant/plan.hpp"

#include <fmt/ranges.h>
#include <yaml-cpp/yaml.h>

#include <regex>
#include <set>

#include "core/files.hpp"
#include "core/hash.hpp"
#include "core/yaml_reader.hpp"

namespace bitplan {
namespace fs = std::filesystem;

std::vector<QuantizableLayer> quantizable_layers(const Graph& graph) {
  std::vector<QuantizableLayer> layers;
  for (const auto& node : graph.nodes) {
    if (!node.domain.empty() || node.inputs.size() < 2) continue;
    const Tensor* w = graph.initializer(node.inputs[1]);
    if (!w || w->dtype() != DType::f32 || w->rank() < 2) continue;
    QuantizableLayer layer{node.name, node.op_type, node.inputs[1], node.inputs[0], 0, 1};
    if (node.op_type == "Conv") {
      layer.channel_axis = 0;  // W [O, I/g, k...]: products run over I (and the window)
      layer.reduction_axis = 1;
      layer.input_reduction_axis = 1;  // X [N, C, ...]
    } else if (node.op_type == "ConvTranspose") {
      layer.channel_axis = 1;  // W [I, O/g, k...]
      layer.reduction_axis = 0;
      layer.input_reduction_axis = 1;
    } else if (node.op_type == "Gemm") {
      const bool transposed = node.attr_int("transB", 0) != 0;  // W [N, K] when transposed
      layer.channel_axis = transposed ? 0 : 1;
      layer.reduction_axis = transposed ? 1 : 0;
      layer.input_reduction_axis = node.attr_int("transA", 0) != 0 ? 0 : -1;  // A [K, M]/[M, K]
      layer.gemm_beta = node.attr_float("beta", 1.f);
    } else if (node.op_type == "MatMul" && w->rank() == 2) {
      layer.channel_axis = 1;  // B [K, N]
      layer.reduction_axis = 0;
      layer.input_reduction_axis = -1;  // A [..., K]
    } else {
      continue;
    }
    layers.push_back(std::move(layer));
  }
  return layers;
}

QuantSpec weight_spec_for(const QuantSpec& spec, const QuantizableLayer& layer) {
  QuantSpec s = spec;
  if (s.granularity == Granularity::per_channel) s.axis = layer.channel_axis;
  return s;
}

CalibrationMethod parse_calibration_method(std::string_view name) {
  for (auto m : {CalibrationMethod::minmax, CalibrationMethod::percentile, CalibrationMethod::mse,
                 CalibrationMethod::entropy})
    if (calibration_method_name(m) == name) return m;
  fail_input("calibration method '{}' is not one of minmax, percentile, mse, entropy", name);
}

LayerQuant uniform_layer_quant(std::string_view shorthand, CalibrationMethod calibration) {
  // W<bits>[g<group>][z][A<bits>[d|t]][:<method>[+bc] | :bc]; z: asymmetric weights (a zero
  // point per channel or group: all 2^bits levels, the grid of llama.cpp's Q4_1 and of GPTQ
  // with sym=False, where symmetric grids use 2^bits - 1)
  static const std::regex pattern(R"(W(\d+)(?:g(\d+))?(z)?(?:A(\d+)([dt])?)?)");
  std::cmatch m;
  std::string text(shorthand);
  LayerQuant q;
  q.calibration = calibration;
  if (const auto colon = text.find(':'); colon != std::string::npos) {
    std::string_view rest = std::string_view(text).substr(colon + 1);
    const bool only_bias_correction = rest == "bc";
    if (only_bias_correction || rest.ends_with("+bc")) {
      q.bias_correction = true;
      rest.remove_suffix(only_bias_correction ? 2 : 3);
    }
    if (!only_bias_correction)
      q.method = parse_weight_method(rest, fmt::format("uniform plan '{}'", shorthand));
    text.resize(colon);
  }
  if (text == "fp16" || text == "bf16") {  // weights and activations in the float format
    q.weights = q.activations = parse_quant_spec(text);
    if (auto why = weight_method_refusal(q.method, q.weights))
      fail_input("uniform plan '{}': {}", shorthand, *why);
    return q;
  }
  if (!std::regex_match(text.c_str(), m, pattern))
    fail_input(
        "uniform plan '{}' is not fp16, bf16 or of the form "
        "W<bits>[g<group>][z][A<bits>[d|t]][:<method>[+bc]|:bc] (e.g. W8A8, W4A16, W4g32A8, "
        "W8A8t, W4g128A16:gptq, W3g32z:gptq; z = asymmetric weights)",
        shorthand);
  const std::string wbits = m[1].str();
  const char* symmetry = m[3].matched ? "asym" : "sym";
  q.weights = parse_quant_spec(m[2].matched
                                   ? fmt::format("int{}/group{}/{}", wbits, m[2].str(), symmetry)
                                   : fmt::format("int{}/channel/{}", wbits, symmetry));
  if (m[4].matched) {
    const int abits = std::stoi(m[4].str());
    if (m[5].matched && (abits == 16 || abits == 32))
      fail_input(
          "uniform plan '{}': the suffix '{}' asks for run-time ranges, which A{} activations "
          "(float, no scale) do not have; d and t apply to A<bits> with bits <= 8",
          shorthand, m[5].str(), abits);
    const bool per_token = m[5].matched && m[5].str() == "t";
    if (abits == 16)
      q.activations = parse_quant_spec("fp16");
    else if (abits != 32)
      q.activations =
          parse_quant_spec(fmt::format("uint{}/{}/asym", abits, per_token ? "token" : "tensor"));
    q.dynamic = m[5].matched;
  }
  if (auto why = weight_method_refusal(q.method, q.weights))
    fail_input("uniform plan '{}': {}", shorthand, *why);
  if (auto why = method_activation_refusal(q)) fail_input("uniform plan '{}': {}", shorthand, *why);
  return q;
}

QuantPlan uniform_plan(std::string_view shorthand, const Graph& graph,
                       CalibrationMethod calibration) {
  const LayerQuant q = uniform_layer_quant(shorthand, calibration);
  QuantPlan plan;
  for (const auto& layer : quantizable_layers(graph)) {
    LayerQuant& entry = plan.layers[layer.name] = q;
    // Bias correction where the layer has a bias slot to write (Conv, Gemm with beta != 0).
    if (q.bias_correction)
      entry.bias_correction = !bias_correction_refusal(layer.op_type, layer.gemm_beta);
    // A method that applies to some layer types (awq: Gemm/MatMul) on those, rounding to
    // nearest elsewhere.
    if (weight_method_layer_refusal(q.method, layer.op_type)) entry.method = WeightMethod::rtn;
  }
  return plan;
}

namespace {

QuantSpec spec_at(const KeyValue& v) {
  if (!v.node.IsScalar())
    v.fail(fmt::format("{} must be a spec string like int8/channel/sym", v.name));
  try {
    return parse_quant_spec(v.node.Scalar());
  } catch (const Error& e) {
    v.fail(fmt::format("{}: {}", v.name, e.what()));
  }
}

constexpr KeyReader<LayerQuant> kLayerKeys[] = {
    {"weights", [](const KeyValue& v, LayerQuant& q) { q.weights = spec_at(v); }},
    {"activations", [](const KeyValue& v, LayerQuant& q) { q.activations = spec_at(v); }},
    {"dynamic",
     [](const KeyValue& v, LayerQuant& q) {
       try {
         q.dynamic = v.node.as<bool>();
       } catch (const YAML::Exception&) {
         v.fail(v.name + " must be true or false");
       }
     }},
    {"calibration",
     [](const KeyValue& v, LayerQuant& q) {
       if (!v.node.IsScalar()) v.fail(v.name + " must be a method name");
       try {
         q.calibration = parse_calibration_method(v.node.Scalar());
       } catch (const Error& e) {
         v.fail(e.what());
       }
     }},
    {"bias_correction",
     [](const KeyValue& v, LayerQuant& q) {
       try {
         q.bias_correction = v.node.as<bool>();
       } catch (const YAML::Exception&) {
         v.fail(v.name + " must be true or false");
       }
     }},
    {"method",
     [](const KeyValue& v, LayerQuant& q) {
       if (!v.node.IsScalar()) v.fail(v.name + " must be a weight method name such as gptq");
       try {
         q.method = parse_weight_method(v.node.Scalar(), v.name);
       } catch (const Error& e) {
         v.fail(e.what());
       }
     }},
};

// One layer entry: "fp32", or a mapping with weights / activations / dynamic / calibration
// that overrides `base`.
LayerQuant layer_at(const YamlFile& file, const YAML::Node& node, LayerQuant base,
                    const std::string& where) {
  if (node.IsScalar() && node.Scalar() == "fp32") return LayerQuant{};
  if (!node.IsMap())
    schema_error(file, node,
                 fmt::format("{} must be 'fp32' or a mapping with {}", where,
                             known_keys<LayerQuant>(kLayerKeys)));
  read_section(file, node, where, kLayerKeys, base);
  if (format_traits(base.activations.format).weights_only)
    schema_error(
        file, node,
        fmt::format("{}.activations '{}' is a weight-only format (its levels come from the "
                    "values themselves); activations take integer, fp8, fp16 or bf16 formats",
                    where, to_string(base.activations)));
  if (base.activations.format != FormatId::fp32 &&
      base.activations.granularity != Granularity::per_tensor &&
      base.activations.granularity != Granularity::per_token)
    schema_error(file, node,
                 fmt::format("{}.activations '{}' must be per tensor or per token (the layer's "
                             "input has no channel axis or groups of its own)",
                             where, to_string(base.activations)));
  if (base.activations.granularity == Granularity::per_token && !base.dynamic)
    schema_error(
        file, node,
        fmt::format("{}.activations '{}' is per token with a static range; per-token ranges are "
                    "taken from each batch at run time, so add 'dynamic: true' (or use "
                    "'{}' for a calibrated range)",
                    where, to_string(base.activations),
                    to_string(QuantSpec{base.activations.format, Granularity::per_tensor, 0, 0,
                                        base.activations.symmetric})));
  if (auto why = weight_method_refusal(base.method, base.weights))
    schema_error(
        file, node,
        fmt::format("{}.method '{}' with weights '{}': {}", where,
                    weight_method_traits(base.method).name, to_string(base.weights), *why));
  if (auto why = method_activation_refusal(base))
    schema_error(
        file, node,
        fmt::format("{}.method '{}' with activations '{}': {}", where,
                    weight_method_traits(base.method).name, to_string(base.activations), *why));
  if (base.weights.granularity == Granularity::per_token)
    schema_error(file, node,
                 fmt::format("{}.weights '{}': per token is an activation granularity; weights "
                             "take tensor, channel or group<size>",
                             where, to_string(base.weights)));
  return base;
}

// What reading a plan's keys needs (the model) and makes.
struct PlanReading {
  std::map<std::string, const QuantizableLayer*> layers;  // the model's, by name
  std::string_view model_hash;                            // the model's; empty: not checked
  QuantPlan plan;
  std::vector<std::string> unknown_layers;  // named by the plan, not quantizable in the model
};

constexpr KeyReader<PlanReading> kPlanKeys[] = {
    {"bitplan_plan",
     [](const KeyValue& v, PlanReading&) {
       int version = 0;
       try {
         version = v.node.as<int>();
       } catch (const YAML::Exception&) {
       }
       if (version != QuantPlan::kVersion)
         v.fail(
             fmt::format("plan schema version '{}' is not supported; this bitplan reads "
                         "version {}",
                         v.node.Scalar(), QuantPlan::kVersion));
     }},
    // The model's name, for people: layers are matched by name and checked by model_hash.
    {"model", [](const KeyValue&, PlanReading&) {}},
    {"model_hash",
     [](const KeyValue& v, PlanReading& r) {
       if (!v.node.IsScalar()) v.fail("model_hash must be a hash like 5f0cdeadbeef0123");
       r.plan.model_hash = v.node.Scalar();
       if (!r.plan.model_hash.empty() && !r.model_hash.empty() && r.plan.model_hash != r.model_hash)
         fail_input(
             "plan '{}' was made for another model (model_hash {}, this model's is {}); plans "
             "map layers by name and would not mean the same here",
             v.file.path().string(), r.plan.model_hash, r.model_hash);
     }},
    {"defaults",
     [](const KeyValue& v, PlanReading& r) {
       const LayerQuant base = layer_at(v.file, v.node, LayerQuant{}, v.name);
       for (const auto& [name, layer] : r.layers) r.plan.layers[name] = base;
     }},
    {"layers",
     [](const KeyValue& v, PlanReading& r) {
       if (!v.node.IsMap()) v.fail("layers must map layer names to specs");
       // A layer listed twice was refused when the file was read (a repeated key). Entries
       // override the defaults, read before them.
       for (const auto& kv : v.node) {
         const std::string& name = kv.first.Scalar();
         if (!r.layers.count(name)) {
           r.unknown_layers.push_back(name);
           continue;
         }
         const auto it = r.plan.layers.find(name);
         r.plan.layers[name] = layer_at(
             v.file, kv.second, it == r.plan.layers.end() ? LayerQuant{} : it->second, name);
       }
     }},
};

QuantPlan read_plan(const YamlFile& file, const Graph& graph, std::string_view model_hash) {
  const fs::path& path = file.path();
  const YAML::Node& root = file.root();
  if (!root.IsMap()) fail_input("plan '{}': the top level must be a mapping", path.string());
  if (!root["bitplan_plan"])
    fail_input("plan '{}': 'bitplan_plan: {}' (the schema version) is required", path.string(),
               QuantPlan::kVersion);
  const auto layers = quantizable_layers(graph);
  PlanReading reading;
  reading.model_hash = model_hash;
  for (const auto& l : layers) reading.layers[l.name] = &l;
  read_section(file, root, "", kPlanKeys, reading);
  if (!reading.unknown_layers.empty()) {
    std::vector<std::string> valid;
    for (const auto& l : layers) valid.push_back(l.name);
    fail_input(
        "plan '{}' names {} layer(s) that are not quantizable layers of model '{}': {}; "
        "quantizable layers "
        "are: {}",
        path.string(), reading.unknown_layers.size(), graph.name,
        fmt::join(reading.unknown_layers, ", "), fmt::join(valid, ", "));
  }
  std::erase_if(reading.plan.layers, [](const auto& kv) { return !kv.second.quantized(); });
  return reading.plan;
}

}  // namespace

QuantPlan load_plan(const fs::path& path, const Graph& graph, std::string_view model_hash) {
  return read_plan(YamlFile::load(path, "plan", std::uint64_t{64} << 20), graph, model_hash);
}

QuantPlan parse_plan(const std::string& text, const fs::path& path, const Graph& graph,
                     std::string_view model_hash) {
  return read_plan(YamlFile::parse(text, path, "plan"), graph, model_hash);
}

std::string plan_to_yaml(const QuantPlan& plan) {
  YAML::Emitter out;
  out << YAML::BeginMap << YAML::Key << "bitplan_plan" << YAML::Value << QuantPlan::kVersion;
  if (!plan.model_hash.empty()) out << YAML::Key << "model_hash" << YAML::Value << plan.model_hash;
  out << YAML::Key << "layers" << YAML::Value << YAML::BeginMap;
  for (const auto& [name, q] : plan.layers) {
    out << YAML::Key << name << YAML::Value << YAML::Flow << YAML::BeginMap;
    out << YAML::Key << "weights" << YAML::Value << to_string(q.weights);
    out << YAML::Key << "activations" << YAML::Value << to_string(q.activations);
    if (q.method != WeightMethod::rtn)
      out << YAML::Key << "method" << YAML::Value
          << std::string(weight_method_traits(q.method).name);
    if (q.bias_correction) out << YAML::Key << "bias_correction" << YAML::Value << true;
    if (q.activations.format != FormatId::fp32) {
      if (q.dynamic)
        out << YAML::Key << "dynamic" << YAML::Value << true;
      else
        out << YAML::Key << "calibration" << YAML::Value
            << std::string(calibration_method_name(q.calibration));
    }
    out << YAML::EndMap;
  }
  out << YAML::EndMap << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

void save_plan(const fs::path& path, const QuantPlan& plan) {
  write_file_atomic(path, plan_to_yaml(plan));
}

std::string model_file_hash(const fs::path& path) {
  return fnv1a64_hex(read_file(path, std::uint64_t{4} << 30, "ONNX model"));
}

}  // namespace bitplan
