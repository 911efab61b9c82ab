// One reader for bitplan's YAML files (run configs, plans, hardware profiles): exactly one
// document, no key twice in a mapping, and errors that point at the file, line and column
// of the offending node, or at the --set override that made it.
//
// yaml-cpp alone accepts both a repeated key (lookups see the first, iteration both) and a
// second document (YAML::Load reads the first and drops the rest) without a word, so the
// text is first walked as parser events, which also sees aliases without expanding them.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace bitplan {

class YamlFile {
 public:
  // Reads `path` (at most `max_bytes`) as one YAML document. `kind` is the word messages
  // start with: "config", "plan", "hardware profile". Refused as invalid input, naming the
  // file, line and column: a syntax error, a second document, a key repeated in one mapping
  // (both places named). An empty file is a null document.
  static YamlFile load(const std::filesystem::path& path, std::string kind,
                       std::uint64_t max_bytes);
  // The same checks for text in memory that stands for the file `path`.
  static YamlFile parse(const std::string& text, const std::filesystem::path& path,
                        std::string kind);

  const std::filesystem::path& path() const { return path_; }
  const std::string& kind() const { return kind_; }
  const YAML::Node& root() const { return root_; }

  // "a.b.c=VALUE" (VALUE is read as YAML, so lists and numbers work): sets root[a][b][c],
  // making the sections that are missing. A malformed assignment is a usage error that
  // quotes it; errors about the nodes it made say "from --set a.b.c=VALUE".
  void set(const std::string& assignment);

  // Where `node` came from: "config 'run.yaml' line 4, column 3", "config 'run.yaml' (from
  // --set search.seed=x)", or "config 'run.yaml'" for a node without a position.
  std::string where(const YAML::Node& node) const;

  // Invalid input: "<where(node)>: <rule>".
  [[noreturn]] void fail(const YAML::Node& node, std::string_view rule) const;

 private:
  YamlFile(std::filesystem::path path, std::string kind, YAML::Node root)
      : path_(std::move(path)), kind_(std::move(kind)), root_(std::move(root)) {}

  // A node a --set made: the value (and what it contains), a key, or a missing section.
  struct SetNode {
    YAML::Node node;
    std::string assignment;
  };

  std::filesystem::path path_;
  std::string kind_;
  YAML::Node root_;
  std::vector<SetNode> set_nodes_;
};

// The schema error of every YAML reader: invalid input "<where(node)>: <rule>".
[[noreturn]] void schema_error(const YamlFile& file, const YAML::Node& node, std::string_view rule);

// A section's key table checked: `node` must be a mapping whose keys are names from
// `known`, else "unknown key '<section>.<key>'; known keys are a, b, c" at the key (a
// top-level mapping has an empty `section`: "unknown key '<key>'").
void check_keys(const YamlFile& file, const YAML::Node& node, std::string_view section,
                std::span<const std::string_view> known);

// "section.key", or "key" at the top level.
std::string yaml_key_name(std::string_view section, std::string_view key);

}  // namespace bitplan
