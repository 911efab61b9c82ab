#include "executor/quant/methods.hpp"

#include <fmt/format.h>

#include <array>

#include "core/error.hpp"
#include "executor/quant/plan.hpp"

namespace bitplan {
namespace {

constexpr std::array<WeightMethodTraits, 5> kMethods = {{
    {WeightMethod::rtn, "rtn", 1, false, false, "round each weight to its nearest level"},
    {WeightMethod::gptq, "gptq", 1, true, false,
     "GPTQ: round column by column, compensating each error through the inverse Hessian of "
     "the layer's input"},
    {WeightMethod::awq, "awq", 1, true, true,
     "AWQ: scale each input channel's weights by a searched power of its mean input magnitude "
     "before rounding, and divide the layer's input by the same"},
    {WeightMethod::smoothquant, "smoothquant", 1, true, true,
     "SmoothQuant: divide the layer's input channels by s = max|x|^a / max|W|^(1-a) and "
     "multiply the weights' by it before quantizing both, a searched per layer"},
    {WeightMethod::adaround, "adaround", 1, true, false,
     "AdaRound: round each weight up or down, the choices learned together (soft rounding, "
     "Adam) to keep the layer's output on the calibration inputs through its input Hessian"},
}};

constexpr bool method_ids_pinned() {
  for (std::size_t i = 0; i < kMethods.size(); ++i)
    if (static_cast<std::size_t>(kMethods[i].id) != i) return false;
  return true;
}
static_assert(method_ids_pinned(), "weight method IDs are stored in caches: never renumber them");

}  // namespace

std::span<const WeightMethodTraits> weight_methods() {
  return kMethods;
}

const WeightMethodTraits& weight_method_traits(WeightMethod method) {
  const auto index = static_cast<std::size_t>(method);
  if (index >= kMethods.size())
    fail_input("reading a weight method: id {} is not a known method (a damaged plan or cache)",
               index);
  return kMethods[index];
}

std::optional<WeightMethod> weight_method_from_name(std::string_view name) {
  for (const auto& m : kMethods)
    if (m.name == name) return m.id;
  return std::nullopt;
}

WeightMethod parse_weight_method(std::string_view name, std::string_view action) {
  if (auto m = weight_method_from_name(name)) return *m;
  std::string names;
  for (const auto& m : kMethods) names += fmt::format("{}{}", names.empty() ? "" : ", ", m.name);
  fail_input("{}: unknown weight method '{}'; methods: {}", action, name, names);
}

std::optional<std::string> weight_method_refusal(WeightMethod method, const QuantSpec& spec) {
  const FormatTraits& f = format_traits(spec.format);
  // Weights that stay fp32 are not rounded: every method leaves them alone.
  if (method == WeightMethod::rtn || f.kind == FormatKind::none) return std::nullopt;
  if (f.kind != FormatKind::integer && f.kind != FormatKind::ternary)
    return fmt::format(
        "{} rounds onto a scaled integer grid fixed before rounding starts; '{}' is a {} "
        "format (use an integer format such as int4/group128/sym)",
        weight_method_traits(method).name, to_string(spec),
        f.kind == FormatKind::floating   ? "floating-point"
        : f.kind == FormatKind::codebook ? "codebook"
                                         : "power-of-two");
  return std::nullopt;
}

std::optional<std::string> method_activation_refusal(const LayerQuant& q) {
  const bool scaled_activations = format_traits(q.activations.format).has_scale();
  switch (q.method) {
    case WeightMethod::awq:
      if (!scaled_activations) return std::nullopt;
      return fmt::format(
          "awq is weight-only: it divides the layer's input by per-channel scales chosen for the "
          "weights alone, and activations '{}' would quantize that scaled input (use A16/A32 "
          "activations, or smoothquant for quantized ones)",
          to_string(q.activations));
    case WeightMethod::smoothquant:
      if (!scaled_activations)
        return fmt::format(
            "smoothquant moves the outliers of a quantized input into the weights; activations "
            "'{}' are not quantized with a scale (use A8 activations, or awq for weight-only "
            "layers)",
            to_string(q.activations));
      if (!q.dynamic && q.calibration != CalibrationMethod::minmax)
        return fmt::format(
            "smoothquant calibrates the smoothed input by its per-channel minima and maxima "
            "(minmax); {} calibration would need a second pass over the smoothed input (use "
            "calibration minmax or dynamic activations)",
            calibration_method_name(q.calibration));
      return std::nullopt;
    default:
      return std::nullopt;
  }
}

std::optional<std::string> weight_method_layer_refusal(WeightMethod method,
                                                       std::string_view op_type) {
  if (!weight_method_traits(method).scales_inputs || op_type == "Gemm" || op_type == "MatMul")
    return std::nullopt;
  return fmt::format(
      "{} scales the input channels of a linear layer (Gemm, MatMul); a {} reads each channel "
      "through a window, which bitplan does not scale",
      weight_method_traits(method).name, op_type);
}

std::optional<std::string> bias_correction_refusal(std::string_view op_type, float gemm_beta) {
  if (op_type == "Conv") return std::nullopt;
  if (op_type == "Gemm")
    return gemm_beta != 0 ? std::nullopt
                          : std::optional<std::string>(
                                "bias correction writes the Gemm's C input, which beta = 0 "
                                "ignores");
  return fmt::format(
      "bias correction writes the layer's bias input, which a {} does not have (Conv and Gemm "
      "do; a MatMul's bias is a separate Add)",
      op_type);
}

}  // namespace bitplan
