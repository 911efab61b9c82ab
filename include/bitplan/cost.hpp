// What a plan costs: model size, bit operations and latency on a target described by a
// hardware profile (hw_profiles/*.yaml, written by `bitplan profile`; docs/profiling.md).
//
//   const auto profile = bitplan::HardwareProfile::load("hw_profiles/cpu-amd-epyc-2t.yaml");
//   const bitplan::CostEstimate cost = bitplan::estimate_cost(model, plan, profile);
//   if (cost.latency_ms) ... *cost.latency_ms ...
//
// These are the same cost models `bitplan cost` and the search use: latency is the sum of the
// profile's measured per-layer times for the kernel each layer's spec runs on, the conversions
// between layers and the model's time outside its quantizable layers.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "bitplan/model.hpp"
#include "bitplan/quantization.hpp"

namespace bitplan {

class BITPLAN_API HardwareProfile {
 public:
  // Reads and checks a profile; errors name the file, line and column.
  static HardwareProfile load(const std::filesystem::path& yaml_file);

  ~HardwareProfile();
  HardwareProfile(const HardwareProfile&);
  HardwareProfile& operator=(const HardwareProfile&);
  HardwareProfile(HardwareProfile&&) noexcept;
  HardwareProfile& operator=(HardwareProfile&&) noexcept;

  const std::string& target() const;   // the profile's name for the machine
  const std::string& backend() const;  // "onednn" or "cuda"

  struct Impl;  // the internal objects, defined in lib/library.cpp and opaque here

 private:
  explicit HardwareProfile(std::shared_ptr<const Impl> impl);
  friend struct LibraryAccess;  // lets lib/library.cpp hand the internals between classes
  std::shared_ptr<const Impl> impl_;
};

struct CostEstimate {
  std::int64_t batch = 1;
  double size_bytes = 0;  // the stored model: packed codes, scales, float initializers
  double gbops = 0;       // bit operations: MACs x weight bits x activation bits, in 10^9
  // The predicted latency of one batch; empty when some layer's spec has no kernel on the
  // target (unsupported_layers says which and why).
  std::optional<double> latency_ms;
  // Layers whose shape the profile did not measure, estimated from its ceilings (roofline).
  int estimated_layers = 0;
  std::vector<std::pair<std::string, std::string>> unsupported_layers;  // layer, reason
};

// The cost of `plan` on `profile`'s target for batches of `batch` samples. The model's free
// dimensions other than the batch must be fixed (the model is planned to find layer shapes).
BITPLAN_API CostEstimate estimate_cost(const Model& model, const QuantizationPlan& plan,
                                       const HardwareProfile& profile, std::int64_t batch = 1);

}  // namespace bitplan
