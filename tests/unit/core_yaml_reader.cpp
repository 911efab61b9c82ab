// The shared YAML reader (core/yaml_reader.hpp): one document, no repeated keys, errors at
// the file, line and column or at the --set that made the node, and key tables.
#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "core/yaml_reader.hpp"

namespace core_yaml_reader_test {

namespace fs = std::filesystem;
using namespace bitplan;

namespace {

// The error `f` throws: its kind and message.
template <typename F>
std::pair<ErrorKind, std::string> error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return {e.kind(), e.what()};
  }
  FAIL("no error was thrown");
  return {};
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

std::string parse_error(const std::string& text) {
  const auto [kind, message] = error_of([&] { YamlFile::parse(text, "run.yaml", "config"); });
  CHECK(kind == ErrorKind::invalid_input);
  return message;
}

// A section of two keys for the key-table tests: what was read, in the order it was read.
struct Probe {
  std::vector<std::string> read;  // "<name>=<value>"
};

void record(const KeyValue& v, Probe& probe) {
  probe.read.push_back(v.name + "=" + v.node.Scalar());
}

constexpr KeyReader<Probe> kProbeKeys[] = {{"policy", record}, {"seed", record}};

}  // namespace

TEST_CASE("17.9 duplicate YAML keys are refused with both places named") {
  CHECK(parse_error("model: a.onnx\nsearch:\n  seed: 1\nmodel: b.onnx\n") ==
        "config 'run.yaml' line 4, column 1: key 'model' appears twice in one mapping (first at "
        "line 1, column 1); each key may appear once");
  // Nested mappings, flow mappings and mappings inside lists are walked too.
  CHECK(contains(parse_error("search:\n  seed: 1\n  policy: x\n  seed: 2\n"),
                 "line 4, column 3: key 'search.seed' appears twice in one mapping (first at "
                 "line 2, column 3)"));
  CHECK(contains(parse_error("layers: {a: fp32, b: fp32, a: fp32}\n"),
                 "key 'layers.a' appears twice"));
  CHECK(contains(parse_error("entries:\n  - {key: k, key: j}\n"),
                 "line 2, column 14: key 'entries[0].key' appears twice"));
  // The same key in two different mappings is fine.
  const YamlFile ok =
      YamlFile::parse("a: {x: 1}\nb: {x: 2}\nc: [{x: 1}, {x: 2}]\n", "ok.yaml", "config");
  CHECK(ok.root()["b"]["x"].as<int>() == 2);
}

TEST_CASE("yaml reader: keys are names") {
  // yaml-cpp reads these, but `as<std::string>()` on such a key throws a YAML exception,
  // which bitplan reported as an internal error.
  CHECK(parse_error("? [a]\n: 1\n") ==
        "config 'run.yaml' line 1, column 3: a key of the top level is a list; keys must be names");
  CHECK(contains(parse_error("search: {{a: 1}: 2}\n"), "a key of search is a mapping"));
  CHECK(contains(parse_error("search:\n  ~: 1\n"), "line 2, column 3: a key of search is empty"));
  CHECK(contains(parse_error("a: &x b\nsearch: {*x : 1}\n"), "a key of search is an alias"));
}

TEST_CASE("17.9 a second YAML document is refused") {
  CHECK(parse_error("model: a.onnx\n---\nmodel: b.onnx\n") ==
        "config 'run.yaml' line 2, column 1: a second YAML document starts here; the file must "
        "hold exactly one");
  // Even an empty one after a separator.
  CHECK(contains(parse_error("model: a.onnx\n---\n"), "a second YAML document"));
  // One document with explicit markers, an empty file and a comment-only file are fine.
  CHECK(YamlFile::parse("---\nmodel: a.onnx\n...\n", "one.yaml", "config")
            .root()["model"]
            .as<std::string>() == "a.onnx");
  CHECK(YamlFile::parse("", "empty.yaml", "config").root().IsNull());
  CHECK(YamlFile::parse("# nothing\n", "comment.yaml", "config").root().IsNull());
}

TEST_CASE("yaml reader: syntax errors, aliases and files") {
  CHECK(contains(parse_error("a: [1, 2\n"), "config 'run.yaml' line "));
  CHECK(contains(parse_error("a: [1, 2\n"), "YAML syntax error"));
  // A syntax error wins over what it made the structure look like (here, a mapping as a
  // key) and over a repeated key before it.
  CHECK(contains(parse_error("entries: [{key: k\n"), "YAML syntax error"));
  CHECK(contains(parse_error("a: {b: 1, b: 2\n"), "YAML syntax error"));
  // Aliases are not expanded by the checks: a "billion laughs" text is read at once.
  std::string laughs = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n";
  for (int i = 1; i < 30; ++i)
    laughs += fmt::format("a{0}: &a{0} [*a{1}, *a{1}, *a{1}, *a{1}, *a{1}, *a{1}, *a{1}, *a{1}]\n",
                          i, i - 1);
  CHECK(YamlFile::parse(laughs, "laughs.yaml", "config").root().size() == 30);

  const fs::path dir = fs::temp_directory_path() / ("bitplan_yaml_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "big.yaml") << "a: " << std::string(200, 'x') << "\n";
  const auto [kind, message] = error_of([&] { YamlFile::load(dir / "big.yaml", "plan", 100); });
  CHECK(kind == ErrorKind::invalid_input);
  CHECK(contains(message, "big.yaml"));
  std::ofstream(dir / "dup.yaml") << "a: 1\na: 2\n";
  CHECK(contains(error_of([&] { YamlFile::load(dir / "dup.yaml", "plan", 100); }).second,
                 "plan '" + (dir / "dup.yaml").string() + "' line 2, column 1: key 'a'"));
  fs::remove_all(dir);
}

TEST_CASE("yaml reader: schema errors name the node's line, or the --set that made it") {
  YamlFile file = YamlFile::parse("search:\n  policy: exact\n", "run.yaml", "config");
  CHECK(error_of([&] {
          schema_error(file, file.root()["search"]["policy"], "bad policy");
        }).second == "config 'run.yaml' line 2, column 11: bad policy");

  // Was "line 0, column 0" (a key --set added) or "line 1, column 1" (a value, placed in the
  // --set text): neither is a line of the file.
  file.set("search.frobnicate=1");
  file.set("evaluate.batch=[1, 2]");
  const YAML::Node& root = file.root();
  for (const auto& kv : root["search"])
    if (kv.first.Scalar() == "frobnicate")
      CHECK(error_of([&] { schema_error(file, kv.first, "unknown key"); }).second ==
            "config 'run.yaml' (from --set search.frobnicate=1): unknown key");
  CHECK(error_of([&] { schema_error(file, root["search"]["frobnicate"], "x"); }).second ==
        "config 'run.yaml' (from --set search.frobnicate=1): x");
  CHECK(error_of([&] { schema_error(file, root["evaluate"], "x"); }).second ==
        "config 'run.yaml' (from --set evaluate.batch=[1, 2]): x");
  CHECK(error_of([&] { schema_error(file, root["evaluate"]["batch"][1], "x"); }).second ==
        "config 'run.yaml' (from --set evaluate.batch=[1, 2]): x");
  // A value from the file replaced by --set: the --set is named; the file's key keeps its line.
  file.set("search.policy=random");
  CHECK(root["search"]["policy"].as<std::string>() == "random");
  CHECK(error_of([&] { schema_error(file, root["search"]["policy"], "x"); }).second ==
        "config 'run.yaml' (from --set search.policy=random): x");
  CHECK(error_of([&] { schema_error(file, root["search"], "x"); }).second ==
        "config 'run.yaml' line 2, column 3: x");

  // Malformed assignments are usage errors that quote them.
  for (const std::string bad :
       {"search", "=1", "a..b=1", "search.seed=[1", "search.seed={a: 1, a: 2}",
        "search.seed=&x [*x]", "search.policy.x=1"}) {
    CAPTURE(bad);
    const auto [kind, message] = error_of([&] { file.set(bad); });
    CHECK(kind == ErrorKind::usage);
    CHECK(contains(message, "--set '" + bad + "'"));
  }
}

TEST_CASE("yaml reader: key tables") {
  const YamlFile file = YamlFile::parse(
      "search:\n  seed: 7\n  policy: x\nother:\n  sede: 1\nlist: [1]\n", "run.yaml", "config");
  const YAML::Node& root = file.root();

  SUBCASE("known keys come from the table, in its order") {
    CHECK(known_keys<Probe>(kProbeKeys) == "policy, seed");
    constexpr KeyReader<Probe> kMoreKeys[] = {
        {"seed", record}, {"budget", record}, {"policy", record}};
    CHECK(known_keys<Probe>(kMoreKeys) == "seed, budget, policy");
    Probe probe;
    CHECK(error_of([&] { read_section(file, root["other"], "other", kMoreKeys, probe); }).second ==
          "config 'run.yaml' line 5, column 3: unknown key 'other.sede'; known keys are seed, "
          "budget, policy");
  }
  SUBCASE("each key is read in the table's order, named by its section") {
    Probe probe;
    read_section(file, root["search"], "search", kProbeKeys, probe);
    CHECK(probe.read == std::vector<std::string>{"search.policy=x", "search.seed=7"});
  }
  SUBCASE("unknown keys and non-mappings are refused at their line and column") {
    Probe probe;
    CHECK(error_of([&] { read_section(file, root["other"], "other", kProbeKeys, probe); }).second ==
          "config 'run.yaml' line 5, column 3: unknown key 'other.sede'; known keys are policy, "
          "seed");
    CHECK(error_of([&] { read_section(file, root, "", kProbeKeys, probe); }).second ==
          "config 'run.yaml' line 1, column 1: unknown key 'search'; known keys are policy, seed");
    CHECK(error_of([&] { read_section(file, root["list"], "list", kProbeKeys, probe); }).second ==
          "config 'run.yaml' line 6, column 7: list must be a mapping");
    // Nothing is read from a section with an unknown key.
    CHECK(probe.read.empty());
  }
  SUBCASE("a reader's errors point at the value") {
    constexpr KeyReader<Probe> kStrictKeys[] = {
        {"policy", [](const KeyValue& v, Probe&) { v.fail(v.name + " is wrong"); }},
        {"seed", record}};
    Probe probe;
    CHECK(error_of([&] {
            read_section(file, root["search"], "search", kStrictKeys, probe);
          }).second == "config 'run.yaml' line 3, column 11: search.policy is wrong");
  }
  SUBCASE("a key given twice in a section is refused when the file is read") {
    CHECK(parse_error("search:\n  seed: 1\n  seed: 2\n") ==
          "config 'run.yaml' line 3, column 3: key 'search.seed' appears twice in one mapping "
          "(first at line 2, column 3); each key may appear once");
  }
  SUBCASE("an unknown key a --set added names the override, not a line") {
    YamlFile changed = YamlFile::parse("search:\n  seed: 7\n", "run.yaml", "config");
    changed.set("search.sede=1");
    Probe probe;
    CHECK(error_of([&] {
            read_section(changed, changed.root()["search"], "search", kProbeKeys, probe);
          }).second ==
          "config 'run.yaml' (from --set search.sede=1): unknown key 'search.sede'; known keys "
          "are policy, seed");
  }
}

}  // namespace core_yaml_reader_test
