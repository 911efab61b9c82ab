// Which specs each export format can express, and the nearest one it can where it cannot.
// "Nearest" keeps what matters most for size and speed: the bit width and, where the format
// allows, the granularity; it changes the rounding rule or the range source only.
#include <fmt/format.h>

#include <optional>

#include "export/export.hpp"

namespace bitplan {
namespace {

struct Refusal {
  std::string why;
  QuantSpec nearest;
  bool nearest_dynamic = false;       // activations: `nearest` keeps a run-time range
  bool nearest_drops_method = false;  // weights: the nearest plan rounds to nearest
};
using Verdict = std::optional<Refusal>;

QuantSpec spec(std::string_view text) {
  return parse_quant_spec(text);
}

// "tensor" / "channel" of `s`, with groups widened to channels (for formats without blocks).
std::string tensor_or_channel(const QuantSpec& s) {
  return s.granularity == Granularity::per_tensor ? "tensor" : "channel";
}

// `s` with one range for the whole tensor: what a per-token spec becomes where no operator
// takes a range per token.
QuantSpec per_tensor(const QuantSpec& s) {
  QuantSpec out = s;
  out.granularity = Granularity::per_tensor;
  return out;
}

// For runtimes with calibrated ranges only: the nearest static spec to a dynamic one is its
// per-tensor form, or what `rules` make of that when they cannot express it either.
QuantSpec nearest_static(const LayerQuant& q, Verdict (*rules)(const LayerQuant&)) {
  LayerQuant fixed = q;
  fixed.activations = per_tensor(q.activations);
  fixed.dynamic = false;
  const Verdict v = rules(fixed);
  return v ? v->nearest : fixed.activations;
}

// The signed symmetric integer grid of `bits` bits with the spec's granularity.
QuantSpec signed_grid(int bits, const QuantSpec& s, bool keep_groups) {
  QuantSpec out = s;
  out.format = *format_from_name(fmt::format("int{}", bits));
  out.symmetric = true;
  if (!keep_groups && out.granularity == Granularity::per_group) {
    out.granularity = Granularity::per_channel;
    out.axis = 0;
  }
  return out;
}

// Weight formats no uniform grid or float type holds, for every format but json.
Verdict non_uniform_weights(const QuantSpec& s) {
  const FormatTraits& f = format_traits(s.format);
  if (f.kind == FormatKind::codebook)
    return Refusal{fmt::format("{} levels are a k-means codebook, not an affine grid; "
                               "DequantizeLinear computes (q - zero_point) * scale",
                               f.name),
                   spec(fmt::format("int{}/{}/sym", f.bits, tensor_or_channel(s)))};
  if (s.format == FormatId::fp4_e2m1)
    return Refusal{
        "fp4_e2m1 (FLOAT4E2M1) needs ONNX opset 23, beyond the opset 21 this export "
        "writes and ONNX Runtime's CPU QDQ kernels",
        spec("int4/group32/sym")};
  return std::nullopt;
}

// ------------------------------------------------------------------ onnx-qdq

Verdict qdq_weights(const QuantSpec& s) {
  return non_uniform_weights(s);
}

Verdict qdq_activations(const LayerQuant& q) {
  // Dynamic per-tensor uint8 asym is DynamicQuantizeLinear; the nearest to a per-token spec
  // keeps the run-time range where that op can (uint8 asym), else the calibrated one.
  if (q.activations.granularity == Granularity::per_token) {
    const QuantSpec nearest = per_tensor(q.activations);
    return Refusal{
        "ONNX has no per-token dynamic quantization: DynamicQuantizeLinear computes "
        "one uint8 scale and zero point for the whole tensor",
        nearest, to_string(nearest) == "uint8/tensor/asym"};
  }
  if (q.dynamic && to_string(q.activations) != "uint8/tensor/asym")
    return Refusal{"ONNX's DynamicQuantizeLinear computes uint8 asymmetric parameters only",
                   q.activations};
  return std::nullopt;
}

// ------------------------------------------------------------------ trt-precisions
// TensorRT's explicit quantization: symmetric signed Q/DQ (zero point 0); INT8 and FP8
// (E4M3) per tensor or per channel; INT4 only for weights of layers with float activations
// (weight-only), with per-channel or block-wise scales.

Verdict trt_weights(const LayerQuant& q) {
  const QuantSpec& s = q.weights;
  if (auto v = non_uniform_weights(s)) return v;
  const FormatTraits& f = format_traits(s.format);
  const bool float_inputs = !format_traits(q.activations.format).has_scale();
  switch (f.kind) {
    case FormatKind::integer:
    case FormatKind::ternary: {
      const int bits = f.kind == FormatKind::ternary ? 2 : f.bits;
      if (!f.is_signed || !s.symmetric)
        return Refusal{"TensorRT's quantization takes zero points of 0 (symmetric signed) only",
                       signed_grid(std::min(bits, 8), s, bits <= 4 && float_inputs)};
      if (bits > 8)
        return Refusal{"TensorRT has no 16-bit integer quantization", signed_grid(8, s, false)};
      if (bits <= 4 && !float_inputs)
        return Refusal{"TensorRT runs INT4 weights only in weight-only layers (float inputs)",
                       signed_grid(8, s, false)};
      if (bits > 4 && s.granularity == Granularity::per_group)
        return Refusal{"TensorRT takes block-wise scales for INT4 weights only",
                       signed_grid(bits, s, false)};
      return std::nullopt;
    }
    case FormatKind::floating:
    case FormatKind::pow2:
      if (!f.has_scale()) return std::nullopt;  // fp16, bf16
      if (s.format == FormatId::fp8_e5m2)
        return Refusal{"TensorRT's FP8 is E4M3",
                       spec(fmt::format("fp8_e4m3/{}", tensor_or_channel(s)))};
      if (s.granularity == Granularity::per_group)
        return Refusal{"TensorRT takes FP8 scales per tensor or per channel",
                       spec("fp8_e4m3/channel")};
      return std::nullopt;
    default:
      return std::nullopt;
  }
}

Verdict trt_activations(const LayerQuant& q) {
  const QuantSpec& s = q.activations;
  const FormatTraits& f = format_traits(s.format);
  if (!f.has_scale()) return std::nullopt;
  if (q.dynamic)
    return Refusal{"TensorRT's Q/DQ scales are static", nearest_static(q, trt_activations)};
  if (s.format == FormatId::int8 && s.symmetric) return std::nullopt;
  if (s.format == FormatId::fp8_e4m3) return std::nullopt;
  if (s.format == FormatId::fp8_e5m2)
    return Refusal{"TensorRT's FP8 is E4M3", spec("fp8_e4m3/tensor")};
  return Refusal{"TensorRT quantizes activations to symmetric INT8 (zero point 0) or FP8 E4M3",
                 spec("int8/tensor/sym")};
}

// ------------------------------------------------------------------ ort-overrides
// onnxruntime.quantization's QDQ quantizer takes, per tensor, a QuantType (int4/uint4,
// int8/uint8, int16/uint16, float8 E4M3FN) with a given scale and zero point, per tensor
// or per channel (axis), and computes the weight codes itself: round(w / scale) + zp,
// saturated to the whole type.

Verdict ort_weights(const LayerQuant& q) {
  const QuantSpec& s = q.weights;
  if (auto v = non_uniform_weights(s)) return v;
  const FormatTraits& f = format_traits(s.format);
  if (f.kind == FormatKind::none)
    return format_traits(q.activations.format).has_scale()
               ? Verdict(Refusal{"onnxruntime.quantization quantizes a Conv/Gemm/MatMul's weights "
                                 "together with its input",
                                 spec("int8/channel/sym")})
               : std::nullopt;
  const bool groups = s.granularity == Granularity::per_group;
  if (groups && f.has_scale())
    return Refusal{
        "TensorQuantOverrides take per-tensor or per-channel (axis) parameters; "
        "block-wise weights go through ONNX Runtime's MatMulNBits tools instead",
        signed_grid(f.kind == FormatKind::integer ? f.bits : 4, s, false)};
  switch (f.kind) {
    case FormatKind::integer:
      // A symmetric grid's codes never exceed ±(2^(b-1) - 1) (scale = max|w| / that), so any
      // width fits the next container; an asymmetric narrow grid can round one step past its
      // range, which the simulation clamps and ONNX Runtime would not.
      if (f.bits == 4 || f.bits == 8 || f.bits == 16 || s.symmetric) return std::nullopt;
      return Refusal{fmt::format("{} asymmetric codes are clamped to a narrower range than "
                                 "ONNX Runtime's int4/int8 types",
                                 f.name),
                     signed_grid(f.bits, s, false)};
    case FormatKind::ternary:
      return Refusal{
          "ONNX Runtime rounds weights onto the whole int4/int8 grid; ternary "
          "needs codes clamped to {-1, 0, 1}",
          signed_grid(4, s, false)};
    case FormatKind::pow2:
      return Refusal{"power-of-two levels are not an affine grid ONNX Runtime's quantizer fills",
                     signed_grid(f.bits, s, false)};
    case FormatKind::floating:
      if (s.format == FormatId::fp8_e4m3) return std::nullopt;
      if (s.format == FormatId::fp8_e5m2)
        return Refusal{"onnxruntime.quantization's float8 type is E4M3FN",
                       spec(fmt::format("fp8_e4m3/{}", tensor_or_channel(s)))};
      return Refusal{fmt::format("{} weights are a float conversion "
                                 "(onnxconverter_common.float16), not a quantization override",
                                 f.name),
                     spec("fp32")};
    default:
      return std::nullopt;
  }
}

// ONNX Runtime's quantizer computes the codes itself, by rounding to nearest, and keeps the
// model's bias and input: a weight method's other levels (gptq), a corrected bias or an
// input scaling (awq) would be lost. onnx-qdq writes them.
Verdict ort_weight_method(const LayerQuant& q) {
  const bool method = q.method != WeightMethod::rtn;
  if (q.weights.format == FormatId::fp32 || (!method && !q.bias_correction)) return std::nullopt;
  return Refusal{
      fmt::format("onnxruntime.quantization rounds the weights to nearest itself and keeps the "
                  "model's bias and input, so the plan's {} would be lost (onnx-qdq writes it)",
                  method && q.bias_correction ? fmt::format("{} weights and bias correction",
                                                            weight_method_traits(q.method).name)
                  : method ? fmt::format("{} weights", weight_method_traits(q.method).name)
                           : std::string("bias correction")),
      q.weights, false, true};
}

Verdict ort_activations(const LayerQuant& q) {
  const QuantSpec& s = q.activations;
  const FormatTraits& f = format_traits(s.format);
  const bool weights_quantized = q.weights.format != FormatId::fp32;
  if (f.kind == FormatKind::none)
    return weights_quantized
               ? Verdict(Refusal{"onnxruntime.quantization quantizes a layer's input together "
                                 "with its weights (weight-only layers go through its "
                                 "MatMulNBits tools)",
                                 spec("uint8/tensor/asym")})
               : std::nullopt;
  if (q.dynamic)
    return Refusal{"TensorQuantOverrides describe static quantization (quantize_static)",
                   nearest_static(q, ort_activations)};
  if (f.kind == FormatKind::floating && !f.has_scale())
    return Refusal{fmt::format("{} activations are a float conversion "
                               "(onnxconverter_common.float16), not a quantization override",
                               f.name),
                   spec(weights_quantized ? "uint8/tensor/asym" : "fp32")};
  if (s.format == FormatId::fp8_e4m3) return std::nullopt;
  if (s.format == FormatId::fp8_e5m2)
    return Refusal{"onnxruntime.quantization's float8 type is E4M3FN", spec("fp8_e4m3/tensor")};
  if (f.bits == 4 || f.bits == 8 || f.bits == 16) return std::nullopt;
  QuantSpec nearest = s;
  nearest.format = *format_from_name(fmt::format("{}int8", f.is_signed ? "" : "u"));
  return Refusal{fmt::format("ONNX Runtime's QuantizeLinear saturates to the whole int4/int8 "
                             "type; a {}-bit grid needs a clamp the quantizer does not insert",
                             f.bits),
                 nearest};
}

std::string spec_text(const LayerQuant& q, bool activations) {
  const std::string text = to_string(activations ? q.activations : q.weights);
  return activations && q.dynamic ? text + " (dynamic)" : text;
}

}  // namespace

std::vector<ExportProblem> export_problems(const ExportModel& model, ExportFormat format) {
  std::vector<ExportProblem> problems;
  std::map<std::string, const ExportLayer*> first_reader;  // tensor -> first layer quantizing it
  for (const auto& l : model.layers) {
    Verdict weights, activations;
    switch (format) {
      case ExportFormat::onnx_qdq:
        weights = qdq_weights(l.quant.weights);
        activations = qdq_activations(l.quant);
        break;
      case ExportFormat::trt_precisions:
        weights = trt_weights(l.quant);
        activations = trt_activations(l.quant);
        break;
      case ExportFormat::ort_overrides: {
        weights = ort_weights(l.quant);
        if (!weights) weights = ort_weight_method(l.quant);
        if (weights && l.quant.method != WeightMethod::rtn) weights->nearest_drops_method = true;
        if (weights && l.quant.bias_correction) weights->nearest_drops_method = true;
        activations = ort_activations(l.quant);
        // Overrides are per tensor name: layers sharing a tensor must quantize it alike.
        for (const auto& [tensor, is_activation] :
             {std::pair{l.layer.input, true}, std::pair{l.layer.weight, false}}) {
          const auto [it, first] = first_reader.emplace(tensor, &l);
          const LayerQuant& other = it->second->quant;
          const bool same = is_activation ? spec_text(other, true) == spec_text(l.quant, true) &&
                                                other.calibration == l.quant.calibration
                                          : to_string(other.weights) == to_string(l.quant.weights);
          Verdict& slot = is_activation ? activations : weights;
          if (!first && !same && !slot)
            slot = Refusal{
                fmt::format("tensor '{}' is also quantized by layer '{}' as {}; "
                            "overrides hold one quantization per tensor",
                            tensor, it->second->layer.name, spec_text(other, is_activation)),
                is_activation ? other.activations : other.weights};
        }
        break;
      }
      case ExportFormat::json:
        break;
    }
    if (weights)
      problems.push_back({l.layer.name, "weights", spec_text(l.quant, false), weights->why,
                          weights->nearest, false, weights->nearest_drops_method});
    if (activations)
      problems.push_back({l.layer.name, "activations", spec_text(l.quant, true), activations->why,
                          activations->nearest, activations->nearest_dynamic});
  }
  return problems;
}

QuantPlan nearest_expressible_plan(const QuantPlan& plan,
                                   const std::vector<ExportProblem>& problems) {
  QuantPlan out = plan;
  for (const auto& p : problems) {
    LayerQuant& q = out.layers.at(p.layer);
    if (p.tensor == "weights") {
      q.weights = p.nearest;
      if (p.nearest_drops_method) {
        q.method = WeightMethod::rtn;
        q.bias_correction = false;
      }
    } else {
      q.activations = p.nearest;
      q.dynamic = p.nearest_dynamic;
    }
  }
  return out;
}

}  // namespace bitplan
