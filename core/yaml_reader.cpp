#include "core/yaml_reader.hpp"

#include <fmt/format.h>
#include <yaml-cpp/eventhandler.h>

#include <algorithm>
#include <map>
#include <optional>
#include <sstream>

#include "core/error.hpp"
#include "core/files.hpp"

namespace bitplan {
namespace {

std::string position(const YAML::Mark& mark) {
  return fmt::format("line {}, column {}", mark.line + 1, mark.column + 1);
}

// Why a text is not one well-formed document, and where.
struct StructureProblem {
  YAML::Mark mark;
  std::string rule;
};

// Walks the parser's events of one document: a key that is not text, a key repeated in a
// mapping and the start of a second document are problems. Aliases arrive as one event, never
// expanded, so a "billion laughs" text costs its length.
class StructureCheck : public YAML::EventHandler {
 public:
  void OnDocumentStart(const YAML::Mark& mark) override {
    if (++documents_ > 1)
      report({mark, "a second YAML document starts here; the file must hold exactly one"});
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& mark, YAML::anchor_t) override { leaf(mark, nullptr, "empty"); }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t) override {
    ++aliases_;
    leaf(mark, nullptr, "an alias");
  }
  void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                const std::string& value) override {
    leaf(mark, &value, "");
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {
    open(mark, false);
  }
  void OnSequenceEnd() override { close(); }
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {
    open(mark, true);
  }
  void OnMapEnd() override { close(); }

  int aliases() const { return aliases_; }
  // The first problem; the walk goes on, so that a syntax error later in the text, which
  // may be what confused the structure, is the one reported.
  const std::optional<StructureProblem>& problem() const { return problem_; }

 private:
  struct Collection {
    bool is_map = false;
    std::string name;        // "layers", "entries[3]": how messages name it
    bool expect_key = true;  // maps: the next node is a key
    std::string value_name;  // maps: the name of the value after the current key
    std::int64_t items = 0;  // sequences: items so far
    std::map<std::string, YAML::Mark> keys;
  };

  // The name of the next node of the innermost collection. A key is checked here: no
  // bitplan file has keys other than names (text), and each appears once per mapping.
  // `key_text` is null for a node that is not text; `kind` says what it is then.
  std::string child(const YAML::Mark& mark, const std::string* key_text, std::string_view kind) {
    if (stack_.empty()) return "";
    Collection& c = stack_.back();
    if (!c.is_map) return fmt::format("{}[{}]", c.name, c.items++);
    if (!c.expect_key) return c.value_name;
    if (!key_text) {
      report({mark, fmt::format("a key of {} is {}; keys must be names",
                                c.name.empty() ? "the top level" : c.name, kind)});
      c.value_name = yaml_key_name(c.name, "?");
      return c.value_name;
    }
    c.value_name = yaml_key_name(c.name, *key_text);
    const auto [first, fresh] = c.keys.emplace(*key_text, mark);
    if (!fresh)
      report({mark, fmt::format("key '{}' appears twice in one mapping (first at {}); each key "
                                "may appear once",
                                c.value_name, position(first->second))});
    return c.value_name;
  }
  // A node is complete: in a mapping, a key is followed by its value and a value by a key.
  void done() {
    if (!stack_.empty() && stack_.back().is_map) stack_.back().expect_key ^= true;
  }
  void leaf(const YAML::Mark& mark, const std::string* text, std::string_view kind) {
    child(mark, text, kind);
    done();
  }
  void open(const YAML::Mark& mark, bool is_map) {
    Collection collection;
    collection.is_map = is_map;
    collection.name = child(mark, nullptr, is_map ? "a mapping" : "a list");
    stack_.push_back(std::move(collection));
  }
  void close() {
    stack_.pop_back();
    done();
  }

  void report(StructureProblem problem) {
    if (!problem_) problem_ = std::move(problem);
  }

  std::optional<StructureProblem> problem_;
  int documents_ = 0;
  int aliases_ = 0;
  std::vector<Collection> stack_;
};

// Parses `text` as one document with the checks above; syntax errors are thrown as
// yaml-cpp's ParserException, then the first problem as a StructureProblem.
YAML::Node load_one_document(const std::string& text, int* aliases = nullptr) {
  std::istringstream stream(text);
  YAML::Parser parser(stream);
  StructureCheck check;
  if (parser.HandleNextDocument(check)) parser.HandleNextDocument(check);
  if (check.problem()) throw *check.problem();
  if (aliases) *aliases = check.aliases();
  return YAML::Load(text);
}

bool contains_node(const YAML::Node& tree, const YAML::Node& node) {
  if (tree.is(node)) return true;
  if (tree.IsMap())
    return std::any_of(tree.begin(), tree.end(), [&](const auto& kv) {
      return contains_node(kv.first, node) || contains_node(kv.second, node);
    });
  if (tree.IsSequence())
    return std::any_of(tree.begin(), tree.end(),
                       [&](const YAML::Node& item) { return contains_node(item, node); });
  return false;
}

}  // namespace

YamlFile YamlFile::load(const std::filesystem::path& path, std::string kind,
                        std::uint64_t max_bytes) {
  return parse(read_file(path, max_bytes, kind), path, std::move(kind));
}

YamlFile YamlFile::parse(const std::string& text, const std::filesystem::path& path,
                         std::string kind) {
  YAML::Node root;
  try {
    root = load_one_document(text);
  } catch (const YAML::ParserException& e) {
    fail_input("{} '{}' {}: YAML syntax error: {}", kind, path.string(), position(e.mark), e.msg);
  } catch (const StructureProblem& p) {
    fail_input("{} '{}' {}: {}", kind, path.string(), position(p.mark), p.rule);
  }
  return YamlFile(path, std::move(kind), std::move(root));
}

void YamlFile::set(const std::string& assignment) {
  const auto eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0)
    bitplan::fail(ErrorKind::usage, "--set '{}': expected KEY=VALUE, e.g. search.policy=random",
                  assignment);
  const std::string key = assignment.substr(0, eq);
  std::vector<std::string> names;
  for (std::size_t start = 0; start <= key.size();) {
    const std::size_t dot = std::min(key.find('.', start), key.size());
    if (dot == start)
      bitplan::fail(ErrorKind::usage, "--set '{}': empty name in the key '{}'", assignment, key);
    names.push_back(key.substr(start, dot - start));
    start = dot + 1;
  }
  YAML::Node value;
  int aliases = 0;
  try {
    value = load_one_document(assignment.substr(eq + 1), &aliases);
  } catch (const YAML::ParserException& e) {
    bitplan::fail(ErrorKind::usage, "--set '{}': the value is not valid YAML: {}", assignment,
                  e.msg);
  } catch (const StructureProblem& p) {
    bitplan::fail(ErrorKind::usage, "--set '{}': the value: {}", assignment, p.rule);
  }
  // Errors find a --set's nodes by walking its value: aliases could make that walk long.
  if (aliases > 0)
    bitplan::fail(ErrorKind::usage, "--set '{}': the value uses a YAML alias (*name); write it out",
                  assignment);
  if (!root_.IsMap() && !root_.IsNull())
    bitplan::fail(ErrorKind::usage, "--set '{}': {} '{}' is not a mapping of sections", assignment,
                  kind_, path_.string());
  std::vector<YAML::Node> chain{root_};
  for (std::size_t i = 0; i + 1 < names.size(); ++i) {
    YAML::Node next = chain.back()[names[i]];
    if (next && !next.IsMap())
      bitplan::fail(ErrorKind::usage, "--set '{}': '{}' in {} is not a section", assignment,
                    names[i], path_.string());
    chain.push_back(next);
  }
  chain.back()[names.back()] = value;
  // Every node on the way that has no place in the file is this --set's: the keys it added,
  // the sections it made and the value.
  for (std::size_t i = 0; i < names.size(); ++i)
    for (const auto& kv : chain[i])
      if (kv.first.IsScalar() && kv.first.Scalar() == names[i]) {
        if (kv.first.Mark().is_null()) set_nodes_.push_back({kv.first, assignment});
        if (kv.second.Mark().is_null()) set_nodes_.push_back({kv.second, assignment});
      }
  set_nodes_.push_back({value, assignment});
}

std::string YamlFile::where(const YAML::Node& node) const {
  const std::string file = fmt::format("{} '{}'", kind_, path_.string());
  if (!node.IsDefined()) return file;
  // The latest --set wins: it replaced what an earlier one made.
  for (auto it = set_nodes_.rbegin(); it != set_nodes_.rend(); ++it)
    if (contains_node(it->node, node))
      return fmt::format("{} (from --set {})", file, it->assignment);
  const YAML::Mark mark = node.Mark();
  if (mark.is_null()) return file;
  return fmt::format("{} {}", file, position(mark));
}

void YamlFile::fail(const YAML::Node& node, std::string_view rule) const {
  throw Error(ErrorKind::invalid_input, fmt::format("{}: {}", where(node), rule));
}

void schema_error(const YamlFile& file, const YAML::Node& node, std::string_view rule) {
  file.fail(node, rule);
}

std::string yaml_key_name(std::string_view section, std::string_view key) {
  return section.empty() ? std::string(key) : fmt::format("{}.{}", section, key);
}

namespace detail {

void require_mapping(const YamlFile& file, const YAML::Node& node, std::string_view section) {
  if (!node.IsMap())
    file.fail(node,
              fmt::format("{} must be a mapping", section.empty() ? "the top level" : section));
}

void fail_unknown_key(const YamlFile& file, const YAML::Node& key, std::string_view section,
                      std::string_view known_keys) {
  file.fail(key, fmt::format("unknown key '{}'; known keys are {}",
                             yaml_key_name(section, key.Scalar()), known_keys));
}

}  // namespace detail

}  // namespace bitplan
