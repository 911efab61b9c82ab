#include "search/output.hpp"

#include <fmt/format.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <regex>

#include "core/files.hpp"
#include "core/text.hpp"
#include "search/report.hpp"

namespace bitplan::search {
namespace {

using json = nlohmann::ordered_json;
namespace fs = std::filesystem;

// The files every run writes, beside plan_NNN.yaml.
constexpr const char* kResultFiles[] = {"pareto.json", "pareto.csv", "sensitivity.csv",
                                        "report.html"};

// A folder reused for a new run may hold plan files of an earlier, larger front; beside the
// new pareto.json they would read as part of this front. Only names this writer makes, from
// the new front's size on, are removed.
void remove_stale_plans(const fs::path& dir, std::size_t front_size) {
  static const std::regex plan_name(R"(plan_([0-9]{3,9})\.yaml)");
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    std::smatch match;
    if (!std::regex_match(name, match, plan_name)) continue;
    const std::size_t index = std::stoul(match[1].str());
    std::error_code type_ec;
    if (index < front_size || name != plan_file_name(index) || !it->is_regular_file(type_ec))
      continue;
    std::error_code removed;
    fs::remove(it->path(), removed);
    if (removed)
      fail_input("remove the stale plan '{}' of an earlier run: {}", it->path().string(),
                 removed.message());
  }
  if (ec) fail_input("list results folder '{}': {}", dir.string(), ec.message());
}

json number_or_null(double v) {
  return std::isfinite(v) ? json(v) : json(nullptr);
}

json metrics_json(const PlanMetrics& m) {
  json out = {{"top1", m.top1},
              {"samples", m.samples},
              {"worst_class_drop", m.worst_class_drop},
              {"kl", m.kl},
              {"sqnr_db", number_or_null(m.sqnr_db)},
              {"top1_agreement", m.agreement},
              {"latency_ms", number_or_null(m.latency_ms)},
              {"size_bytes", m.size_bytes},
              {"bits_per_weight", number_or_null(m.bits_per_weight)},
              {"gbops", m.gbops}};
  // The other metrics' values, where the run's metric measured them.
  for (const auto& [key, value] : {std::pair{"perplexity", m.perplexity},
                                   std::pair{"cosine", m.cosine},
                                   std::pair{"cosine_worst", m.cosine_worst},
                                   std::pair{"spearman", m.spearman},
                                   std::pair{"centroid_accuracy", m.centroid_accuracy}})
    if (std::isfinite(value)) out[key] = value;
  return out;
}

}  // namespace

std::string plan_file_name(std::size_t front_index) {
  return fmt::format("plan_{:03d}.yaml", front_index);
}

void prepare_results_folder(const std::filesystem::path& dir) {
  prepare_output_folder(dir, "results folder (search.output)");
  for (const char* name : kResultFiles) check_output_target(dir / name);
}

void write_results(const std::filesystem::path& dir, const SearchResult& r,
                   const OutputInfo& info) {
  prepare_results_folder(dir);
  // pareto.json / csv / plans
  json front = json::array();
  std::string csv =
      "plan,top1_subset,top1_final,final_samples,accuracy_drop_pt,worst_class_drop_pt,kl,"
      "predicted_latency_ms,measured_latency_ms,size_bytes,bits_per_weight,gbops,"
      "quantized_layers\n";
  for (std::size_t k = 0; k < r.front.size(); ++k) {
    const EvaluatedPlan& e = r.evaluations[r.front[k]];
    const std::string plan_file = plan_file_name(k);
    save_plan(dir / plan_file, e.plan);
    const PlanMetrics& fin = e.final_metrics ? *e.final_metrics : e.metrics;
    json j = {{"plan", plan_file},
              {"key", e.key},
              {"subset", metrics_json(e.metrics)},
              {"final", metrics_json(fin)},
              {"accuracy_drop_pt", 100 * (r.fp32.top1 - fin.top1)},
              {"measured_latency_ms",
               e.measured_latency_ms ? json(*e.measured_latency_ms) : json(nullptr)},
              {"measured_latency_iqr_ms",
               e.measured_latency_iqr_ms ? json(*e.measured_latency_iqr_ms) : json(nullptr)},
              {"objectives", e.objectives},
              {"quantized_layers", e.plan.layers.size()}};
    front.push_back(j);
    csv += fmt::format(
        "{},{:.4f},{:.4f},{},{:.3f},{:.3f},{:.5g},{},{},{:.0f},{:.4f},{:.4g},{}\n", plan_file,
        e.metrics.top1, fin.top1, fin.samples, 100 * (r.fp32.top1 - fin.top1),
        100 * fin.worst_class_drop, fin.kl,
        std::isfinite(e.metrics.latency_ms) ? fmt::format("{:.4f}", e.metrics.latency_ms) : "",
        e.measured_latency_ms ? fmt::format("{:.4f}", *e.measured_latency_ms) : "",
        e.metrics.size_bytes, e.metrics.bits_per_weight, e.metrics.gbops, e.plan.layers.size());
  }
  json baselines = json::array();
  for (const auto& b : r.baselines)
    baselines.push_back(
        {{"name", b.name},
         {"metrics", metrics_json(b.metrics)},
         {"final", b.final_metrics ? metrics_json(*b.final_metrics) : json(nullptr)},
         {"unsupported", b.unsupported}});
  const json doc = {{"bitplan_results", 1},
                    {"model", info.model_name},
                    {"model_hash", info.model_hash},
                    {"config", info.config_path},
                    {"command", info.command_line},
                    {"target", r.target},
                    {"target_warnings", r.target_warnings},
                    {"policy", r.policy},
                    {"objectives", r.objective_names},
                    {"space", r.space_description},
                    {"fp32", metrics_json(r.fp32)},
                    {"front", front},
                    {"baselines", baselines},
                    {"hypervolume", r.hypervolume},
                    {"evaluations", r.evaluations.size()},
                    {"evaluations_run", r.evaluations_run},
                    {"evaluations_reused", r.evaluations_reused},
                    {"seconds",
                     {{"sensitivity", r.seconds_sensitivity},
                      {"search", r.seconds_search},
                      {"final", r.seconds_final}}},
                    {"stop_reason", r.stop_reason},
                    {"interrupted", r.interrupted}};
  write_file_atomic(dir / "pareto.json", json_text(doc, 1) + "\n");
  write_file_atomic(dir / "pareto.csv", csv);
  remove_stale_plans(dir, r.front.size());
  std::string sens = "layer,option,kl,top1_drop,predicted_latency_ms,unsupported\n";
  for (std::size_t l = 0; l < r.sensitivity.size(); ++l)
    for (std::size_t o = 0; o < r.sensitivity[l].size(); ++o)
      sens += fmt::format(
          "{},{},{:.6g},{:.5f},{},{}\n", csv_field(r.space.layers[l].layer),
          r.space.layers[l].options[o], r.sensitivity[l][o], r.sensitivity_drop[l][o],
          std::isfinite(r.latency_ms[l][o]) ? fmt::format("{:.5f}", r.latency_ms[l][o]) : "",
          csv_field(r.unsupported[l][o]));
  write_file_atomic(dir / "sensitivity.csv", sens);

  write_file_atomic(dir / "report.html", report_html(r, info));
}

}  // namespace bitplan::search
