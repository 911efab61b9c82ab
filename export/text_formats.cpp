// The text exports: TensorRT layer precisions, ONNX Runtime's TensorQuantOverrides and the
// flat JSON dump (schemas in docs/export.md).
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/text.hpp"
#include "export/export.hpp"

namespace bitplan {
namespace {

using nlohmann::json;

std::string_view granularity_name(Granularity g) {
  switch (g) {
    case Granularity::per_tensor:
      return "tensor";
    case Granularity::per_channel:
      return "channel";
    case Granularity::per_group:
      return "group";
    case Granularity::per_token:
      return "token";
  }
  return "?";
}

// TensorRT's compute precision for a layer: its input's format (the weights are dequantized
// to it); integer activations are INT8 (export_problems admits no other).
std::string_view trt_precision(const ExportLayer& l) {
  switch (l.quant.activations.format) {
    case FormatId::int8:
      return "int8";
    case FormatId::fp8_e4m3:
      return "fp8";
    case FormatId::fp16:
      return "fp16";
    case FormatId::bf16:
      return "bf16";
    default:
      return "fp32";
  }
}

// onnxruntime.quantization.QuantType member names.
std::string ort_quant_type(const FormatTraits& f) {
  if (f.kind == FormatKind::floating) return "QFLOAT8E4M3FN";
  const int width = f.bits <= 4 ? 4 : f.bits <= 8 ? 8 : 16;
  return fmt::format("Q{}Int{}", f.is_signed ? "" : "U", width);
}

// Integer zero points as JSON integers (ONNX Runtime casts them to the quant type).
json zero_point_value(const FormatTraits& f, float zero_point) {
  return f.kind == FormatKind::integer ? json(static_cast<std::int64_t>(zero_point)) : json(0);
}

}  // namespace

std::string export_trt_precisions(const ExportModel& model) {
  // trtexec --layerPrecisions=<name>:<precision>,...: a name holding ',' or ':' or the
  // wildcard '*' would be read as something else.
  std::string spec;
  const auto add = [&](const std::string& name, std::string_view precision) {
    if (name.find_first_of(",:*") != std::string::npos)
      fail_unsupported(
          "exporting '{}' as trt-precisions: layer '{}' has ',', ':' or '*' in its name, which "
          "trtexec's --layerPrecisions list cannot hold; rename the ONNX node",
          model.model_path.string(), name);
    spec += fmt::format("{}{}:{}", spec.empty() ? "" : ",", name, precision);
  };
  for (const auto& l : model.layers) add(l.layer.name, trt_precision(l));
  for (const auto& name : model.float_layers) add(name, "fp32");
  return spec + "\n";
}

std::string export_ort_overrides(const ExportModel& model) {
  json overrides = json::object();
  // The overrides apply to the model file, which has none of equalization's rescaled weights.
  for (const auto& l : model.layers)
    if (l.rescaled)
      fail_unsupported(
          "exporting '{}' as ort-overrides: layer '{}' was quantized with cross-layer "
          "equalization's rescaled weights, which the model file does not have; export onnx-qdq",
          model.model_path.string(), l.layer.name);
  if (!model.rescaled_float_layers.empty() || !model.relu_outputs.empty())
    fail_unsupported(
        "exporting '{}' as ort-overrides: cross-layer equalization changed fp32 layers or "
        "ReLU6 activations the overrides cannot carry; export onnx-qdq",
        model.model_path.string());
  for (const auto& l : model.layers) {
    if (!l.folded_batchnorm.empty())
      fail_unsupported(
          "exporting '{}' as ort-overrides: layer '{}' was quantized with BatchNormalization "
          "'{}' folded into its weights, a tensor the model file does not have; fold it first "
          "(onnxruntime.quantization.quant_pre_process), or export onnx-qdq",
          model.model_path.string(), l.layer.name, l.folded_batchnorm);
    const FormatTraits& w = format_traits(l.weight_spec.format);
    const std::size_t slices = l.weight_params.scale.size();
    json weight = json::array();
    for (std::size_t k = 0; k < slices; ++k) {
      json entry = {{"scale", l.weight_params.scale[k]},
                    {"zero_point",
                     zero_point_value(
                         w, w.kind == FormatKind::integer ? l.weight_params.zero_point[k] : 0.f)}};
      if (k == 0) {
        entry["quant_type"] = ort_quant_type(w);
        if (l.weight_spec.granularity == Granularity::per_channel)
          entry["axis"] = l.weight_spec.axis;
      }
      weight.push_back(std::move(entry));
    }
    overrides[l.model_weight] = std::move(weight);
    const FormatTraits& a = format_traits(l.quant.activations.format);
    overrides[l.model_input] =
        json::array({{{"quant_type", ort_quant_type(a)},
                      {"scale", l.input.scale},
                      {"zero_point", zero_point_value(a, l.input.zero_point)}}});
  }
  return json_text(overrides, 2) + "\n";
}

std::string export_json(const ExportModel& model) {
  json layers = json::array();
  for (const auto& l : model.layers) {
    json entry = {{"name", l.layer.name}, {"op", l.layer.op_type}};
    const FormatTraits& w = format_traits(l.weight_spec.format);
    json weights = {{"tensor", l.model_weight}, {"spec", to_string(l.quant.weights)},
                    {"format", w.name},         {"format_id", static_cast<int>(w.id)},
                    {"bits", w.bits},           {"shape", l.weight.dims()}};
    if (!l.folded_batchnorm.empty()) weights["folded_batchnorm"] = l.folded_batchnorm;
    if (l.rescaled) weights["equalized"] = true;
    if (w.kind != FormatKind::none) {
      weights["granularity"] = granularity_name(l.weight_spec.granularity);
      if (l.weight_spec.granularity == Granularity::per_channel)
        weights["axis"] = l.weight_spec.axis;
      if (l.weight_spec.granularity == Granularity::per_group) {
        weights["axis"] = l.layer.reduction_axis;
        weights["block_size"] = l.weight_spec.group_size;
      }
      weights["symmetric"] = l.weight_spec.symmetric;
      weights["scale"] = l.weight_params.scale;
      weights["zero_point"] = l.weight_params.zero_point;
      weights["codebook"] = l.weight_params.codebook;
    }
    if (w.kind != FormatKind::none) {
      weights["method"] = weight_method_traits(l.quant.method).name;
      weights["bias_correction"] = l.quant.bias_correction;
    }
    entry["weights"] = std::move(weights);
    const FormatTraits& a = format_traits(l.quant.activations.format);
    json activations = {{"tensor", l.model_input}, {"spec", to_string(l.quant.activations)},
                        {"format", a.name},        {"format_id", static_cast<int>(a.id)},
                        {"bits", a.bits},          {"dynamic", l.quant.dynamic}};
    if (a.has_scale() && !l.quant.dynamic) {
      activations["calibration"] = calibration_method_name(l.quant.calibration);
      activations["range"] = {l.input_min, l.input_max};
      activations["scale"] = l.input.scale;
      activations["zero_point"] = l.input.zero_point;
    }
    if (a.kind == FormatKind::integer) {
      activations["qmin"] = a.qmin;
      activations["qmax"] = a.qmax;
    }
    // awq: the input is multiplied by these (1/s per input channel) before anything else.
    if (!l.input_scale.empty()) activations["input_multiplier"] = l.input_scale;
    entry["activations"] = std::move(activations);
    layers.push_back(std::move(entry));
  }
  json out = {{"bitplan_export", 1},
              {"bitplan_version", bitplan_version()},
              {"model", model.model_path.filename().string()},
              {"model_hash", model.model_hash},
              {"layers", layers},
              {"float_layers", model.float_layers}};
  if (model.equalized) {
    // The scales above are those of the equalized weights (onnx-qdq writes them).
    json rescaled = json::array();
    for (const auto& l : model.rescaled_float_layers) rescaled.push_back(l.name);
    out["cross_layer_equalization"] = {{"rescaled_float_layers", rescaled},
                                       {"relu6_replaced_outputs", model.relu_outputs}};
  }
  return json_text(out, 2) + "\n";
}

}  // namespace bitplan
