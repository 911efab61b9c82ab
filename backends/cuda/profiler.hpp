// The CUDA latency profiler: measures every (layer key, precision) of some workloads files
// on one GPU and writes a hardware profile (schema version 1 as JSON text, which bitplan reads
// as YAML: profile_file.hpp, docs/cuda_backend.md); also runs "layer sequence" chains for
// validating cost models.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "backends/cuda/precision.hpp"
#include "backends/cuda/runtime.hpp"

namespace bitplan::cuda {

struct ProfileOptions {
  std::vector<std::string> workloads;  // workloads JSON files
  std::string out;                     // profile file; an existing one is merged into
  std::vector<Precision> precisions;   // empty: each file's own list
  std::string target;                  // empty: derived from the device name
  TimingOptions timing;
  bool ceilings = true;
  std::function<void(const std::string&)> log;  // progress lines (may be empty)
};

// Measures what the existing profile (if any) lacks and rewrites it. Returns the number of
// new measurements.
int run_profile(GpuContext& gpu, const ProfileOptions& options);

struct ChainOptions {
  // plans JSON: [{"name", "layers": [{"key", "precision"}]}] or {"plans": [...]}; a key may
  // also name one of the model's other ops (workloads.hpp, op keys), its precision then the
  // float type it runs in.
  std::string plans;
  // Workloads files run as whole models: each file's layers and other ops in execution order,
  // once per precision of `model_precisions` (every layer at it, the ops in the float type
  // the layer before them writes).
  std::vector<std::string> model_workloads;
  std::vector<Precision> model_precisions;
  std::string out;  // results JSON
  TimingOptions timing;
  std::function<void(const std::string&)> log;
};

// Runs each plan's layers (and the models of `model_workloads`) back to back in one stream,
// with a conversion kernel between steps whose output and input element types differ, and
// writes the measured totals.
void run_chains(GpuContext& gpu, const ChainOptions& options);

// Target name for a device: "nvidia-h100-80gb-hbm3" from "NVIDIA H100 80GB HBM3".
std::string target_name(const std::string& device_name);

}  // namespace bitplan::cuda
