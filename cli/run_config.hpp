// The run configuration file (YAML). One plain struct per section, filled from the file and
// overridden by command-line flags. Later sections (plan, search, target) join here.
//
//   model: models/fmnist_resnet.onnx        # relative to this file's folder
//   dataset: { ... }                        # see data/dataset.hpp
//   evaluate: {batch: 64, threads: 0}       # 0 threads = all cores
//   target: ../hw_profiles/cpu.yaml         # hardware profile the latency comes from, or
//   target: host                            # this machine (profiled on first use, cached)
//   metric: {kind: perplexity}              # top1 | fidelity | embedding | perplexity
//   quantization: {equalize: true}          # cross-layer equalization of the fp32 model
//   search: { ... }                         # see SearchSection and docs/search.md
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "cli/values.hpp"
#include "data/dataset.hpp"
#include "executor/metrics.hpp"
#include "search/options.hpp"

namespace bitplan {

// The `target:` value naming this machine instead of a profile file.
inline constexpr std::string_view kHostTarget = "host";

struct EvaluateSection {
  std::int64_t batch = 64;
  int threads = 0;
  // Where `batch` was set (the config key or a flag), for the memory check once the model
  // is known; none for the default.
  std::optional<ValueOrigin> batch_origin;
};

// quantization: how the fp32 model is prepared before any plan quantizes it.
struct QuantizationSection {
  // Cross-layer equalization of the imported fp32 graph (executor/quant/equalize.hpp), before
  // calibration and simulation; caches and plans then key on the model hash + "+cle".
  bool equalize = false;
  // With equalize: ReLU6 between a pair becomes ReLU so the pair can be equalized (changes
  // the fp32 model; docs/quantization.md).
  bool relu6_to_relu = false;
};

struct RunConfig {
  std::filesystem::path source;  // the config file, for messages
  std::filesystem::path model;
  DatasetConfig dataset;
  bool has_dataset = false;
  EvaluateSection evaluate;
  QuantizationSection quantization;
  MetricConfig metric;           // `metric:`; kind_given false without one
  std::filesystem::path target;  // empty: none given (or `host`)
  bool target_is_host = false;   // `target: host`: a profile of this machine, see host_target
  search::SearchOptions search;
  bool has_search = false;
  // Where search.latency_batch was set, for the memory check once the model is known.
  std::optional<ValueOrigin> latency_batch_origin;
};

// Reads and validates a run config. YAML syntax and schema errors name the file, line and
// column; unknown keys are errors. `overrides` ("search.policy=random", "evaluate.batch=32")
// replace fields before validation, so a command-line override is checked like the file
// (its errors say "as changed by --set" instead of a line). Numbers follow cli/values.hpp's
// rules, the same as the flags that set them.
RunConfig load_run_config(const std::filesystem::path& path,
                          const std::vector<std::string>& overrides = {});

}  // namespace bitplan
