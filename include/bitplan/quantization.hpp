// Quantization plans, and running a model under one with simulated quantization.
//
//   const auto plan = bitplan::QuantizationPlan::uniform(model, "W8A8");  // or load(model, file)
//   const bitplan::QuantizedModel quantized(model, plan, calibration_images);
//   const auto outputs = quantized.run(images);
//
// A plan says, per quantizable layer, how its weights and input activation are quantized
// (format, bits, granularity; docs/quantization.md); layers it does not name stay fp32.
// Simulated quantization runs the layers in float on fake-quantized values (quantize then
// dequantize), so it shows exactly the accuracy a plan costs on any CPU.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "bitplan/model.hpp"

namespace bitplan {

class BITPLAN_API QuantizationPlan {
 public:
  // No layer quantized: what costs of other plans compare against.
  static QuantizationPlan fp32(const Model& model);
  // Every quantizable layer alike, from a shorthand: "W8A8", "W4A16", "W4A8", "W8" (weights
  // only), "W4g32A8" (groups of 32), "W8A8d" (activation ranges from each batch), "W8A8t" (per
  // token), "fp16", "bf16". `calibration` picks how static activation ranges are calibrated:
  // "minmax", "percentile", "mse" or "entropy".
  static QuantizationPlan uniform(const Model& model, std::string_view shorthand,
                                  std::string_view calibration = "minmax");
  // A plan file (YAML, as `bitplan search` writes them); refused when it names a layer the
  // model does not have, or records the hash of another model file.
  static QuantizationPlan load(const Model& model, const std::filesystem::path& yaml_file);

  ~QuantizationPlan();
  QuantizationPlan(const QuantizationPlan&);
  QuantizationPlan& operator=(const QuantizationPlan&);
  QuantizationPlan(QuantizationPlan&&) noexcept;
  QuantizationPlan& operator=(QuantizationPlan&&) noexcept;

  // The layers the plan quantizes, by ONNX node name.
  std::vector<std::string> quantized_layers() const;
  // The plan as a plan file; save writes it atomically.
  std::string to_yaml() const;
  void save(const std::filesystem::path& yaml_file) const;

  struct Impl;  // the internal objects, defined in lib/library.cpp and opaque here

 private:
  explicit QuantizationPlan(std::shared_ptr<const Impl> impl);
  friend struct LibraryAccess;  // lets lib/library.cpp hand the internals between classes
  std::shared_ptr<const Impl> impl_;
};

// A model with a plan applied by simulated quantization, calibrated once at construction.
class BITPLAN_API QuantizedModel {
 public:
  // `calibration_samples` ([count, sample dims...], preprocessed like the inputs) give the
  // static activation ranges; a plan whose activations are float, dynamic ("W8A8d") or per
  // token needs none, and an empty FloatTensor then does. Calibration samples should come from
  // training data, not from the data the model is then judged on.
  QuantizedModel(const Model& model, const QuantizationPlan& plan,
                 const FloatTensor& calibration_samples = {});

  ~QuantizedModel();
  QuantizedModel(const QuantizedModel&);
  QuantizedModel& operator=(const QuantizedModel&);
  QuantizedModel(QuantizedModel&&) noexcept;
  QuantizedModel& operator=(QuantizedModel&&) noexcept;

  // As Model::run, with the plan's layers quantized. With calibration samples, the input's
  // sample dims must be theirs.
  std::vector<FloatTensor> run(const FloatTensor& input) const;

  struct Impl;  // the internal objects, defined in lib/library.cpp and opaque here

 private:
  std::shared_ptr<const Impl> impl_;
};

}  // namespace bitplan
