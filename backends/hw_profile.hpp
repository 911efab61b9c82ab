// Hardware profiles (hw_profiles/<target>.yaml): measured layer latencies of one target.
//
//   bitplan_hw_profile: 1
//   target: "cpu-amd-epyc-2c"            # a name; the file name by convention
//   backend: onednn | cuda
//   device: {name: ..., ...}             # identity as found (model, ISA, cores / GPU, SMs...)
//   libraries: {onednn: 2.6.3, ...}
//   timing: {warmup_runs: 3, ...}        # how entries were measured
//   ceilings:                            # micro-benchmarks of the device's limits
//     - {name: gemm_fp32_gflops, value: 95.1, unit: GFLOP/s, how: "..."}
//   entries:                             # one per (workload key, precision)
//     - {key: "conv:n1:...", precision: int8, median_us: 12.5, iqr_us: 0.3, repeats: 200,
//        implementation: "..."}
//     - {key: "...", precision: bf16, unsupported: "why no kernel runs it here"}
//   conversions:                         # activation precision changes at layer boundaries
//     - {from: fp32, to: int8, elements: 802816, median_us: 3.2, iqr_us: 0.1}
//   models:                              # per-model time outside the quantizable layers
//     - {model_hash: ..., model: ..., batch: 1, inputs: "input_ids=128", other_us: 40.2,
//        other_iqr_us: 1.0, total_fp32_us: 512.0}
//
// Precision names: fp32, bf16, fp16, int8, int8_chained, fp8_e4m3, w4a16, w8a16 (int8_chained: the
// int8 layer between int8 layers, writing its reader's codes itself; on oneDNN and CUDA
// alike). A key/precision pair with
// `unsupported` has no kernel on the target; cost models never invent a latency for it.
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "executor/kernel_list.hpp"

namespace bitplan {

struct ProfileEntry {
  std::string key;
  std::string precision;
  double median_us = 0;
  double iqr_us = 0;
  int repeats = 0;
  std::string implementation;
  std::string unsupported;  // non-empty: no kernel, and why
};

struct ConversionEntry {
  std::string from, to;
  std::int64_t elements = 0;
  double median_us = 0, iqr_us = 0;
};

struct Ceiling {
  std::string name;
  double value = 0;
  std::string unit, how;
};

struct ModelOverhead {
  std::string model_hash, model;
  std::int64_t batch = 0;
  double other_us = 0, other_iqr_us = 0;  // whole run minus the quantizable layers
  double total_fp32_us = 0;               // the whole fp32 run, for reference
  // The inputs' dims after the batch axis it ran at (input_dims_text): a token model at
  // sequence 1 and at 128 is two entries. Empty in profiles written before it was recorded.
  std::string inputs;
};

struct HwProfile {
  static constexpr int kVersion = 1;
  std::string target, backend;
  std::map<std::string, std::string> device, libraries, timing;
  std::vector<Ceiling> ceilings;
  std::vector<ProfileEntry> entries;
  std::vector<ConversionEntry> conversions;
  std::vector<ModelOverhead> models;

  const ProfileEntry* find(const std::string& key, const std::string& precision) const;
  // The model's overhead at `batch` with inputs of `inputs` (input_dims_text of the graph).
  const ModelOverhead* find_model(const std::string& model_hash, std::int64_t batch,
                                  const std::string& inputs) const;
  const Ceiling* find_ceiling(const std::string& name) const;
  // Replaces an entry with the same key and precision, or appends.
  void put(ProfileEntry entry);
  void put(ModelOverhead overhead);
};

// What the profile's kernels ran on: its backend and, for oneDNN, the CPU capabilities it
// recorded (device.onednn_isa, then device.vnni: yes/no). A profile that records neither
// (written by hand or by a test) is taken at its entries' word: every capability on, and
// the entries say what ran.
KernelTarget kernel_target(const HwProfile& profile);

// How this machine's CPU differs from the one a oneDNN profile was measured on, one phrase
// per fact (model name, oneDNN ISA, logical cores), e.g. "ISA avx2, here avx512_core_vnni";
// empty when it is the same CPU (or the profile is not a oneDNN one). Thread counts are a
// setting, not an identity: compare profile.device["threads"] where they matter.
std::vector<std::string> cpu_differences_from_host(const HwProfile& profile);

// What a user applying `profile` (read from `where`) on this machine should know, one line
// each: that it was measured on another CPU (cpu_differences_from_host), that its timings
// are too noisy to rank plans by (assess_noise). Empty when neither.
std::vector<std::string> profile_warnings(const HwProfile& profile, const std::string& where);

// The name a profile of this CPU measured with `threads` threads gets by default, unique per
// identity: "cpu-<model>-<isa>-<cores>c-<threads>t" (lowercase, runs of other characters as
// one '-'), e.g. "cpu-amd-epyc-avx2-2c-2t".
std::string host_profile_name(int threads);

// Whether a profile's timings are steady enough to rank plans by. An entry is noisy when
// its interquartile range is at least half its median: then the run-to-run spread is as
// large as the differences between precisions the search chooses from (issue 11 reports a
// 2-thread profile on a busy 2-core machine with IQR >= median mispredicting a front).
struct ProfileNoise {
  static constexpr double kNoisyIqrRatio = 0.5;
  int measured = 0, noisy = 0;          // entries with a time, and those of them that are noisy
  const ProfileEntry* worst = nullptr;  // the largest IQR / median (points into the profile)
  bool too_noisy() const { return noisy > 0 && noisy * 10 >= measured; }  // >= 10 % noisy
  // One line: how many entries are noisy, the worst, and what fixes it; "" when steady.
  std::string summary() const;
};
ProfileNoise assess_noise(const HwProfile& profile);

// Reads a profile; errors name the file, line and column, the value and the rule
// (malformed YAML, missing fields, another schema version, unknown keys or precisions,
// negative times or repeats, keys that are not workload keys, an entry, ceiling,
// conversion or model given twice: docs/profiling.md).
HwProfile load_hw_profile(const std::filesystem::path& path);
// Writes atomically (temp + rename).
void save_hw_profile(const std::filesystem::path& path, const HwProfile& profile);

}  // namespace bitplan
