#include "cli/run_config.hpp"

#include <fmt/ranges.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <set>

#include "cli/values.hpp"
#include "core/files.hpp"
#include "core/yaml_reader.hpp"
#include "search/objectives.hpp"
#include "search/policy.hpp"

namespace bitplan {
namespace {

constexpr std::string_view kSections[] = {"model", "dataset", "evaluate", "target", "search"};

template <typename T>
T scalar(const YamlFile& file, const YAML::Node& node, const std::string& key) {
  if (!node.IsScalar()) schema_error(file, node, fmt::format("{} must be a single value", key));
  try {
    return node.as<T>();
  } catch (const YAML::Exception&) {
    schema_error(file, node,
                 fmt::format("{} '{}' is not a valid {}", key, node.Scalar(),
                             std::is_integral_v<T> ? "integer" : "value"));
  }
}

// The text of a scalar node, for cli/values.hpp's parsers.
std::string scalar_text(const YamlFile& file, const YAML::Node& node, const std::string& key) {
  if (!node.IsScalar()) schema_error(file, node, fmt::format("{} must be a single value", key));
  return node.Scalar();
}

std::vector<std::string> string_list(const YamlFile& file, const YAML::Node& node,
                                     const std::string& key) {
  if (!node.IsSequence() || node.size() == 0)
    schema_error(file, node, fmt::format("{} must be a non-empty list", key));
  std::vector<std::string> out;
  for (const auto& item : node) out.push_back(scalar<std::string>(file, item, key));
  return out;
}

template <typename T>
T positive(const YamlFile& file, const YAML::Node& node, const std::string& key, bool allow_zero) {
  const T v = scalar<T>(file, node, key);
  if (!(allow_zero ? v >= 0 : v > 0))
    schema_error(file, node, fmt::format("{} {} must be {}", key, v, allow_zero ? ">= 0" : "> 0"));
  return v;
}

// Fills config.search; `latency_batch_origin` records where search.latency_batch was set.
search::SearchOptions parse_search(const YamlFile& file, const YAML::Node& node,
                                   std::optional<ValueOrigin>& latency_batch_origin) {
  if (!node.IsMap()) schema_error(file, node, "search must be a mapping");
  search::SearchOptions s;
  const auto base = file.path().parent_path();
  for (const auto& kv : node) {
    const std::string key = kv.first.as<std::string>();
    const YAML::Node& v = kv.second;
    const std::string name = "search." + key;
    if (key == "options") {
      s.options = string_list(file, v, name);
    } else if (key == "overrides") {
      if (!v.IsSequence()) schema_error(file, v, "search.overrides must be a list");
      for (const auto& item : v) {
        if (!item.IsMap() || !item["layers"] || !item["options"])
          schema_error(file, item, "each search.overrides item is {layers: REGEX, options: [...]}");
        s.overrides.push_back({scalar<std::string>(file, item["layers"], "layers"),
                               string_list(file, item["options"], "options")});
      }
    } else if (key == "keep_fp32") {
      s.keep_fp32 = string_list(file, v, name);
    } else if (key == "objectives") {
      s.objectives = string_list(file, v, name);
      for (const auto& o : s.objectives)
        if (!search::find_objective(o))
          schema_error(
              file, v,
              fmt::format("objective '{}' is not one of {}", o, search::objective_names_text()));
    } else if (key == "constraints") {
      if (!v.IsMap()) schema_error(file, v, "search.constraints must be a mapping");
      for (const auto& c : v) {
        const std::string ck = c.first.as<std::string>();
        const double value = positive<double>(file, c.second, "search.constraints." + ck, true);
        if (ck == "max_latency_ms")
          s.max_latency_ms = value;
        else if (ck == "max_size_mb")
          s.max_size_mb = value;
        else if (ck == "max_accuracy_drop")
          s.max_accuracy_drop = value;
        else if (ck == "max_worst_class_drop")
          s.max_worst_class_drop = value;
        else
          schema_error(file, c.first,
                       fmt::format("unknown constraint '{}'; known: max_latency_ms, max_size_mb, "
                                   "max_accuracy_drop (points), max_worst_class_drop (points)",
                                   ck));
      }
    } else if (key == "policy") {
      s.policy = scalar<std::string>(file, v, name);
      const auto policies = search::policy_names();
      if (std::find(policies.begin(), policies.end(), s.policy) == policies.end())
        schema_error(
            file, v,
            fmt::format("{} '{}' is not one of {}", name, s.policy, fmt::join(policies, ", ")));
    } else if (key == "seed") {
      s.seed = parse_seed(scalar_text(file, v, name), ValueOrigin::config(file, v, name));
    } else if (key == "population") {
      s.population = positive<std::int64_t>(file, v, name, false);
    } else if (key == "budget") {
      if (!v.IsMap()) schema_error(file, v, "search.budget must be {evaluations: N, seconds: S}");
      for (const auto& b : v) {
        const std::string bk = b.first.as<std::string>();
        const std::string budget_key = "search.budget." + bk;
        if (bk == "evaluations")
          s.max_evaluations = parse_count(scalar_text(file, b.second, budget_key),
                                          ValueOrigin::config(file, b.second, budget_key));
        else if (bk == "seconds")
          s.max_seconds = parse_seconds(scalar_text(file, b.second, budget_key),
                                        ValueOrigin::config(file, b.second, budget_key));
        else
          schema_error(
              file, b.first,
              fmt::format("unknown key 'search.budget.{}'; known: evaluations, seconds", bk));
      }
    } else if (key == "subset") {
      s.subset = positive<std::int64_t>(file, v, name, false);
    } else if (key == "sensitivity_subset") {
      s.sensitivity_subset = positive<std::int64_t>(file, v, name, false);
    } else if (key == "final_samples") {
      s.final_samples = positive<std::int64_t>(file, v, name, true);
    } else if (key == "latency_batch") {
      latency_batch_origin = ValueOrigin::config(file, v, name);
      s.latency_batch = parse_batch(scalar_text(file, v, name), *latency_batch_origin);
    } else if (key == "output") {
      s.output = base / scalar<std::string>(file, v, name);
    } else if (key == "database") {
      s.database = base / scalar<std::string>(file, v, name);
    } else {
      schema_error(file, kv.first,
                   fmt::format("unknown key '{}'; known keys are options, overrides, keep_fp32, "
                               "objectives, constraints, policy, seed, population, budget, "
                               "subset, sensitivity_subset, final_samples, latency_batch, output, "
                               "database",
                               name));
    }
  }
  return s;
}

}  // namespace

RunConfig load_run_config(const std::filesystem::path& path,
                          const std::vector<std::string>& overrides) {
  YamlFile file = YamlFile::load(path, "config", std::uint64_t{16} << 20);
  if (!file.root().IsMap())
    fail_input("config '{}': the top level must be a mapping of sections", path.string());
  for (const auto& o : overrides) file.set(o);
  const YAML::Node& root = file.root();
  RunConfig config;
  config.source = path;
  const auto base = path.parent_path();
  check_keys(file, root, "", kSections);
  if (!root["model"])
    fail_input("config '{}': the 'model' entry (path to an ONNX file) is required", path.string());
  config.model = base / scalar<std::string>(file, root["model"], "model");
  if (root["dataset"]) {
    config.dataset = parse_dataset_config(root["dataset"], file);
    config.has_dataset = true;
  }
  if (const YAML::Node ev = root["evaluate"]) {
    if (!ev.IsMap()) schema_error(file, ev, "evaluate must be a mapping");
    for (const auto& kv : ev) {
      const std::string key = kv.first.as<std::string>();
      const std::string name = "evaluate." + key;
      if (key == "batch") {
        config.evaluate.batch_origin = ValueOrigin::config(file, kv.second, name);
        config.evaluate.batch =
            parse_batch(scalar_text(file, kv.second, name), *config.evaluate.batch_origin);
      } else if (key == "threads") {
        config.evaluate.threads = parse_threads(scalar_text(file, kv.second, name),
                                                ValueOrigin::config(file, kv.second, name));
      } else {
        schema_error(file, kv.first,
                     fmt::format("unknown key 'evaluate.{}'; known keys are batch, threads", key));
      }
    }
  }
  if (root["target"]) {
    const std::string target = scalar<std::string>(file, root["target"], "target");
    if (target == kHostTarget)
      config.target_is_host = true;
    else
      config.target = base / target;
  }
  if (root["search"]) {
    config.search = parse_search(file, root["search"], config.latency_batch_origin);
    config.has_search = true;
  }
  return config;
}

}  // namespace bitplan
