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
//     - {model_hash: ..., model: ..., batch: 1, other_us: 40.2, other_iqr_us: 1.0,
//        total_fp32_us: 512.0}
//
// Precision names: fp32, bf16, fp16, int8, fp8_e4m3, w4a16. A key/precision pair with
// `unsupported` has no kernel on the target; cost models never invent a latency for it.
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

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
  const ModelOverhead* find_model(const std::string& model_hash, std::int64_t batch) const;
  const Ceiling* find_ceiling(const std::string& name) const;
  // Replaces an entry with the same key and precision, or appends.
  void put(ProfileEntry entry);
  void put(ModelOverhead overhead);
};

// Reads a profile; errors name the file, line and column, the value and the rule
// (malformed YAML, missing fields, another schema version, unknown keys or precisions,
// negative times or repeats, keys that are not workload keys, an entry, ceiling,
// conversion or model given twice: docs/profiling.md).
HwProfile load_hw_profile(const std::filesystem::path& path);
// Writes atomically (temp + rename).
void save_hw_profile(const std::filesystem::path& path, const HwProfile& profile);

}  // namespace bitplan
