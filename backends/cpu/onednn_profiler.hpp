// The oneDNN CPU latency backend: measures the per-layer latencies a hardware profile holds.
//
// Layers are timed in their real context: the model is planned once per (batch, precision)
// with the executor's own kernels (the ones `bitplan evaluate` runs), then run repeatedly
// with per-step timestamps (ExecutionPlan::run_timed). Each quantizable layer's samples give
// its entry; identical workloads (same key) pool their samples; the remaining steps give the
// model's overhead. Precisions:
//   fp32 - oneDNN fp32 convolution / matmul;
//   int8 - bitplan::Int8Conv / Int8MatMul: u8 (or s8) activations quantized inside the step,
//          s8 weights, s32 accumulation, per-channel scales, fp32 output - so the step's time
//          includes the activation conversion at its boundary;
//   bf16 - probed: oneDNN 2.6 creates bf16 primitives only on AVX-512 (avx512_core) and newer;
//          where it cannot, every entry says so.
// A layer the int8 kernels refuse (e.g. ConvTranspose) gets an `unsupported` entry with the
// reason the executor gives.
#pragma once

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "backends/hw_profile.hpp"
#include "core/timing_stats.hpp"
#include "executor/quant/plan.hpp"
#include "ir/graph.hpp"

namespace bitplan {

struct CalibrationData;  // executor/quant/simulate.hpp

struct CpuProfileOptions {
  std::vector<std::int64_t> batches{1};
  std::vector<std::string> precisions{"fp32", "int8", "bf16", "w4a32",
                                      "w4a8", "w3a8", "w2a8", "w8a8"};
  int warmup_runs = 3;
  int min_repeats = 15;
  double budget_seconds = 1.5;  // per (batch, precision): repeats until spent
  bool remeasure = false;       // false: (model, batch, precision) already complete are skipped
  // Samples the integer and low-bit plans take their static activation ranges from while
  // they are timed (the run config's calibration selection). Timing does not depend on the
  // ranges, but a model whose input is not one float tensor (token ids, several inputs) has
  // no random samples that are valid input: without this, its int8, bf16 and low-bit
  // entries are recorded as unsupported with that reason.
  const CalibrationData* calibration = nullptr;
};

// The profile of this CPU at `path`, measured with this process's thread count, or a new one
// named `target` when there is no file: a profile of another backend, CPU (name, ISA, cores:
// cpu_differences_from_host) or thread count is refused, never extended - its entries and
// ceilings would stay under this CPU's header.
// `chooser` names what picks the file in messages ("--out").
HwProfile open_host_profile(const std::filesystem::path& path, const std::string& target,
                            const std::string& chooser);

// What every model of a CPU profile shares: describes this CPU (describe_cpu_target) and
// measures its ceilings where the profile has none, or again on options.remeasure.
void prepare_host_profile(HwProfile& profile, const CpuProfileOptions& options,
                          const std::function<void(const std::string&)>& progress = {});

// Fills device, libraries and timing of a fresh CPU profile.
void describe_cpu_target(HwProfile& profile, const CpuProfileOptions& options);

// Peak fp32 and int8 GEMM throughput (oneDNN matmul, 1024^3) and memory bandwidth.
void measure_cpu_ceilings(HwProfile& profile);

// Measures what `profile` lacks for `graph` (an imported, simplified model).
void profile_model_onednn(const Graph& graph, const std::string& model_name,
                          const std::string& model_hash, const CpuProfileOptions& options,
                          HwProfile& profile,
                          const std::function<void(const std::string&)>& progress = {});

// End-to-end latency (microseconds, median and IQR of whole runs) of `graph` under `plan` on
// the executor's kernels - int8 where a layer allows it - for checking cost models against
// reality. Activation scales come from random calibration samples (latency does not depend
// on them).
Spread measure_plan_onednn(const Graph& graph, const std::string& model_hash, const QuantPlan& plan,
                           std::int64_t batch, const CpuProfileOptions& options);
// The same for several plans, measured round-robin (one run of each in turn), so that a
// change in machine load affects every plan alike.
std::vector<Spread> measure_plans_onednn(const Graph& graph, const std::string& model_hash,
                                         const std::vector<QuantPlan>& plans, std::int64_t batch,
                                         const CpuProfileOptions& options);

// --validate's measurement: the plans' end-to-end latencies and, in the same interleaved
// session (when `retime_entries`), the model's fp32 and int8 layer entries and overhead,
// written to `fresh`. Predictions from `fresh` then test the cost model itself - sums of
// layers, mixed precisions, the overhead - under the load the plans ran in, which drifts on
// a shared machine between profiling and validation.
std::vector<Spread> validate_plans_onednn(const Graph& graph, const std::string& model_name,
                                          const std::string& model_hash,
                                          const std::vector<QuantPlan>& plans, std::int64_t batch,
                                          const CpuProfileOptions& options, HwProfile& fresh,
                                          bool retime_entries = true);

// Precisions the CPU backend knows, for validating --precisions.
const std::vector<std::string>& onednn_precisions();

}  // namespace bitplan
