// The metrics a run is judged by: fidelity of a candidate's outputs against the fp32
// reference (any model), embedding quality (cosine to fp32, Spearman on scored pairs,
// nearest-centroid accuracy) and causal-LM next-token metrics (perplexity, KL to fp32).
// Plain functions on output rows, each with a hand-computed test in
// tests/unit/executor_metrics.cpp.
#pragma once

#include <cstdint>
#include <filesystem>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "core/metric_kind.hpp"
#include "core/tensor.hpp"

namespace bitplan {

struct EvalResult;  // executor/evaluate.hpp

inline constexpr double NAN_VALUE = std::numeric_limits<double>::quiet_NaN();

struct Fidelity {
  double top1_agreement = 0;  // fraction of samples whose argmax matches
  double kl_divergence = 0;   // mean KL(softmax(reference) || softmax(candidate)), nats
  double sqnr_db = 0;         // 10 log10(sum ref^2 / sum (ref - cand)^2); +inf when identical
  double cosine = 0;          // mean per-sample cosine similarity of the output rows
};

// `reference` and `candidate` are [samples, width] row-major.
Fidelity compare_outputs(std::span<const float> reference, std::span<const float> candidate,
                         std::int64_t width);

// The largest per-class top-1 drop (reference - candidate), in fractions; classes without
// samples are ignored.
double worst_class_drop(const EvalResult& reference, const EvalResult& candidate);

// ---- The configured metric (the run config's `metric:` section) ------------------------

struct MetricConfig {
  MetricKind kind = MetricKind::top1;
  bool kind_given = false;  // false: top1 with labels, fidelity without (resolved_metric)
  std::string output;       // the model output judged; empty: the first
  // embedding: int64 [P, 2] dataset row indices and float [P] similarity scores.
  std::filesystem::path pairs, scores;
  // perplexity: the integer input holding the tokens, and an optional 0/1 mask input whose
  // zero positions are not scored (the input need not exist: then every position counts).
  std::string tokens_input = "input_ids";
  std::string mask_input = "attention_mask";
};

// The kind a run uses: the configured one, else top1 with labels and fidelity without.
MetricKind resolved_metric(const MetricConfig& config, bool has_labels);

// ---- One run judged by the configured metric -------------------------------------------

// metric.pairs / metric.scores for the evaluated selection: each pair as positions in the
// selection (pairs with a row outside it are left out, and counted).
struct EmbeddingPairs {
  std::vector<std::int64_t> pairs;  // [P, 2] positions in the selection
  std::vector<float> scores;        // [P]
  std::int64_t left_out = 0;        // pairs naming a row the selection does not hold
};

// Reads metric.pairs (int64/int32 [P, 2] dataset row indices) and metric.scores (float [P]),
// checked: the error names the file, its dims and the rule; no pair within `selection` is an
// error too.
EmbeddingPairs load_embedding_pairs(const MetricConfig& config,
                                    std::span<const std::int64_t> selection,
                                    std::int64_t dataset_size);

// What a run measured under its metric; NaN where it does not apply.
struct MetricValues {
  MetricKind kind = MetricKind::top1;
  std::int64_t samples = 0;
  double top1 = NAN_VALUE, top5 = NAN_VALUE;  // top1 (labels)
  bool has_fidelity = false;                  // against a reference run
  Fidelity fidelity;
  double cosine_mean = NAN_VALUE, cosine_worst = NAN_VALUE;  // embedding, vs the reference
  double spearman = NAN_VALUE;                               // embedding with pairs
  std::int64_t pairs = 0;
  double centroid_accuracy = NAN_VALUE;  // embedding with labels
  double perplexity = NAN_VALUE;         // perplexity
  double next_token_kl = NAN_VALUE;      // perplexity, vs the reference's top-k distributions
  std::int64_t positions = 0;
};

// The values of `run` under `kind`; `reference` (the fp32 run, with its judged rows kept for
// fidelity and embedding) adds what compares with it. `labels` are the selection's labels
// (empty without), `pairs` the embedding pairs (or null).
MetricValues metric_values(MetricKind kind, const EvalResult& run, const EvalResult* reference,
                           std::span<const std::int64_t> labels, const EmbeddingPairs* pairs);

// ---- Embeddings ------------------------------------------------------------------------

struct CosineStats {
  double mean = 1, worst = 1;  // of the per-row cosine similarities
};
// Row-wise cosine similarity of `candidate` to `reference` ([rows, width] each). Two zero
// rows count as 1, one zero row as 0.
CosineStats row_cosines(std::span<const float> reference, std::span<const float> candidate,
                        std::int64_t width);

// Spearman's rank correlation of x and y (ties get their average rank); NaN when either
// is constant or there are fewer than two values.
double spearman(std::span<const double> x, std::span<const double> y);

// Spearman of cosine(embedding[a], embedding[b]) against `scores`, over the pairs (a, b) of
// `pairs` ([P, 2] row indices into `embeddings`, [rows, width]).
double pair_spearman(std::span<const float> embeddings, std::int64_t width,
                     std::span<const std::int64_t> pairs, std::span<const float> scores);

// Leave-one-out nearest-centroid accuracy: each row is assigned the class whose centroid
// (mean of the class's L2-normalised rows, without the row itself) has the highest cosine to
// it. A row alone in its class is scored against the other classes only (so it counts as
// wrong). NaN with fewer than two classes.
double nearest_centroid_accuracy(std::span<const float> embeddings, std::int64_t width,
                                 std::span<const std::int64_t> labels);

// ---- Causal language models -------------------------------------------------------------

// The fp32 reference's next-token distributions, compressed: at each scored position its k
// most probable tokens with their log-probabilities and the log of the mass outside them.
// A full reference of [N, T, V] floats is N*T*V*4 bytes (16 x 128 x 49152 = 400 MB); this
// keeps N*T*k*8 + N*T*4 bytes (k = 64: 1 MB for the same 16 x 128 positions). KL against it
// treats the tail as one outcome: KL(p || q) over {top k, rest}, which is a lower bound of
// the full KL (data-processing inequality) and equals it when the top k hold all the mass.
struct NextTokenReference {
  static constexpr std::int64_t kTopK = 64;
  std::int64_t k = 0;
  std::vector<std::int32_t> ids;  // [positions, k]
  std::vector<float> log_probs;   // [positions, k]
  std::vector<float> log_tail;    // [positions]: log(1 - sum of the top k), -inf when none
  std::int64_t positions() const { return static_cast<std::int64_t>(log_tail.size()); }
};

struct NextTokenStats {
  double nll_sum = 0;  // of -log q(token[t+1] | logits[t]) over the scored positions
  double kl_sum = 0;   // of KL(reference || this run) at the same positions
  std::int64_t positions = 0;
  double perplexity() const;
  double mean_nll() const;
  double mean_kl() const;
};

// Scores `n` sequences of logits [n, T, V] (row-major) against their `tokens` [n, T]: the
// logits at t predict token t+1, for t < T - 1 where `mask` (empty, or [n, T]) is non-zero
// at t+1. With `reference`, adds KL(reference || these logits) at each position, reading
// the reference's positions from `*reference_position` on (advanced); with `record`,
// appends these logits' top-k distributions to it. A token outside [0, V) fails naming it.
void add_next_token(std::span<const float> logits, std::span<const std::int64_t> tokens,
                    std::span<const std::int64_t> mask, std::int64_t n, std::int64_t steps,
                    std::int64_t vocabulary, NextTokenStats& stats,
                    const NextTokenReference* reference, std::int64_t* reference_position,
                    NextTokenReference* record);

}  // namespace bitplan
