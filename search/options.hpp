// What a search run is asked to do: the `search:` section of a run config (cli/run_config
// parses it; every field can be overridden with --set search.KEY=VALUE). Plain data.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace bitplan::search {

// Layers whose name matches `pattern` (ECMAScript regex, whole name) get `options`.
struct SpaceOverride {
  std::string pattern;
  std::vector<std::string> options;
};

struct SearchOptions {
  // Candidate specs per layer: "fp32" or uniform shorthands (W8A8, W4A8, W4g128A16, ...).
  std::vector<std::string> options{"fp32", "W8A8", "W4A8"};
  std::vector<SpaceOverride> overrides;
  std::vector<std::string> keep_fp32;  // regexes of layers that stay fp32
  // In this order (search/objectives.cpp): accuracy (1 - top-1), latency (ms), size (bytes),
  // bits_per_weight (the quantizable layers' weight storage per weight element), bops,
  // worst_class (largest per-class top-1 drop), kl (KL divergence to fp32; next-token KL for
  // the perplexity metric), perplexity, cosine (maximised). Without `objectives` in the
  // config, accuracy stands for the metric's own (quality_objective).
  std::vector<std::string> objectives{"accuracy", "latency", "size"};
  bool objectives_given = false;
  std::optional<double> max_latency_ms, max_size_mb, max_accuracy_drop, max_worst_class_drop;
  // Limits for the other metrics: perplexity increase in percent of fp32's, the lowest mean
  // cosine to fp32 (embedding), the largest KL to fp32 (next-token KL for perplexity).
  std::optional<double> max_perplexity_increase, min_cosine, max_kl;
  // The most bits per weight (PlanMetrics::bits_per_weight), > 0 and finite: a size limit
  // on the quantizable layers' weights alone, e.g. 4.0 for the llama.cpp / ExLlamaV2 question.
  std::optional<double> max_bits_per_weight;
  std::string policy = "nsga2";
  std::uint64_t seed = 1;
  std::int64_t population = 16;
  std::int64_t max_evaluations = 200;  // 0 = no limit
  double max_seconds = 0;              // 0 = no limit
  std::int64_t subset = 1000;          // validation samples per candidate
  std::int64_t sensitivity_subset = 500;
  std::int64_t final_samples = 0;  // re-evaluation of the front: 0 = the whole selection
  std::int64_t latency_batch = 1;  // batch size the latency is costed at
  // Token models: the sequence length the latency is costed and measured at (1: the shapes
  // of one decoding step, without a KV cache); 0: the data's.
  std::int64_t latency_sequence = 0;
  std::filesystem::path output;    // default results/<config name>
  std::filesystem::path database;  // default results/bitplan.sqlite beside the output
  // search.mpi.evaluation_timeout: under mpirun, the longest a worker rank may take over one
  // evaluation (or its setup) before the run fails naming it (0 = no limit: a hung rank
  // then hangs the job).
  double mpi_evaluation_timeout = 1800;
};

}  // namespace bitplan::search
