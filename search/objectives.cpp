#include "search/objectives.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "core/error.hpp"

namespace bitplan::search {
namespace {

// Accuracy is searched as the top-1 error so that every objective of today's table is
// minimised, as the policies and the stored results expect.
constexpr Objective kObjectives[] = {
    {ObjectiveId::accuracy, "accuracy", "top-1 error (fraction)", Direction::minimise,
     [](const PlanMetrics& m) { return 1.0 - m.top1; }},
    {ObjectiveId::latency, "latency", "ms (predicted)", Direction::minimise,
     [](const PlanMetrics& m) { return m.latency_ms; }},
    {ObjectiveId::size, "size", "bytes", Direction::minimise,
     [](const PlanMetrics& m) { return m.size_bytes; }},
    // The llama.cpp / ExLlamaV2 measure: the quantizable layers' weights only (codes, scales,
    // zero points; fp32 layers at 32), so a target such as 4.0 reads the same on any model.
    {ObjectiveId::bits_per_weight, "bits_per_weight", "bits per weight element",
     Direction::minimise, [](const PlanMetrics& m) { return m.bits_per_weight; }},
    {ObjectiveId::bops, "bops", "GBOPs", Direction::minimise,
     [](const PlanMetrics& m) { return m.gbops; }},
    {ObjectiveId::worst_class, "worst_class", "largest per-class top-1 drop (fraction)",
     Direction::minimise, [](const PlanMetrics& m) { return m.worst_class_drop; }},
    {ObjectiveId::kl, "kl", "KL divergence to fp32 (nats; next-token KL for perplexity)",
     Direction::minimise, [](const PlanMetrics& m) { return m.kl; }},
    {ObjectiveId::perplexity, "perplexity", "perplexity of the next tokens", Direction::minimise,
     [](const PlanMetrics& m) { return m.perplexity; }},
    {ObjectiveId::cosine, "cosine", "mean cosine of the embeddings to fp32", Direction::maximise,
     [](const PlanMetrics& m) { return m.cosine; }},
};

}  // namespace

std::span<const Objective> objective_table() {
  return kObjectives;
}

const Objective* find_objective(std::string_view name) {
  for (const Objective& objective : objective_table())
    if (objective.name == name) return &objective;
  return nullptr;
}

std::string objective_names_text() {
  std::string text;
  for (const Objective& objective : objective_table())
    text += (text.empty() ? "" : ", ") + std::string(objective.name);
  return text;
}

std::vector<Objective> objectives_named(const std::vector<std::string>& names) {
  std::vector<Objective> rows;
  for (const std::string& name : names) {
    const Objective* objective = find_objective(name);
    if (!objective)
      fail(ErrorKind::usage, "search objective '{}' is not one of {}", name,
           objective_names_text());
    rows.push_back(*objective);
  }
  return rows;
}

std::string_view quality_objective(MetricKind kind) {
  switch (kind) {
    case MetricKind::top1:
      return "accuracy";
    case MetricKind::fidelity:
      return "kl";
    case MetricKind::embedding:
      return "cosine";
    case MetricKind::perplexity:
      return "perplexity";
  }
  return "accuracy";
}

void check_objectives_fit_metric(const std::vector<std::string>& names, MetricKind kind) {
  for (const std::string& name : names) {
    const char* needs = (name == "accuracy" || name == "worst_class") ? "top1"
                        : name == "perplexity"                          ? "perplexity"
                        : name == "cosine"                              ? "embedding"
                                                                        : nullptr;
    if (needs && metric_name(kind) != needs)
      fail_input(
          "search objective '{}' needs metric.kind {}, but the run's metric is {}; its quality "
          "objective is '{}'",
          name, needs, metric_name(kind), quality_objective(kind));
  }
}

bool has_objective(std::span<const Objective> objectives, ObjectiveId id) {
  return std::any_of(objectives.begin(), objectives.end(),
                     [id](const Objective& objective) { return objective.id == id; });
}

ObjectivePoint minimised_objectives(std::span<const Objective> objectives,
                                    const PlanMetrics& metrics) {
  ObjectivePoint values;
  values.reserve(objectives.size());
  for (const Objective& objective : objectives) {
    const double value = objective.extract(metrics);
    values.push_back(objective.direction == Direction::minimise ? value : -value);
  }
  return values;
}

}  // namespace bitplan::search
