#include "executor/metrics.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "core/error.hpp"
#include "core/parallel.hpp"
#include "data/npy.hpp"
#include "executor/evaluate.hpp"

#include <fmt/format.h>

#include <unordered_map>

namespace bitplan {

Fidelity compare_outputs(std::span<const float> reference, std::span<const float> candidate,
                         std::int64_t width) {
  BITPLAN_ASSERT(reference.size() == candidate.size() && width > 0);
  const auto samples = static_cast<std::int64_t>(reference.size()) / width;
  Fidelity f;
  double signal = 0, noise = 0;
  std::int64_t agree = 0;
  for (std::int64_t s = 0; s < samples; ++s) {
    const float* r = reference.data() + s * width;
    const float* c = candidate.data() + s * width;
    agree += std::max_element(r, r + width) - r == std::max_element(c, c + width) - c;
    // Softmax in double from the row max (log-sum-exp), then KL = sum p (log p - log q).
    const double rmax = *std::max_element(r, r + width), cmax = *std::max_element(c, c + width);
    double rsum = 0, csum = 0;
    for (std::int64_t j = 0; j < width; ++j) {
      rsum += std::exp(r[j] - rmax);
      csum += std::exp(c[j] - cmax);
    }
    const double rlog = std::log(rsum), clog = std::log(csum);
    double kl = 0, dot = 0, rr = 0, cc = 0;
    for (std::int64_t j = 0; j < width; ++j) {
      const double log_p = r[j] - rmax - rlog, log_q = c[j] - cmax - clog;
      kl += std::exp(log_p) * (log_p - log_q);
      dot += static_cast<double>(r[j]) * c[j];
      rr += static_cast<double>(r[j]) * r[j];
      cc += static_cast<double>(c[j]) * c[j];
      signal += static_cast<double>(r[j]) * r[j];
      noise += (static_cast<double>(r[j]) - c[j]) * (static_cast<double>(r[j]) - c[j]);
    }
    f.kl_divergence += kl;
    f.cosine += (rr > 0 && cc > 0) ? dot / std::sqrt(rr * cc) : (rr == cc ? 1.0 : 0.0);
  }
  const double n = static_cast<double>(std::max<std::int64_t>(samples, 1));
  f.top1_agreement = static_cast<double>(agree) / n;
  f.kl_divergence /= n;
  f.cosine /= n;
  f.sqnr_db = noise > 0 ? 10 * std::log10(signal / noise) : std::numeric_limits<double>::infinity();
  return f;
}

double worst_class_drop(const EvalResult& reference, const EvalResult& candidate) {
  double worst = 0;
  for (std::size_t c = 0;
       c < reference.class_accuracy.size() && c < candidate.class_accuracy.size(); ++c)
    if (!std::isnan(reference.class_accuracy[c]) && !std::isnan(candidate.class_accuracy[c]))
      worst = std::max(worst, reference.class_accuracy[c] - candidate.class_accuracy[c]);
  return worst;
}

MetricKind resolved_metric(const MetricConfig& config, bool has_labels) {
  if (config.kind_given) return config.kind;
  return has_labels ? MetricKind::top1 : MetricKind::fidelity;
}

// ---- One run judged by the configured metric -------------------------------------------

EmbeddingPairs load_embedding_pairs(const MetricConfig& config,
                                    std::span<const std::int64_t> selection,
                                    std::int64_t dataset_size) {
  const Tensor pairs = read_npy(config.pairs);
  const Tensor scores = read_npy(config.scores);
  const std::string pairs_name = config.pairs.string(), scores_name = config.scores.string();
  if (pairs.rank() != 2 || pairs.dim(1) != 2 ||
      (pairs.dtype() != DType::i64 && pairs.dtype() != DType::i32))
    fail_input("metric.pairs '{}': {} {}: must be integer row indices [P, 2]", pairs_name,
               dtype_name(pairs.dtype()), to_string(pairs.dims()));
  if (scores.rank() != 1 || scores.dim(0) != pairs.dim(0) ||
      (scores.dtype() != DType::f32 && scores.dtype() != DType::f64))
    fail_input("metric.scores '{}': {} {}: must be float scores [P], one per pair of '{}' ({})",
               scores_name, dtype_name(scores.dtype()), to_string(scores.dims()), pairs_name,
               pairs.dim(0));
  std::unordered_map<std::int64_t, std::int64_t> position;
  for (std::size_t i = 0; i < selection.size(); ++i)
    position.emplace(selection[i], static_cast<std::int64_t>(i));
  const std::vector<std::int64_t> rows = pairs.to_int64_vector();
  const std::vector<double> values = scores.to_double_vector();
  EmbeddingPairs out;
  for (std::size_t p = 0; p < values.size(); ++p) {
    const std::int64_t a = rows[2 * p], b = rows[2 * p + 1];
    for (const std::int64_t row : {a, b})
      if (row < 0 || row >= dataset_size)
        fail_input("metric.pairs '{}': row {} of pair {}: must be in [0, {}), the dataset's rows",
                   pairs_name, row, p, dataset_size);
    const auto ia = position.find(a), ib = position.find(b);
    if (ia == position.end() || ib == position.end()) {
      ++out.left_out;
      continue;
    }
    out.pairs.push_back(ia->second);
    out.pairs.push_back(ib->second);
    out.scores.push_back(static_cast<float>(values[p]));
  }
  if (out.scores.size() < 2)
    fail_input(
        "metric.pairs '{}': {} of its {} pairs have both rows in the {} evaluated samples; "
        "Spearman needs at least 2 (select more samples: dataset.validation.count 0)",
        pairs_name, out.scores.size(), values.size(), selection.size());
  return out;
}

MetricValues metric_values(MetricKind kind, const EvalResult& run, const EvalResult* reference,
                           std::span<const std::int64_t> labels, const EmbeddingPairs* pairs) {
  MetricValues v;
  v.kind = kind;
  v.samples = run.samples;
  if (run.labelled) {
    v.top1 = run.top1;
    v.top5 = run.top5;
  }
  const bool rows = !run.logits.empty() && reference && !reference->logits.empty() &&
                    reference->logits.size() == run.logits.size() && run.width > 0;
  if (rows && kind != MetricKind::perplexity) {
    v.has_fidelity = true;
    v.fidelity = compare_outputs(reference->logits, run.logits, run.width);
  }
  if (kind == MetricKind::embedding) {
    if (rows) {
      const CosineStats cosines = row_cosines(reference->logits, run.logits, run.width);
      v.cosine_mean = cosines.mean;
      v.cosine_worst = cosines.worst;
    } else if (!reference) {
      v.cosine_mean = v.cosine_worst = 1;  // the reference itself
    }
    if (pairs && !run.logits.empty()) {
      v.spearman = pair_spearman(run.logits, run.width, pairs->pairs, pairs->scores);
      v.pairs = static_cast<std::int64_t>(pairs->scores.size());
    }
    if (!labels.empty() && !run.logits.empty())
      v.centroid_accuracy = nearest_centroid_accuracy(run.logits, run.width, labels);
  }
  if (kind == MetricKind::perplexity) {
    v.perplexity = run.next_token.perplexity();
    v.positions = run.next_token.positions;
    if (reference) v.next_token_kl = run.next_token.mean_kl();
  }
  return v;
}

// ---- Embeddings ------------------------------------------------------------------------

namespace {

double dot(const float* a, const float* b, std::int64_t n) {
  double sum = 0;
  for (std::int64_t i = 0; i < n; ++i) sum += static_cast<double>(a[i]) * b[i];
  return sum;
}

double cosine(const float* a, const float* b, std::int64_t n) {
  const double aa = dot(a, a, n), bb = dot(b, b, n);
  if (aa == 0 || bb == 0) return aa == bb ? 1.0 : 0.0;
  return dot(a, b, n) / std::sqrt(aa * bb);
}

// 1-based ranks, ties sharing their average rank.
std::vector<double> ranks(std::span<const double> values) {
  std::vector<std::size_t> order(values.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return values[a] < values[b]; });
  std::vector<double> rank(values.size());
  for (std::size_t i = 0; i < order.size();) {
    std::size_t j = i;
    while (j + 1 < order.size() && values[order[j + 1]] == values[order[i]]) ++j;
    const double average = (static_cast<double>(i) + static_cast<double>(j)) / 2 + 1;
    for (std::size_t k = i; k <= j; ++k) rank[order[k]] = average;
    i = j + 1;
  }
  return rank;
}

}  // namespace

CosineStats row_cosines(std::span<const float> reference, std::span<const float> candidate,
                        std::int64_t width) {
  BITPLAN_ASSERT(reference.size() == candidate.size() && width > 0);
  const auto rows = static_cast<std::int64_t>(reference.size()) / width;
  CosineStats stats;
  if (rows == 0) return stats;
  double sum = 0;
  for (std::int64_t r = 0; r < rows; ++r) {
    const double c = cosine(reference.data() + r * width, candidate.data() + r * width, width);
    sum += c;
    stats.worst = r == 0 ? c : std::min(stats.worst, c);
  }
  stats.mean = sum / static_cast<double>(rows);
  return stats;
}

double spearman(std::span<const double> x, std::span<const double> y) {
  BITPLAN_ASSERT(x.size() == y.size());
  if (x.size() < 2) return std::numeric_limits<double>::quiet_NaN();
  // Pearson's correlation of the ranks (exact with ties, unlike 1 - 6 sum d^2 / ...).
  const std::vector<double> rx = ranks(x), ry = ranks(y);
  const double n = static_cast<double>(x.size());
  const double mean = (n + 1) / 2;
  double sxy = 0, sxx = 0, syy = 0;
  for (std::size_t i = 0; i < rx.size(); ++i) {
    sxy += (rx[i] - mean) * (ry[i] - mean);
    sxx += (rx[i] - mean) * (rx[i] - mean);
    syy += (ry[i] - mean) * (ry[i] - mean);
  }
  if (sxx == 0 || syy == 0) return std::numeric_limits<double>::quiet_NaN();
  return sxy / std::sqrt(sxx * syy);
}

double pair_spearman(std::span<const float> embeddings, std::int64_t width,
                     std::span<const std::int64_t> pairs, std::span<const float> scores) {
  BITPLAN_ASSERT(pairs.size() == 2 * scores.size() && width > 0);
  const auto rows = static_cast<std::int64_t>(embeddings.size()) / width;
  std::vector<double> similarity, truth;
  for (std::size_t p = 0; p < scores.size(); ++p) {
    const std::int64_t a = pairs[2 * p], b = pairs[2 * p + 1];
    BITPLAN_ASSERT(a >= 0 && a < rows && b >= 0 && b < rows);
    similarity.push_back(
        cosine(embeddings.data() + a * width, embeddings.data() + b * width, width));
    truth.push_back(scores[p]);
  }
  return spearman(similarity, truth);
}

double nearest_centroid_accuracy(std::span<const float> embeddings, std::int64_t width,
                                 std::span<const std::int64_t> labels) {
  BITPLAN_ASSERT(width > 0 && embeddings.size() == labels.size() * static_cast<std::size_t>(width));
  const std::int64_t rows = static_cast<std::int64_t>(labels.size());
  std::int64_t classes = 0;
  for (const std::int64_t label : labels) classes = std::max(classes, label + 1);
  // L2-normalised rows, and per class their sum and count.
  std::vector<double> unit(embeddings.size()), sums(static_cast<std::size_t>(classes * width));
  std::vector<std::int64_t> counts(static_cast<std::size_t>(classes));
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* row = embeddings.data() + r * width;
    const double norm = std::sqrt(dot(row, row, width));
    const auto label = static_cast<std::size_t>(labels[static_cast<std::size_t>(r)]);
    ++counts[label];
    for (std::int64_t j = 0; j < width; ++j) {
      const double v = norm > 0 ? row[j] / norm : 0.0;
      unit[static_cast<std::size_t>(r * width + j)] = v;
      sums[label * static_cast<std::size_t>(width) + static_cast<std::size_t>(j)] += v;
    }
  }
  const auto present = std::count_if(counts.begin(), counts.end(), [](auto c) { return c > 0; });
  if (present < 2) return std::numeric_limits<double>::quiet_NaN();
  std::int64_t correct = 0;
  std::vector<double> centroid(static_cast<std::size_t>(width));
  for (std::int64_t r = 0; r < rows; ++r) {
    const double* x = unit.data() + r * width;
    const std::int64_t own = labels[static_cast<std::size_t>(r)];
    std::int64_t best = -1;
    double best_cosine = -std::numeric_limits<double>::infinity();
    for (std::int64_t c = 0; c < classes; ++c) {
      // The class centroid without this row (leave-one-out); cosine is scale-free, so the
      // sum stands for the mean.
      const std::int64_t count = counts[static_cast<std::size_t>(c)] - (c == own ? 1 : 0);
      if (count == 0) continue;
      double xc = 0, cc = 0;
      for (std::int64_t j = 0; j < width; ++j) {
        const double v = sums[static_cast<std::size_t>(c * width + j)] - (c == own ? x[j] : 0.0);
        xc += x[j] * v;
        cc += v * v;
      }
      const double cos = cc > 0 ? xc / std::sqrt(cc) : 0.0;
      if (cos > best_cosine) {
        best_cosine = cos;
        best = c;
      }
    }
    correct += best == own;
  }
  return static_cast<double>(correct) / static_cast<double>(rows);
}

// ---- Causal language models -------------------------------------------------------------

double NextTokenStats::perplexity() const {
  return positions ? std::exp(nll_sum / static_cast<double>(positions))
                   : std::numeric_limits<double>::quiet_NaN();
}
double NextTokenStats::mean_nll() const {
  return positions ? nll_sum / static_cast<double>(positions)
                   : std::numeric_limits<double>::quiet_NaN();
}
double NextTokenStats::mean_kl() const {
  return positions ? kl_sum / static_cast<double>(positions)
                   : std::numeric_limits<double>::quiet_NaN();
}

void add_next_token(std::span<const float> logits, std::span<const std::int64_t> tokens,
                    std::span<const std::int64_t> mask, std::int64_t n, std::int64_t steps,
                    std::int64_t vocabulary, NextTokenStats& stats,
                    const NextTokenReference* reference, std::int64_t* reference_position,
                    NextTokenReference* record) {
  BITPLAN_ASSERT(static_cast<std::int64_t>(logits.size()) == n * steps * vocabulary);
  BITPLAN_ASSERT(static_cast<std::int64_t>(tokens.size()) == n * steps);
  BITPLAN_ASSERT(mask.empty() || mask.size() == tokens.size());
  BITPLAN_ASSERT(!reference || reference_position);
  // The scored positions (sequence s, step t predicting t + 1), in order.
  std::vector<std::int64_t> scored;
  for (std::int64_t s = 0; s < n; ++s)
    for (std::int64_t t = 0; t + 1 < steps; ++t) {
      const std::int64_t next = s * steps + t + 1;
      if (!mask.empty() && mask[static_cast<std::size_t>(next)] == 0) continue;
      const std::int64_t token = tokens[static_cast<std::size_t>(next)];
      if (token < 0 || token >= vocabulary)
        fail_input(
            "scoring next tokens: token {} (sequence {}, position {}) is outside the model's "
            "vocabulary of {} logits",
            token, s, t + 1, vocabulary);
      scored.push_back(s * steps + t);
    }
  const auto count = static_cast<std::int64_t>(scored.size());
  const std::int64_t first = reference ? *reference_position : 0;
  if (reference && first + count > reference->positions())
    fail_input("scoring next tokens: {} positions beyond the reference's {}", first + count,
               reference->positions());
  const std::int64_t k = std::min(NextTokenReference::kTopK, vocabulary);
  std::vector<double> nll(scored.size()), kl(scored.size());
  std::vector<std::int32_t> ids(record ? scored.size() * static_cast<std::size_t>(k) : 0);
  std::vector<float> top(ids.size()), tail(record ? scored.size() : 0);
  parallel_for(count, 4, [&](std::int64_t b, std::int64_t e) {
    std::vector<std::int32_t> order;
    for (std::int64_t i = b; i < e; ++i) {
      const std::int64_t at = scored[static_cast<std::size_t>(i)];
      const float* row = logits.data() + at * vocabulary;
      // log-softmax in double from the row max.
      const double max = *std::max_element(row, row + vocabulary);
      double sum = 0;
      for (std::int64_t v = 0; v < vocabulary; ++v) sum += std::exp(row[v] - max);
      const double log_z = max + std::log(sum);
      const auto log_q = [&](std::int64_t v) { return row[v] - log_z; };
      const std::int64_t token = tokens[static_cast<std::size_t>(at + 1)];
      nll[static_cast<std::size_t>(i)] = -log_q(token);
      if (reference) {
        // KL over {the reference's top k, the rest}: sum p (log p - log q) + tail term.
        const std::int64_t pos = first + i;
        const std::int64_t rk = reference->k;
        double divergence = 0, q_top = 0;
        for (std::int64_t j = 0; j < rk; ++j) {
          const auto slot = static_cast<std::size_t>(pos * rk + j);
          const double log_p = reference->log_probs[slot];
          const double lq = log_q(reference->ids[slot]);
          divergence += std::exp(log_p) * (log_p - lq);
          q_top += std::exp(lq);
        }
        const double log_p_tail = reference->log_tail[static_cast<std::size_t>(pos)];
        if (std::isfinite(log_p_tail)) {
          const double q_tail = std::max(1.0 - q_top, 1e-30);
          divergence += std::exp(log_p_tail) * (log_p_tail - std::log(q_tail));
        }
        kl[static_cast<std::size_t>(i)] = std::max(divergence, 0.0);
      }
      if (record) {
        order.resize(static_cast<std::size_t>(vocabulary));
        std::iota(order.begin(), order.end(), 0);
        std::partial_sort(order.begin(), order.begin() + k, order.end(),
                          [&](std::int32_t a, std::int32_t c) {
                            return row[a] > row[c] || (row[a] == row[c] && a < c);
                          });
        double mass = 0;
        for (std::int64_t j = 0; j < k; ++j) {
          const auto slot = static_cast<std::size_t>(i * k + j);
          ids[slot] = order[static_cast<std::size_t>(j)];
          top[slot] = static_cast<float>(log_q(order[static_cast<std::size_t>(j)]));
          mass += std::exp(log_q(order[static_cast<std::size_t>(j)]));
        }
        const double rest = 1.0 - mass;
        tail[static_cast<std::size_t>(i)] = rest > 1e-12 ? static_cast<float>(std::log(rest))
                                                         : -std::numeric_limits<float>::infinity();
      }
    }
  });
  for (std::size_t i = 0; i < scored.size(); ++i) {
    stats.nll_sum += nll[i];
    stats.kl_sum += kl[i];
  }
  stats.positions += count;
  if (reference) *reference_position += count;
  if (record) {
    record->k = k;
    record->ids.insert(record->ids.end(), ids.begin(), ids.end());
    record->log_probs.insert(record->log_probs.end(), top.begin(), top.end());
    record->log_tail.insert(record->log_tail.end(), tail.begin(), tail.end());
  }
}

}  // namespace bitplan
