// Deployment export: a plan, with the numbers bitplan's simulation used, written in the forms
// other runtimes take.
//
//   QuantSimulator + QuantPlan --prepare_export--> ExportModel (per layer: the weights the
//      |                                             simulation quantized, their codes and
//      |                                             parameters, the calibrated input scale)
//      |  export_problems(format)    layers a format cannot express, each with the nearest
//      |                             spec it can (the export refuses them: never a silently
//      v                             different model)
//   onnx-qdq         the original ONNX graph with QuantizeLinear/DequantizeLinear where the
//                    simulation quantizes, weights stored as codes (export/onnx_qdq.cpp)
//   trt-precisions   TensorRT per-layer precisions (--layerPrecisions), next to the QDQ model
//   ort-overrides    ONNX Runtime's TensorQuantOverrides JSON (onnxruntime.quantization)
//   json             every layer's specs, scales, zero points and codebooks, flat
//
// docs/export.md describes each format, the opset rules and what a runtime may round
// differently.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "executor/quant/equalize.hpp"
#include "executor/quant/simulate.hpp"

namespace bitplan {

enum class ExportFormat { onnx_qdq, trt_precisions, ort_overrides, json };

// "onnx-qdq", "trt-precisions", "ort-overrides", "json".
std::string_view export_format_name(ExportFormat format);
ExportFormat parse_export_format(std::string_view name);

// bitplan's version, as exported models record it.
std::string_view bitplan_version();

// One quantized layer exactly as the simulation computes it.
struct ExportLayer {
  QuantizableLayer layer;  // names in bitplan's simplified graph: node, weight and input
  // The layer's input and weight names in the model file (the import may rename them, e.g.
  // when it drops an Identity in front of the layer).
  std::string model_input, model_weight;
  LayerQuant quant;
  QuantSpec weight_spec;  // the plan's weight spec with this layer's channel axis
  // The float weights the simulation quantized: the model's own, or with a BatchNormalization
  // folded in when the import folded one into this layer (then `folded_batchnorm` names it
  // and `folded_bias` holds the folded bias).
  // With a method that scales the layer's input (awq), the weights with the scales absorbed
  // (the simulation's method_float_weight), and `input_scale` holds what the input is
  // multiplied by first, 1/s per input channel.
  Tensor weight;
  std::vector<float> input_scale;
  std::string folded_batchnorm;
  Tensor folded_bias;
  // Bias correction (executor/quant/bias_correction.hpp) without a folded BatchNormalization:
  // the corrected bias, written in place of the model's (with one, folded_bias holds it).
  Tensor corrected_bias;
  // Cross-layer equalization rescaled this layer (ExportModel::equalized): its bias from the
  // equalized graph, written in place of the model's (with a folded BatchNormalization or bias
  // correction, folded_bias / corrected_bias hold it), and with fp32 weights `weight` is
  // written too.
  bool rescaled = false;
  Tensor equalized_bias;
  QuantParams weight_params;
  // Per element, what the stored format holds, as a float: integer/ternary the code
  // (q = clamp(round(w / scale) + zero_point)), floating and pow2 the value on the format's
  // grid in units of the slice scale, codebook the entry index. Empty for fp32 weights.
  Tensor weight_codes;
  Tensor simulated_weight;  // the fake-quantized weights the simulation runs with
  // Static input quantization: the FakeQuant node's scale and zero point and the calibrated
  // range they come from (unset for dynamic or float activations).
  AffineParams input;
  float input_min = 0.f, input_max = 0.f;
};

struct ExportModel {
  std::filesystem::path model_path;  // the original ONNX file (the QDQ export rewrites it)
  std::string model_hash;
  QuantPlan plan;
  std::vector<ExportLayer> layers;        // quantized layers, in graph order
  std::vector<std::string> float_layers;  // quantizable layers the plan leaves in fp32
  // Cross-layer equalization (executor/quant/equalize.hpp) ran on the graph the simulation
  // uses: the layers it rescaled that the plan leaves in fp32, with their weights and bias as
  // the equalized graph holds them (BatchNormalization folded when the import folded one),
  // and the model file's values whose producer (a ReLU6 Clip) became a Relu.
  struct FloatLayer {
    std::string name;
    Tensor weight, bias;  // bias empty when the layer has none
    std::string folded_batchnorm;
  };
  bool equalized = false;
  std::vector<FloatLayer> rescaled_float_layers;
  std::vector<std::string> relu_outputs;
  // onnx-qdq: store int8-container weight codes as uint8 offset by 128 (zero point + 128):
  // the same values, but ONNX Runtime then runs its u8u8 integer kernels, which on x86 CPUs
  // without VNNI do not saturate 16-bit pair sums as its u8s8 kernels do (docs/export.md).
  bool uint8_weights = false;
};

// The plan's quantized layers with their parameters, from the simulator that evaluates the
// plan (so calibration, caches and weight rounding are the simulation's own). When the
// simulator's fp32 graph was equalized, `equalization` is the pass's report: the layers it
// names and the ReLU6 it replaced are written from the equalized graph (refused, naming the
// layer, where the model file has no node to carry the change).
ExportModel prepare_export(QuantSimulator& simulator, const QuantPlan& plan,
                           const std::filesystem::path& model_path,
                           const EqualizationReport* equalization = nullptr);

// A layer's spec that a format cannot express.
struct ExportProblem {
  std::string layer;
  std::string tensor;  // "weights" or "activations"
  std::string spec;    // as the plan writes it, " (dynamic)" added for dynamic ranges
  std::string why;
  QuantSpec nearest;             // the nearest spec the format expresses
  bool nearest_dynamic = false;  // activations: whether `nearest` keeps a run-time range
  // weights: the format cannot carry the plan's weight method or bias correction, so the
  // nearest plan rounds to nearest without correction.
  bool nearest_drops_method = false;
};
std::vector<ExportProblem> export_problems(const ExportModel& model, ExportFormat format);

// The plan with each problem's tensor given its nearest expressible spec.
QuantPlan nearest_expressible_plan(const QuantPlan& plan,
                                   const std::vector<ExportProblem>& problems);

// File contents of each format (the model must have no problems for that format).
std::string export_onnx_qdq(const ExportModel& model);
std::string export_trt_precisions(const ExportModel& model);
std::string export_ort_overrides(const ExportModel& model);
std::string export_json(const ExportModel& model);

// What `write_export` writes: the output itself and, for trt-precisions, the QDQ model next
// to it (same stem, ".onnx").
std::vector<std::filesystem::path> export_outputs(ExportFormat format,
                                                  const std::filesystem::path& output);

// Checks every output before anything is written (an existing file needs `overwrite`, the
// folder must exist and be writable), fails listing `export_problems` with their nearest
// specs, then writes each file atomically: a failed export leaves no partial file.
void write_export(const ExportModel& model, ExportFormat format,
                  const std::filesystem::path& output, bool overwrite);

}  // namespace bitplan
