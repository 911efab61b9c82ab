// Candidate evaluation for the search: a plan's accuracy and fidelity on a fixed selection.
//
//   Evaluator           the interface the driver's stages and runners (search/runner.hpp)
//                       use: plan -> PlanMetrics on the evaluator's selection
//   ExecutorEvaluator   the quantized executor behind it: the results database first (an
//                       earlier run's measurement of the same plan in the same context),
//                       else QuantSimulator + SubsetEvaluator, stored for the next run
//   SubsetEvaluator     runs one graph on the selection against the fp32 reference
//
// Plan once, run many: the subset's inputs are loaded and preprocessed once into batches;
// the fp32 reference outputs are computed once; each candidate then costs one graph build
// (QuantSimulator: cached quantized weights, fused activation fake-quant), one
// ExecutionPlan and the batched runs. A candidate whose first batches already show it
// cannot meet an accuracy-drop limit is stopped early (the rest of its batches are not run).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "data/dataset.hpp"
#include "executor/metrics.hpp"
#include "executor/quant/simulate.hpp"
#include "ir/graph.hpp"
#include "search/plan_metrics.hpp"
#include "search/results_db.hpp"

namespace bitplan::search {

// An evaluation's answer: the measured metrics (costs are the cost models' business and
// are left at their defaults) and whether they came from the results database.
struct Measured {
  PlanMetrics metrics;
  bool from_database = false;
};

class Evaluator {
 public:
  virtual ~Evaluator() = default;
  // `plan` on this evaluator's selection; `key` names the plan across runs (a genome key,
  // or "uniform:<label>" for a baseline).
  virtual Measured evaluate(const QuantPlan& plan, const std::string& key) = 0;
  // The fp32 model on the same selection.
  virtual PlanMetrics reference() const = 0;
};

struct SubsetOutcome {
  std::int64_t samples = 0;  // evaluated (fewer than the subset when stopped early)
  double top1 = 0;
  double worst_class_drop = 0;  // largest per-class top-1 drop vs fp32 (fraction)
  Fidelity fidelity;            // against the fp32 outputs (perplexity: kl_divergence is the
                                // mean next-token KL, the rest unset)
  MetricKind metric = MetricKind::top1;
  double perplexity = kNotMeasured;
  CosineStats cosine{kNotMeasured, kNotMeasured};
  double spearman = kNotMeasured, centroid_accuracy = kNotMeasured;
  bool stopped_early = false;
  double seconds = 0;
};

class SubsetEvaluator {
 public:
  // Loads `indices` of `dataset` (every model input) and runs `fp32_graph` on them for the
  // reference, judged by `metric` (resolved: top1 with labels, fidelity without, unless
  // given). Memory: the inputs of the subset, the fp32 rows of the judged output (not for
  // perplexity) or, for perplexity, fp32's top-k next-token distributions
  // (NextTokenReference: about 0.5 KB per scored position).
  SubsetEvaluator(const Graph& fp32_graph, const Dataset& dataset,
                  std::vector<std::int64_t> indices, std::int64_t batch,
                  const MetricConfig& metric = {});

  const SubsetOutcome& reference() const { return reference_; }
  std::int64_t size() const { return size_; }
  MetricKind metric() const { return kind_; }

  // `max_top1_drop`: stop once the drop is certainly above it (see evaluator.cpp).
  SubsetOutcome evaluate(const Graph& graph,
                         std::optional<double> max_top1_drop = std::nullopt) const;

 private:
  SubsetOutcome run(const Graph& graph, std::optional<double> max_top1_drop,
                    std::vector<float>* outputs_out) const;

  std::int64_t batch_;
  std::int64_t size_ = 0;
  std::int64_t classes_ = 0;
  MetricKind kind_ = MetricKind::top1;
  std::size_t output_ = 0;                   // the judged output
  int tokens_at_ = -1, mask_at_ = -1;        // perplexity: positions of those model inputs
  std::vector<std::vector<Tensor>> inputs_;  // per batch (the last may be smaller), per input
  std::vector<std::int64_t> labels_;         // empty without labels
  std::optional<EmbeddingPairs> pairs_;
  NextTokenReference token_reference_;
  std::vector<float> reference_outputs_;
  std::vector<double> reference_class_accuracy_;
  SubsetOutcome reference_;
};

// The accuracy and fidelity fields of PlanMetrics from a subset run.
PlanMetrics measured_metrics(const SubsetOutcome& outcome);

// The results database's form of the measured fields (SQNR infinity as null) and back;
// reading also takes the 999 dB that earlier bitplan versions stored for infinity.
nlohmann::json stored_metrics_json(const PlanMetrics& metrics);
PlanMetrics metrics_from_stored_json(const nlohmann::json& stored);

// The quantized executor as an Evaluator, with the results database in front of it.
class ExecutorEvaluator final : public Evaluator {
 public:
  // `context` keys the database rows (model, data, calibration, batch, selection): a row
  // is reused only by an evaluator of the same context. `max_top1_drop` (a fraction) lets
  // a plan that is certainly beyond it stop early. `db` null: every plan is measured and
  // nothing stored (an MPI worker rank: rank 0 owns the database).
  ExecutorEvaluator(QuantSimulator& simulator, const SubsetEvaluator& selection, ResultsDb* db,
                    std::string context, std::optional<double> max_top1_drop);

  Measured evaluate(const QuantPlan& plan, const std::string& key) override;
  PlanMetrics reference() const override;

  // The three steps of evaluate(), for a runner whose measurements happen elsewhere or on
  // another thread than its database writes (search/mpi_runner.hpp): the stored result of
  // `key`, if any; measuring `plan` (its metrics and the seconds taken; touches no
  // database); storing a result. stored() and store() are no-ops without a database.
  std::optional<Measured> stored(const std::string& key) const;
  std::pair<PlanMetrics, double> measure(const QuantPlan& plan);
  void store(const std::string& key, const PlanMetrics& metrics, double seconds);

 private:
  QuantSimulator& simulator_;
  const SubsetEvaluator& selection_;
  ResultsDb* db_;
  std::string context_;
  std::optional<double> max_top1_drop_;
};

}  // namespace bitplan::search
