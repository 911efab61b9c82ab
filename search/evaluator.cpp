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
                                 std::vector<std::int64_t> indices, std::int64_t batch,
                                 const MetricConfig& metric)
    : batch_(model_batch(fp32_graph, batch)),
      size_(static_cast<std::int64_t>(indices.size())),
      kind_(resolved_metric(metric, dataset.has_labels())) {
  if (indices.empty()) fail_input("evaluating candidates: the validation subset has no samples");
  check_model_takes_samples(fp32_graph, dataset);
  if (kind_ == MetricKind::top1 && !dataset.has_labels())
    fail_input("evaluating candidates: metric top1 needs labels (dataset.labels)");
  if (batch_ != batch && indices.size() % static_cast<std::size_t>(batch_) != 0)
    fail_input(
        "evaluating candidates: {} samples do not fill batches of {}, the batch size the model "
        "fixes; choose search.subset and sensitivity_subset as multiples of it",
        indices.size(), batch_);
  output_ = 0;
  if (!metric.output.empty()) {
    const auto it = std::find_if(fp32_graph.outputs.begin(), fp32_graph.outputs.end(),
                                 [&](const ValueInfo& o) { return o.name == metric.output; });
    if (it == fp32_graph.outputs.end())
      fail_input("evaluating candidates: metric.output '{}' is not a model output", metric.output);
    output_ = static_cast<std::size_t>(it - fp32_graph.outputs.begin());
  }
  if (kind_ == MetricKind::perplexity) {
    for (std::size_t i = 0; i < fp32_graph.inputs.size(); ++i) {
      if (fp32_graph.inputs[i].name == metric.tokens_input) tokens_at_ = static_cast<int>(i);
      if (fp32_graph.inputs[i].name == metric.mask_input) mask_at_ = static_cast<int>(i);
    }
    if (tokens_at_ < 0)
      fail_input(
          "evaluating candidates: the perplexity metric reads the tokens from input '{}' "
          "(metric.tokens_input), which the model does not have",
          metric.tokens_input);
  }
  // Every model input of every batch, loaded once.
  const std::vector<std::size_t> order = feed_order(fp32_graph, dataset);
  for (std::size_t start = 0; start < indices.size(); start += static_cast<std::size_t>(batch_)) {
    const std::size_t end = std::min(indices.size(), start + static_cast<std::size_t>(batch_));
    const auto batch_indices = std::span(indices).subspan(start, end - start);
    std::vector<Tensor> batch_inputs;
    for (std::size_t i = 0; i < order.size(); ++i) {
      const ValueInfo& info = fp32_graph.inputs[i];
      Dims dims(info.dims.begin() + 1, info.dims.end());
      dims.insert(dims.begin(), static_cast<std::int64_t>(end - start));
      Tensor t(info.dtype, dims);
      dataset.load_input(order[i], batch_indices, t);
      batch_inputs.push_back(std::move(t));
    }
    inputs_.push_back(std::move(batch_inputs));
  }
  if (dataset.has_labels()) {
    for (const auto i : indices) labels_.push_back(dataset.label(i));
    classes_ = dataset.num_classes();
  }
  if (kind_ == MetricKind::embedding && !metric.pairs.empty())
    pairs_ = load_embedding_pairs(metric, indices, dataset.size());
  reference_ = run(fp32_graph, std::nullopt, &reference_outputs_);
  if (kind_ != MetricKind::top1) return;
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
  return run(graph, kind_ == MetricKind::top1 ? max_top1_drop : std::nullopt, nullptr);
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
  const bool top1 = kind_ == MetricKind::top1;
  const bool perplexity = kind_ == MetricKind::perplexity;
  const bool reference_run = outputs_out != nullptr;
  NextTokenStats tokens;
  std::int64_t token_position = 0;
  NextTokenReference* record =
      reference_run ? const_cast<NextTokenReference*>(&token_reference_) : nullptr;
  SubsetOutcome out;
  out.metric = kind_;
  for (const auto& input : inputs_) {
    const std::int64_t n = input.at(0).dim(0);
    auto& plan = plans[n];
    if (!plan) plan = std::make_unique<ExecutionPlan>(graph, PlanOptions{n});
    const Tensor result = plan->run(input).at(output_);
    width = result.numel() / n;
    const float* rows = result.data<float>();
    if (perplexity) {
      const Tensor& ids = input[static_cast<std::size_t>(tokens_at_)];
      if (result.rank() != 3 || ids.rank() != 2 || ids.dim(1) != result.dim(1))
        fail_input(
            "evaluating candidates: the perplexity metric needs tokens [N, T] and logits [N, T, "
            "vocabulary]; the tokens are {} and the output is {}",
            to_string(ids.dims()), to_string(result.dims()));
      std::vector<std::int64_t> mask;
      if (mask_at_ >= 0) mask = input[static_cast<std::size_t>(mask_at_)].to_int64_vector();
      add_next_token(result.values<float>(), ids.to_int64_vector(), mask, n, result.dim(1),
                     result.dim(2), tokens, reference_run ? nullptr : &token_reference_,
                     &token_position, record);
      done += n;
      continue;
    }
    outputs.insert(outputs.end(), rows, rows + result.numel());
    for (std::int64_t s = 0; s < n; ++s, ++done) {
      if (!top1) continue;
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
    // Early stop (top1 only: a paired count has a standard error; the other metrics have
    // none this simple, so they always run the whole subset): the paired drop estimate minus
    // three standard errors (McNemar-style, se = sqrt(lost + gained) / n) already exceeds the
    // limit, after at least a quarter of the subset and 256 samples.
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
  out.top1 = top1 ? double(correct) / double(done) : 0.0;
  if (perplexity) {
    out.perplexity = tokens.perplexity();
    out.fidelity = Fidelity{1, reference_run ? 0.0 : tokens.mean_kl(), INFINITY, 1};
  } else if (!reference_outputs_.empty()) {
    const auto reference =
        std::span(reference_outputs_).subspan(0, static_cast<std::size_t>(done * width));
    out.fidelity = compare_outputs(reference, outputs, width);
    if (kind_ == MetricKind::embedding) out.cosine = row_cosines(reference, outputs, width);
    for (std::size_t c = 0; c < class_count.size(); ++c)
      if (class_count[c] && !std::isnan(reference_class_accuracy_[c]))
        out.worst_class_drop =
            std::max(out.worst_class_drop, reference_class_accuracy_[c] -
                                               double(class_correct[c]) / double(class_count[c]));
  } else {
    out.fidelity = Fidelity{1, 0, INFINITY, 1};
    if (kind_ == MetricKind::embedding) out.cosine = CosineStats{1, 1};
  }
  if (kind_ == MetricKind::embedding && done == size()) {
    if (pairs_) out.spearman = pair_spearman(outputs, width, pairs_->pairs, pairs_->scores);
    if (!labels_.empty())
      out.centroid_accuracy = nearest_centroid_accuracy(outputs, width, labels_);
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
  m.perplexity = outcome.perplexity;
  m.cosine = outcome.cosine.mean;
  m.cosine_worst = outcome.cosine.worst;
  m.spearman = outcome.spearman;
  m.centroid_accuracy = outcome.centroid_accuracy;
  return m;
}

namespace {
nlohmann::json finite_or_null(double v) {
  return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr);
}
}  // namespace

nlohmann::json stored_metrics_json(const PlanMetrics& m) {
  using json = nlohmann::json;
  return {{"top1", m.top1},
          {"worst_class_drop", m.worst_class_drop},
          {"kl", m.kl},
          {"sqnr_db", std::isfinite(m.sqnr_db) ? json(m.sqnr_db) : json(nullptr)},
          {"agreement", m.agreement},
          {"samples", m.samples},
          {"stopped_early", m.stopped_early},
          // The other metrics' values (null where the run's metric does not measure them).
          {"perplexity", finite_or_null(m.perplexity)},
          {"cosine", finite_or_null(m.cosine)},
          {"cosine_worst", finite_or_null(m.cosine_worst)},
          {"spearman", finite_or_null(m.spearman)},
          {"centroid_accuracy", finite_or_null(m.centroid_accuracy)}};
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
  // Rows of earlier versions have none of these: not measured.
  const auto optional = [&](const char* key) {
    const auto it = j.find(key);
    return it == j.end() || it->is_null() ? kNotMeasured : it->get<double>();
  };
  m.perplexity = optional("perplexity");
  m.cosine = optional("cosine");
  m.cosine_worst = optional("cosine_worst");
  m.spearman = optional("spearman");
  m.centroid_accuracy = optional("centroid_accuracy");
  return m;
}

ExecutorEvaluator::ExecutorEvaluator(QuantSimulator& simulator, const SubsetEvaluator& selection,
                                     ResultsDb* db, std::string context,
                                     std::optional<double> max_top1_drop)
    : simulator_(simulator),
      selection_(selection),
      db_(db),
      context_(std::move(context)),
      max_top1_drop_(max_top1_drop) {}

std::optional<Measured> ExecutorEvaluator::stored(const std::string& key) const {
  if (!db_) return std::nullopt;
  if (auto row = db_->find(context_, key))
    return Measured{metrics_from_stored_json(row->metrics), true};
  return std::nullopt;
}

void ExecutorEvaluator::store(const std::string& key, const PlanMetrics& metrics, double seconds) {
  if (!db_) return;
  // The database keeps what the executor measured; objectives are recomputed from the
  // metrics and the cost models (which a new profile may change).
  StoredEvaluation row;
  row.genome_key = key;
  row.objectives = {1.0 - metrics.top1};
  row.metrics = stored_metrics_json(metrics);
  row.seconds = seconds;
  db_->put(context_, row);
}

std::pair<PlanMetrics, double> ExecutorEvaluator::measure(const QuantPlan& plan) {
  const SubsetOutcome outcome = selection_.evaluate(simulator_.build(plan), max_top1_drop_);
  return {measured_metrics(outcome), outcome.seconds};
}

Measured ExecutorEvaluator::evaluate(const QuantPlan& plan, const std::string& key) {
  if (auto found = stored(key)) return *found;
  const auto [metrics, seconds] = measure(plan);
  store(key, metrics, seconds);
  return {metrics, false};
}

PlanMetrics ExecutorEvaluator::reference() const {
  return measured_metrics(selection_.reference());
}

}  // namespace bitplan::search
