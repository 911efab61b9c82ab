// Weight quantization methods as data: how a layer's weights reach their grid. The spec
// (quantizer.hpp) says which grid; the method says how each weight picks its level:
//  * rtn   round to nearest, each weight on its own (the definition in formats.hpp);
//  * gptq  Frantar et al. 2022: the levels are chosen column by column along the reduction
//          axis, each column's rounding error pushed onto the columns not yet quantized
//          through the inverse Hessian of the layer's input (executor/quant/gptq.hpp);
//  * awq   Lin et al. 2023: each input channel's weights scaled by a power of its mean input
//          magnitude before rounding, the layer's input divided by the same (awq.hpp);
//  * smoothquant  Xiao et al. 2022: the same scaling chosen to move the input's outliers into
//          the weights, so a quantized input loses less (smoothquant.hpp);
//  * adaround  Nagel et al. 2020: each weight goes up or down to a neighbouring level, the
//          choices learned together (soft rounding, Adam) to keep the layer's output on the
//          calibration inputs, through the same input Hessian as GPTQ (adaround.hpp).
// A layer's option is spec + method ("W4g128A16:gptq"); plans store the method by name.
// Adding a method is one row here plus its function in QuantSimulator::quantized_weight.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "executor/quant/quantizer.hpp"

namespace bitplan {

// Stable IDs: caches and result databases key on them. Never renumber or reuse one.
enum class WeightMethod : std::uint8_t {
  rtn = 0,
  gptq = 1,
  awq = 2,
  smoothquant = 3,
  adaround = 4,
};

struct WeightMethodTraits {
  WeightMethod id;
  std::string_view name;  // the spelling in option labels ("W4A8:gptq") and plans
  // Bumped whenever the method computes different weights for the same input: part of every
  // cache key of its results.
  int version;
  bool needs_calibration;  // reads the layer's input activations on the calibration data
  // Divides the layer's input by a per-channel scale that the weights absorb (a Mul before
  // the layer in the simulation, the real execution and the exported model).
  bool scales_inputs;
  std::string_view summary;
};

std::span<const WeightMethodTraits> weight_methods();
const WeightMethodTraits& weight_method_traits(WeightMethod method);
std::optional<WeightMethod> weight_method_from_name(std::string_view name);
// weight_method_from_name that fails (invalid input) with "<action>: unknown weight method
// '<name>'; methods: rtn, gptq".
WeightMethod parse_weight_method(std::string_view name, std::string_view action);

// Why `method` cannot quantize a layer's weights under `spec` (the rule, for a message that
// names the layer), or nothing when it can. rtn takes every spec, and every method leaves
// fp32 weights alone; the others (gptq, adaround, awq, smoothquant) need a scaled integer grid
// (integer or ternary formats), whose levels are fixed before rounding starts.
std::optional<std::string> weight_method_refusal(WeightMethod method, const QuantSpec& spec);

// Why `q.method` cannot go with `q`'s activations (the rule), or nothing: awq is weight-only
// (a quantized input would be the scaled one, whose range it does not choose for);
// smoothquant needs quantized activations with a scale, and static ones calibrated by minmax
// (the scaled input's range follows exactly from per-channel minima and maxima; the other
// calibrations would need a second pass).
struct LayerQuant;
std::optional<std::string> method_activation_refusal(const LayerQuant& q);

// Why `method` cannot quantize a layer of type `op_type` (the rule), or nothing: a method
// that scales the layer's input (awq) takes Gemm and MatMul, whose input channels are the
// reduction axis (a Conv reads each channel through a window, which bitplan does not scale).
std::optional<std::string> weight_method_layer_refusal(WeightMethod method,
                                                       std::string_view op_type);

// Bias correction (Nagel et al. 2019, "Data-Free Quantization", section 4.2; the empirical
// variant): rounding the weights W to Q shifts every output's mean by (Q - W)·E[x], so the
// layer's bias absorbs the opposite, b' = b + (W - Q)·E[x], with E[x] the mean input vector
// (over the calibration data, exactly as the layer's dot products see it: hessian.hpp). It
// composes with any method ("W8A8:bc", "W4A8:gptq+bc"; plans: bias_correction: true).
// Why a layer cannot take it (its rule), or nothing: it needs a bias slot to write, i.e. a
// Conv, or a Gemm with beta != 0; a MatMul's bias is a separate Add node.
std::optional<std::string> bias_correction_refusal(std::string_view op_type, float gemm_beta);

}  // namespace bitplan
