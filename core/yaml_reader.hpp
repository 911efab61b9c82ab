// One reader for bitplan's YAML files (run configs, plans, hardware profiles): exactly one
// document, no key twice in a mapping, and errors that point at the file, line and column
// of the offending node, or at the --set override that made it.
//
// yaml-cpp alone accepts both a repeated key (lookups see the first, iteration both) and a
// second document (YAML::Load reads the first and drops the rest) without a word, so the
// text is first walked as parser events, which also sees aliases without expanding them.
#pragma once

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
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

// "section.key", or "key" at the top level.
std::string yaml_key_name(std::string_view section, std::string_view key);

// ---- Key tables --------------------------------------------------------------------------
// Each section of a file has one table of {key, reader}: read_section takes both the keys it
// accepts and the "known keys are ..." text of its error from it, so a new key is added in one
// place and the list in the message cannot drift from the parser.

// A value of a section, as read_section hands it to its key's reader.
struct KeyValue {
  const YamlFile& file;
  const YAML::Node& node;
  std::string_view key;  // "seed"
  std::string name;      // "search.seed": how messages name it

  // Invalid input at the value: "<where>: <rule>".
  [[noreturn]] void fail(std::string_view rule) const { file.fail(node, rule); }
};

// A row of a section's key table: the key and the function that reads its value into the
// section's `Target` (the section's struct, or one that also holds what the reading needs).
template <typename Target>
struct KeyReader {
  std::string_view key;
  void (*read)(const KeyValue& value, Target& target);
};

template <typename Target>
using KeyTable = std::span<const KeyReader<Target>>;

// "a, b, c": the keys of `table` in its order.
template <typename Target>
std::string known_keys(KeyTable<Target> table) {
  std::string text;
  for (const KeyReader<Target>& row : table) text.append(text.empty() ? "" : ", ").append(row.key);
  return text;
}

namespace detail {
// "<section> must be a mapping" ("the top level" for an empty `section`) unless `node` is one.
void require_mapping(const YamlFile& file, const YAML::Node& node, std::string_view section);
[[noreturn]] void fail_unknown_key(const YamlFile& file, const YAML::Node& key,
                                   std::string_view section, std::string_view known_keys);
}  // namespace detail

// Reads the mapping `node`, the section `section` of `file` ("" for the top level), into
// `target`. First every key must be in `table`, else "unknown key '<section>.<key>'; known
// keys are <known_keys(table)>" at the key; then each key present is read, in the table's
// order, so that a key may rely on those before it. Keys are names and appear once: the file
// was refused when read otherwise. Required keys and rules between keys are the caller's.
template <typename Target>
void read_section(const YamlFile& file, const YAML::Node& node, std::string_view section,
                  std::type_identity_t<KeyTable<Target>> table, Target& target) {
  detail::require_mapping(file, node, section);
  for (const auto& kv : node) {
    const bool known = std::any_of(table.begin(), table.end(), [&](const KeyReader<Target>& row) {
      return row.key == kv.first.Scalar();
    });
    if (!known) detail::fail_unknown_key(file, kv.first, section, known_keys(table));
  }
  for (const KeyReader<Target>& row : table)
    if (const YAML::Node value = node[std::string(row.key)])
      row.read({file, value, row.key, yaml_key_name(section, row.key)}, target);
}

}  // namespace bitplan
