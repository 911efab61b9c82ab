#include "cli/run_config.hpp"

#include <fmt/ranges.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <optional>
#include <type_traits>

#include "cli/values.hpp"
#include "core/files.hpp"
#include "core/yaml_reader.hpp"
#include "search/objectives.hpp"
#include "search/policy.hpp"

namespace bitplan {
namespace {

template <typename T>
T scalar(const KeyValue& v) {
  if (!v.node.IsScalar()) v.fail(fmt::format("{} must be a single value", v.name));
  try {
    return v.node.as<T>();
  } catch (const YAML::Exception&) {
    v.fail(fmt::format("{} '{}' is not a valid {}", v.name, v.node.Scalar(),
                       std::is_integral_v<T> ? "integer" : "value"));
  }
}

bool boolean(const KeyValue& v) {
  bool value = false;
  if (!v.node.IsScalar() || !YAML::convert<bool>::decode(v.node, value))
    v.fail(fmt::format("{} '{}' must be true or false", v.name, YAML::Dump(v.node)));
  return value;
}

// The text of a scalar value, for cli/values.hpp's parsers.
std::string scalar_text(const KeyValue& v) {
  if (!v.node.IsScalar()) v.fail(fmt::format("{} must be a single value", v.name));
  return v.node.Scalar();
}

std::vector<std::string> string_list(const KeyValue& v) {
  if (!v.node.IsSequence() || v.node.size() == 0)
    v.fail(fmt::format("{} must be a non-empty list", v.name));
  std::vector<std::string> out;
  for (const auto& item : v.node) out.push_back(scalar<std::string>({v.file, item, v.key, v.name}));
  return out;
}

template <typename T>
T positive(const KeyValue& v, bool allow_zero) {
  const T value = scalar<T>(v);
  if (!(allow_zero ? value >= 0 : value > 0))
    v.fail(fmt::format("{} {} must be {}", v.name, value, allow_zero ? ">= 0" : "> 0"));
  return value;
}

ValueOrigin origin(const KeyValue& v) {
  return ValueOrigin::config(v.file, v.node, v.name);
}

// Relative paths in a config are relative to its folder.
std::filesystem::path config_path(const KeyValue& v) {
  return v.file.path().parent_path() / scalar<std::string>(v);
}

// search.constraints: limits on the front, each a number >= 0.
template <std::optional<double> search::SearchOptions::*limit>
void read_constraint(const KeyValue& v, search::SearchOptions& s) {
  s.*limit = positive<double>(v, true);
}

constexpr KeyReader<search::SearchOptions> kConstraintKeys[] = {
    {"max_latency_ms", read_constraint<&search::SearchOptions::max_latency_ms>},
    {"max_size_mb", read_constraint<&search::SearchOptions::max_size_mb>},
    {"max_accuracy_drop", read_constraint<&search::SearchOptions::max_accuracy_drop>},
    {"max_worst_class_drop", read_constraint<&search::SearchOptions::max_worst_class_drop>},
    {"max_perplexity_increase", read_constraint<&search::SearchOptions::max_perplexity_increase>},
    {"min_cosine",
     [](const KeyValue& v, search::SearchOptions& s) {
       s.min_cosine = scalar<double>(v);
       if (!(*s.min_cosine >= -1 && *s.min_cosine <= 1))
         v.fail(fmt::format("{} {} must be in [-1, 1]", v.name, *s.min_cosine));
     }},
    {"max_kl", read_constraint<&search::SearchOptions::max_kl>},
    {"max_bits_per_weight",
     [](const KeyValue& v, search::SearchOptions& s) {
       const std::string text = scalar_text(v);
       s.max_bits_per_weight = parse_finite(text, origin(v));
       if (!(*s.max_bits_per_weight > 0))
         origin(v).fail(text, "must be > 0 bits per weight (e.g. 4.0)");
     }},
};

constexpr KeyReader<search::SearchOptions> kBudgetKeys[] = {
    {"evaluations",
     [](const KeyValue& v, search::SearchOptions& s) {
       s.max_evaluations = parse_count(scalar_text(v), origin(v));
     }},
    {"seconds",
     [](const KeyValue& v, search::SearchOptions& s) {
       s.max_seconds = parse_seconds(scalar_text(v), origin(v));
     }},
};

constexpr KeyReader<search::SpaceOverride> kOverrideKeys[] = {
    {"layers",
     [](const KeyValue& v, search::SpaceOverride& o) { o.pattern = scalar<std::string>(v); }},
    {"options", [](const KeyValue& v, search::SpaceOverride& o) { o.options = string_list(v); }},
};

constexpr KeyReader<search::SearchOptions> kMpiKeys[] = {
    {"evaluation_timeout",
     [](const KeyValue& v, search::SearchOptions& s) {
       s.mpi_evaluation_timeout = parse_seconds(scalar_text(v), origin(v));
     }},
};

// search: RunConfig rather than SearchOptions, for latency_batch_origin.
constexpr KeyReader<RunConfig> kSearchKeys[] = {
    {"options", [](const KeyValue& v, RunConfig& c) { c.search.options = string_list(v); }},
    {"overrides",
     [](const KeyValue& v, RunConfig& c) {
       if (!v.node.IsSequence()) v.fail("search.overrides must be a list");
       for (const auto& item : v.node) {
         if (!item.IsMap() || !item["layers"] || !item["options"])
           v.file.fail(item, "each search.overrides item is {layers: REGEX, options: [...]}");
         read_section(v.file, item, "search.overrides[]", kOverrideKeys,
                      c.search.overrides.emplace_back());
       }
     }},
    {"keep_fp32", [](const KeyValue& v, RunConfig& c) { c.search.keep_fp32 = string_list(v); }},
    {"objectives",
     [](const KeyValue& v, RunConfig& c) {
       c.search.objectives = string_list(v);
       c.search.objectives_given = true;
       for (const auto& o : c.search.objectives)
         if (!search::find_objective(o))
           v.fail(
               fmt::format("objective '{}' is not one of {}", o, search::objective_names_text()));
     }},
    {"constraints",
     [](const KeyValue& v, RunConfig& c) {
       read_section(v.file, v.node, v.name, kConstraintKeys, c.search);
     }},
    {"policy",
     [](const KeyValue& v, RunConfig& c) {
       c.search.policy = scalar<std::string>(v);
       const auto policies = search::policy_names();
       if (std::find(policies.begin(), policies.end(), c.search.policy) == policies.end())
         v.fail(fmt::format("{} '{}' is not one of {}", v.name, c.search.policy,
                            fmt::join(policies, ", ")));
     }},
    {"seed", [](const KeyValue& v,
                RunConfig& c) { c.search.seed = parse_seed(scalar_text(v), origin(v)); }},
    {"population", [](const KeyValue& v,
                      RunConfig& c) { c.search.population = positive<std::int64_t>(v, false); }},
    {"budget",
     [](const KeyValue& v, RunConfig& c) {
       if (!v.node.IsMap()) v.fail("search.budget must be {evaluations: N, seconds: S}");
       read_section(v.file, v.node, v.name, kBudgetKeys, c.search);
     }},
    {"subset",
     [](const KeyValue& v, RunConfig& c) { c.search.subset = positive<std::int64_t>(v, false); }},
    {"sensitivity_subset",
     [](const KeyValue& v, RunConfig& c) {
       c.search.sensitivity_subset = positive<std::int64_t>(v, false);
     }},
    {"final_samples",
     [](const KeyValue& v, RunConfig& c) {
       c.search.final_samples = positive<std::int64_t>(v, true);
     }},
    {"latency_batch",
     [](const KeyValue& v, RunConfig& c) {
       c.latency_batch_origin = origin(v);
       c.search.latency_batch = parse_batch(scalar_text(v), *c.latency_batch_origin);
     }},
    {"latency_sequence",
     [](const KeyValue& v, RunConfig& c) {
       c.search.latency_sequence = positive<std::int64_t>(v, false);
     }},
    {"mpi",
     [](const KeyValue& v, RunConfig& c) {
       if (!v.node.IsMap()) v.fail("search.mpi must be {evaluation_timeout: S}");
       read_section(v.file, v.node, v.name, kMpiKeys, c.search);
     }},
    {"output", [](const KeyValue& v, RunConfig& c) { c.search.output = config_path(v); }},
    {"database", [](const KeyValue& v, RunConfig& c) { c.search.database = config_path(v); }},
};

constexpr KeyReader<EvaluateSection> kEvaluateKeys[] = {
    {"batch",
     [](const KeyValue& v, EvaluateSection& e) {
       e.batch_origin = origin(v);
       e.batch = parse_batch(scalar_text(v), *e.batch_origin);
     }},
    {"threads", [](const KeyValue& v,
                   EvaluateSection& e) { e.threads = parse_threads(scalar_text(v), origin(v)); }},
};

constexpr KeyReader<QuantizationSection> kQuantizationKeys[] = {
    {"equalize", [](const KeyValue& v, QuantizationSection& q) { q.equalize = boolean(v); }},
    {"relu6_to_relu",
     [](const KeyValue& v, QuantizationSection& q) { q.relu6_to_relu = boolean(v); }},
};

// metric: what a run is judged by (executor/metrics.hpp).
std::string metric_kinds_text() {
  std::string text;
  for (const MetricKind kind :
       {MetricKind::top1, MetricKind::fidelity, MetricKind::embedding, MetricKind::perplexity})
    text += (text.empty() ? "" : ", ") + std::string(metric_name(kind));
  return text;
}

constexpr KeyReader<MetricConfig> kMetricKeys[] = {
    {"kind",
     [](const KeyValue& v, MetricConfig& m) {
       const std::string name = scalar<std::string>(v);
       if (!metric_from_name(name, m.kind))
         v.fail(fmt::format("{} '{}' is not one of {}", v.name, name, metric_kinds_text()));
       m.kind_given = true;
     }},
    {"output", [](const KeyValue& v, MetricConfig& m) { m.output = scalar<std::string>(v); }},
    {"pairs", [](const KeyValue& v, MetricConfig& m) { m.pairs = config_path(v); }},
    {"scores", [](const KeyValue& v, MetricConfig& m) { m.scores = config_path(v); }},
    {"tokens_input",
     [](const KeyValue& v, MetricConfig& m) { m.tokens_input = scalar<std::string>(v); }},
    {"mask_input",
     [](const KeyValue& v, MetricConfig& m) { m.mask_input = scalar<std::string>(v); }},
};

// The rules between the metric's keys, once each has been read.
void check_metric_keys(const YamlFile& file, const YAML::Node& node, const MetricConfig& m) {
  const auto kind = metric_name(m.kind);
  if (node["pairs"] && !node["scores"])
    file.fail(node["pairs"],
              "metric.pairs needs metric.scores (float [P], the similarity of each pair)");
  if (node["scores"] && !node["pairs"])
    file.fail(node["scores"], "metric.scores needs metric.pairs (int64 [P, 2] row indices)");
  for (const char* key : {"pairs", "scores"})
    if (node[key] && m.kind != MetricKind::embedding)
      file.fail(node[key], fmt::format("metric.{} applies to metric.kind embedding, not {}", key,
                                       m.kind_given ? kind : "the default (top1 or fidelity)"));
  for (const char* key : {"tokens_input", "mask_input"})
    if (node[key] && m.kind != MetricKind::perplexity)
      file.fail(node[key], fmt::format("metric.{} applies to metric.kind perplexity, not {}", key,
                                       m.kind_given ? kind : "the default (top1 or fidelity)"));
}

constexpr KeyReader<RunConfig> kSectionKeys[] = {
    {"model", [](const KeyValue& v, RunConfig& c) { c.model = config_path(v); }},
    {"dataset",
     [](const KeyValue& v, RunConfig& c) {
       c.dataset = parse_dataset_config(v.node, v.file);
       c.has_dataset = true;
     }},
    {"evaluate",
     [](const KeyValue& v, RunConfig& c) {
       read_section(v.file, v.node, v.name, kEvaluateKeys, c.evaluate);
     }},
    {"metric",
     [](const KeyValue& v, RunConfig& c) {
       read_section(v.file, v.node, v.name, kMetricKeys, c.metric);
       check_metric_keys(v.file, v.node, c.metric);
     }},
    {"quantization",
     [](const KeyValue& v, RunConfig& c) {
       read_section(v.file, v.node, v.name, kQuantizationKeys, c.quantization);
       if (c.quantization.relu6_to_relu && !c.quantization.equalize)
         v.file.fail(v.node["relu6_to_relu"],
                     "quantization.relu6_to_relu: true applies with quantization.equalize: true "
                     "(it only replaces the ReLU6 that stops a pair from being equalized)");
     }},
    {"target",
     [](const KeyValue& v, RunConfig& c) {
       const std::string target = scalar<std::string>(v);
       if (target == kHostTarget)
         c.target_is_host = true;
       else
         c.target = v.file.path().parent_path() / target;
     }},
    {"search",
     [](const KeyValue& v, RunConfig& c) {
       read_section(v.file, v.node, v.name, kSearchKeys, c);
       c.has_search = true;
     }},
};

}  // namespace

RunConfig load_run_config(const std::filesystem::path& path,
                          const std::vector<std::string>& overrides) {
  YamlFile file = YamlFile::load(path, "config", std::uint64_t{16} << 20);
  if (!file.root().IsMap())
    fail_input("config '{}': the top level must be a mapping of sections", path.string());
  for (const auto& o : overrides) file.set(o);
  RunConfig config;
  config.source = path;
  read_section(file, file.root(), "", kSectionKeys, config);
  if (!file.root()["model"])
    fail_input("config '{}': the 'model' entry (path to an ONNX file) is required", path.string());
  // The search judges quality by the configured metric: its objectives and constraints must
  // be ones that metric measures (a metric left to the default is checked once the data is
  // known, search_command).
  if (config.metric.kind_given && file.root()["search"]) {
    const YAML::Node search = file.root()["search"];
    try {
      search::check_objectives_fit_metric(config.search.objectives, config.metric.kind);
    } catch (const Error& e) {
      file.fail(search["objectives"] ? search["objectives"] : search, e.what());
    }
    const YAML::Node constraints = search["constraints"];
    const auto needs = [&](const char* key, MetricKind kind) {
      if (constraints && constraints[key] && config.metric.kind != kind)
        file.fail(constraints[key],
                  fmt::format("search.constraints.{} applies to metric.kind {}, not {}", key,
                              metric_name(kind), metric_name(config.metric.kind)));
    };
    needs("max_accuracy_drop", MetricKind::top1);
    needs("max_worst_class_drop", MetricKind::top1);
    needs("max_perplexity_increase", MetricKind::perplexity);
    needs("min_cosine", MetricKind::embedding);
  }
  return config;
}

}  // namespace bitplan
