// Quantization plans: which ONNX layer gets which weight and activation spec.
//
// A plan maps quantizable layers (Conv, ConvTranspose, Gemm and MatMul with a constant
// weight input; names are the ONNX node names) to a LayerQuant. Layers absent from the plan
// stay fp32. On disk a plan is YAML (docs/plans.md):
//
//   bitplan_plan: 1                        # schema version
//   model: fmnist_resnet.onnx              # optional, for the reader; not checked
//   model_hash: 5f0c...                    # fnv1a64 of the ONNX file; checked when present
//   defaults: {weights: int8/channel/sym, activations: uint8/tensor/asym, calibration: minmax}
//   layers:
//     /layer1/conv1/Conv: {weights: int4/group32/sym}
//     /fc/Gemm: fp32                       # keep this layer in float
//
// "channel" granularity always means the layer's output channels (the axis is set per
// layer: 0 for Conv/Gemm-transB weights, 1 for MatMul/Gemm weights [K, N]); groups run
// along the reduction axis. Activation specs quantize the layer's input activation, per
// tensor with a range from calibration (static) or from each batch (dynamic), or per token
// (uint8/token/asym: one range per row of the input, along all axes but the one products
// are summed over) with ranges from each batch, which needs dynamic: true.
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "executor/quant/calibration.hpp"
#include "executor/quant/methods.hpp"
#include "executor/quant/quantizer.hpp"
#include "ir/graph.hpp"

namespace bitplan {

struct LayerQuant {
  QuantSpec weights;      // fp32 = weights stay float
  QuantSpec activations;  // fp32 = input activation stays float
  bool dynamic = false;   // activation range from each batch instead of calibration
  CalibrationMethod calibration = CalibrationMethod::minmax;
  WeightMethod method = WeightMethod::rtn;  // how the weights reach their grid (methods.hpp)
  bool bias_correction = false;             // the bias absorbs the rounding's mean shift

  bool quantized() const {
    return weights.format != FormatId::fp32 || activations.format != FormatId::fp32;
  }
  // Specs compare by their canonical text (what plans and caches store).
  bool operator==(const LayerQuant& other) const {
    return to_string(weights) == to_string(other.weights) &&
           to_string(activations) == to_string(other.activations) && dynamic == other.dynamic &&
           calibration == other.calibration && method == other.method &&
           bias_correction == other.bias_correction;
  }
};

struct QuantPlan {
  static constexpr int kVersion = 1;
  std::string model_hash;                    // empty: not checked
  std::map<std::string, LayerQuant> layers;  // ONNX node name -> spec (absent = fp32)
};

// A layer the plan may quantize, with the facts every later step needs about it.
struct QuantizableLayer {
  std::string name;  // ONNX node name
  std::string op_type;
  std::string weight;      // initializer name
  std::string input;       // activation input
  int channel_axis = 0;    // output channels in the weight tensor
  int reduction_axis = 1;  // the axis products are summed over
  // The axis of the input activation that products are summed over (negative: from the
  // end): per-token activation ranges are taken over it. 1 for Conv/ConvTranspose [N, C, ...],
  // -1 for MatMul [..., K] and Gemm A [M, K], 0 for Gemm with transA (A is [K, M]).
  int input_reduction_axis = 1;
  float gemm_beta = 1.f;  // Gemm: the factor of its C (bias) input
};

std::vector<QuantizableLayer> quantizable_layers(const Graph& graph);

// The spec as applied to `layer`: per_channel gets the layer's channel axis.
QuantSpec weight_spec_for(const QuantSpec& spec, const QuantizableLayer& layer);

// Uniform plans in one word: "W8A8", "W4A16", "W4A8", "W8A16", "W4g32A8", "W8" (weights
// only), "W8A8d", "W8A8t"... W<b> = int<b>/channel/sym, W<b>g<G> = int<b>/group<G>/sym,
// A<b> (b <= 8) = uint<b>/tensor/asym with a calibrated range, A<b>d = the same with a range
// from each batch (dynamic), A<b>t = uint<b>/token/asym, a range per token from each batch;
// A16 = fp16, A32 or no A = float activations. A suffix ":<method>" picks the weight method
// and ":...+bc" adds bias correction (methods.hpp): "W4g128A16:gptq", "W8A8:bc", "W4A8:gptq+bc".
// Bias correction applies to the layers that can take it (bias_correction_refusal), and a
// method limited to some layer types ("W4g128:awq": Gemm/MatMul) to those, the others
// rounding to nearest (weight_method_layer_refusal).
QuantPlan uniform_plan(std::string_view shorthand, const Graph& graph,
                       CalibrationMethod calibration = CalibrationMethod::minmax);
// The one LayerQuant a shorthand stands for, before any layer's share of it.
LayerQuant uniform_layer_quant(std::string_view shorthand,
                               CalibrationMethod calibration = CalibrationMethod::minmax);

// YAML. load_plan checks the schema (errors name file, line, column), that every layer
// named exists and is quantizable (all wrong names listed at once), and the model hash when
// both sides have one.
QuantPlan load_plan(const std::filesystem::path& path, const Graph& graph,
                    std::string_view model_hash);
// The same for plan YAML in memory that stands for the file `path` (messages name it).
QuantPlan parse_plan(const std::string& text, const std::filesystem::path& path, const Graph& graph,
                     std::string_view model_hash);
std::string plan_to_yaml(const QuantPlan& plan);
void save_plan(const std::filesystem::path& path, const QuantPlan& plan);  // atomic

// Hash of a model file as plans and caches record it (fnv1a64 of the bytes).
std::string model_file_hash(const std::filesystem::path& path);

CalibrationMethod parse_calibration_method(std::string_view name);

}  // namespace bitplan
