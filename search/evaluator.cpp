#include "search/evaluator.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>

#include "core/error.hpp"
#include "executor/evaluate.hpp"
#include "executor/plan.hpp"

namespace bitplan::search {

SubsetEvaluator::SubsetEvaluator(const Graph& fp32_graph, const Dataset& dataset,
                                 std::vector<std::int64_t> indices, std::int64_t batch)
    : batch_(batch) {
  if (indices.empty()) fail_input("evaluating candidates: the validation subset has no samples");
  check_model_takes_samples(fp32_graph, dataset);
  const std::int64_t numel = dataset.sample_numel();
  for (std::size_t start = 0; start < indices.size(); start += static_cast<std::size_t>(batch)) {
    const std::size_t end = std::min(indices.size(), start + static_cast<std::size_t>(batch));
    Dims dims = dataset.sample_dims();
    dims.insert(dims.begin(), static_cast<std::int64_t>(end - start));
    Tensor t(DType::f32, dims);
    dataset.load(std::span(indices).subspan(start, end - start), t.data<float>());
    inputs_.push_back(std::move(t));
    (void)numel;
  }
  for (const auto i : indices) labels_.push_back(dataset.label(i));
  classes_ = dataset.num_classes();
  reference_ = run(fp32_graph, std::nullopt, &reference_outputs_);
  // Per-class reference accuracy, for the worst-class drop of every candidate.
  std::vector<std::int64_t> correct(static_cast<std::size_t>(classes_)),
      count(static_cast<std::size_t>(classes_));
  const std::int64_t width = static_cast<std::int64_t>(reference_outputs_.size()) / size();
  for (std::int64_t s = 0; s < size(); ++s) {
    const float* row = reference_outputs_.data() + s * width;
    const auto pred = std::max_element(row, row + width) - row;
    const auto label = static_cast<std::size_t>(labels_[static_cast<std::size_t>(s)]);
    ++count[label];
    correct[label] += pred == labels_[static_cast<std::size_t>(s)];
  }
  for (std::size_t c = 0; c < count.size(); ++c)
    reference_class_accuracy_.push_back(count[c] ? double(correct[c]) / double(count[c]) : NAN);
}

SubsetOutcome SubsetEvaluator::evaluate(const Graph& graph,
                                        std::optional<double> max_top1_drop) const {
  return run(graph, max_top1_drop, nullptr);
}

SubsetOutcome SubsetEvaluator::run(const Graph& graph, std::optional<double> max_top1_drop,
                                   std::vector<float>* outputs_out) const {
  const auto start = std::chrono::steady_clock::now();
  std::map<std::int64_t, std::unique_ptr<ExecutionPlan>> plans;  // by batch size
  std::vector<float> outputs;
  std::int64_t width = 0, done = 0, correct = 0;
  // Paired counts against the reference: the candidate lost / gained a correct answer.
  std::int64_t lost = 0, gained = 0;
  std::vector<std::int64_t> class_correct(static_cast<std::size_t>(classes_)),
      class_count(static_cast<std::size_t>(classes_));
  SubsetOutcome out;
  for (const auto& input : inputs_) {
    const std::int64_t n = input.dim(0);
    auto& plan = plans[n];
    if (!plan) plan = std::make_unique<ExecutionPlan>(graph, PlanOptions{n});
    const Tensor result = plan->run(std::span(&input, 1)).at(0);
    width = result.numel() / n;
    const float* rows = result.data<float>();
    outputs.insert(outputs.end(), rows, rows + result.numel());
    for (std::int64_t s = 0; s < n; ++s, ++done) {
      const float* row = rows + s * width;
      const std::int64_t pred = std::max_element(row, row + width) - row;
      const std::int64_t label = labels_[static_cast<std::size_t>(done)];
      const bool ok = pred == label;
      correct += ok;
      ++class_count[static_cast<std::size_t>(label)];
      class_correct[static_cast<std::size_t>(label)] += ok;
      if (!reference_outputs_.empty()) {
        const float* ref = reference_outputs_.data() + done * width;
        const bool ref_ok = std::max_element(ref, ref + width) - ref == label;
        lost += ref_ok && !ok;
        gained += !ref_ok && ok;
      }
    }
    // Early stop: the paired drop estimate minus three standard errors (McNemar-style,
    // se = sqrt(lost + gained) / n) already exceeds the limit, after at least a quarter of
    // the subset and 256 samples.
    if (max_top1_drop && done < size() && done >= std::max<std::int64_t>(256, size() / 4)) {
      const double drop = double(lost - gained) / double(done);
      const double se = std::sqrt(double(lost + gained)) / double(done);
      if (drop - 3 * se > *max_top1_drop) {
        out.stopped_early = true;
        break;
      }
    }
  }
  out.samples = done;
  out.top1 = double(correct) / double(done);
  if (!reference_outputs_.empty()) {
    out.fidelity = compare_outputs(
        std::span(reference_outputs_).subspan(0, static_cast<std::size_t>(done * width)), outputs,
        width);
    for (std::size_t c = 0; c < class_count.size(); ++c)
      if (class_count[c] && !std::isnan(reference_class_accuracy_[c]))
        out.worst_class_drop =
            std::max(out.worst_class_drop, reference_class_accuracy_[c] -
                                               double(class_correct[c]) / double(class_count[c]));
  } else {
    out.fidelity = Fidelity{1, 0, INFINITY, 1};
  }
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (outputs_out) *outputs_out = std::move(outputs);
  return out;
}

PlanMetrics measured_metrics(const SubsetOutcome& outcome) {
  PlanMetrics m;
  m.top1 = outcome.top1;
  m.worst_class_drop = outcome.worst_class_drop;
  m.kl = outcome.fidelity.kl_divergence;
  m.sqnr_db = outcome.fidelity.sqnr_db;
  m.agreement = outcome.fidelity.top1_agreement;
  m.samples = outcome.samples;
  m.stopped_early = outcome.stopped_early;
  return m;
}

nlohmann::json stored_metrics_json(const PlanMetrics& m) {
  using json = nlohmann::json;
  return {{"top1", m.top1},
          {"worst_class_drop", m.worst_class_drop},
          {"kl", m.kl},
          {"sqnr_db", std::isfinite(m.sqnr_db) ? json(m.sqnr_db) : json(nullptr)},
          {"agreement", m.agreement},
          {"samples", m.samples},
          {"stopped_early", m.stopped_early}};
}

PlanMetrics metrics_from_stored_json(const nlohmann::json& j) {
  PlanMetrics m;
  m.top1 = j.at("top1");
  m.worst_class_drop = j.at("worst_class_drop");
  m.kl = j.at("kl");
  // null: outputs identical to fp32 (infinite SQNR); earlier bitplan versions stored 999.
  const nlohmann::json& sqnr = j.at("sqnr_db");
  m.sqnr_db = sqnr.is_null() || sqnr == 999.0 ? INFINITY : sqnr.get<double>();
  m.agreement = j.at("agreement");
  m.samples = j.at("samples");
  m.stopped_early = j.at("stopped_early");
  return m;
}

ExecutorEvaluator::ExecutorEvaluator(QuantSimulator& simulator, const SubsetEvaluator& selection,
                                     ResultsDb& db, std::string context,
                                     std::optional<double> max_top1_drop)
    : simulator_(simulator),
      selection_(selection),
      db_(db),
      context_(std::move(context)),
      max_top1_drop_(max_top1_drop) {}

Measured ExecutorEvaluator::evaluate(const QuantPlan& plan, const std::string& key) {
  if (auto stored = db_.find(context_, key))
    return {metrics_from_stored_json(stored->metrics), true};
  const SubsetOutcome outcome = selection_.evaluate(simulator_.build(plan), max_top1_drop_);
  const PlanMetrics metrics = measured_metrics(outcome);
  // The database keeps what the executor measured; objectives are recomputed from the
  // metrics and the cost models (which a new profile may change).
  StoredEvaluation stored;
  stored.genome_key = key;
  stored.objectives = {1.0 - metrics.top1};
  stored.metrics = stored_metrics_json(metrics);
  stored.seconds = outcome.seconds;
  db_.put(context_, stored);
  return {metrics, false};
}

PlanMetrics ExecutorEvaluator::reference() const {
  return measured_metrics(selection_.reference());
}

}  // namespace bitplan::search
