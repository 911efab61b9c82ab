#include "cli/run_config.hpp"

#include <yaml-cpp/yaml.h>

#include <set>

#include "core/files.hpp"

namespace bitplan {
namespace {

[[noreturn]] void schema_error(const std::filesystem::path& file, const YAML::Node& node,
                               const std::string& rule) {
  const YAML::Mark mark = node.Mark();
  fail_input("config '{}' line {}, column {}: {}", file.string(), mark.line + 1, mark.column + 1,
             rule);
}

template <typename T>
T scalar(const std::filesystem::path& file, const YAML::Node& node, const std::string& key) {
  if (!node.IsScalar()) schema_error(file, node, fmt::format("{} must be a single value", key));
  try {
    return node.as<T>();
  } catch (const YAML::Exception&) {
    schema_error(file, node,
                 fmt::format("{} '{}' is not a valid {}", key, node.Scalar(),
                             std::is_integral_v<T> ? "integer" : "value"));
  }
}

}  // namespace

RunConfig load_run_config(const std::filesystem::path& path) {
  // Bounded read first: a missing or huge file gets bitplan's message, not yaml-cpp's.
  const std::string text = read_file(path, std::uint64_t{16} << 20, "config");
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::ParserException& e) {
    fail_input("config '{}' line {}, column {}: YAML syntax error: {}", path.string(),
               e.mark.line + 1, e.mark.column + 1, e.msg);
  }
  if (!root.IsMap())
    fail_input("config '{}': the top level must be a mapping of sections", path.string());
  RunConfig config;
  config.source = path;
  const auto base = path.parent_path();
  const std::set<std::string> known{"model", "dataset", "evaluate"};
  for (const auto& kv : root) {
    const std::string key = kv.first.as<std::string>();
    if (!known.count(key))
      schema_error(
          path, kv.first,
          fmt::format("unknown section '{}'; known sections are model, dataset, evaluate", key));
  }
  if (!root["model"])
    fail_input("config '{}': the 'model' entry (path to an ONNX file) is required", path.string());
  config.model = base / scalar<std::string>(path, root["model"], "model");
  if (root["dataset"]) {
    config.dataset = parse_dataset_config(root["dataset"], path);
    config.has_dataset = true;
  }
  if (const YAML::Node ev = root["evaluate"]) {
    if (!ev.IsMap()) schema_error(path, ev, "evaluate must be a mapping");
    for (const auto& kv : ev) {
      const std::string key = kv.first.as<std::string>();
      if (key == "batch")
        config.evaluate.batch = scalar<std::int64_t>(path, kv.second, "evaluate.batch");
      else if (key == "threads")
        config.evaluate.threads = scalar<int>(path, kv.second, "evaluate.threads");
      else
        schema_error(path, kv.first,
                     fmt::format("unknown key 'evaluate.{}'; known keys are batch, threads", key));
    }
    if (config.evaluate.batch < 1)
      schema_error(path, ev["batch"],
                   fmt::format("evaluate.batch {} must be >= 1", config.evaluate.batch));
    if (config.evaluate.threads < 0)
      schema_error(path, ev["threads"],
                   fmt::format("evaluate.threads {} must be >= 0", config.evaluate.threads));
  }
  return config;
}

}  // namespace bitplan
