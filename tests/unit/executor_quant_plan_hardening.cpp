// Plans that yaml-cpp alone reads without a word but that do not say one thing: a layer
// listed twice, a second document, keys that are not names (issue 17, item 9).
#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "core/error.hpp"
#include "executor/model.hpp"
#include "executor/quant/plan.hpp"

namespace executor_quant_plan_hardening_test {

namespace fs = std::filesystem;
using namespace bitplan;

namespace {
const fs::path kSource = BITPLAN_SOURCE_DIR;

struct PlanFiles {
  fs::path dir =
      fs::temp_directory_path() / ("bitplan_plan_hardening_" + std::to_string(::getpid()));
  PlanFiles() { fs::create_directories(dir); }
  ~PlanFiles() { fs::remove_all(dir); }
  fs::path write(const std::string& name, const std::string& text) const {
    std::ofstream(dir / name) << text;
    return dir / name;
  }
};

std::pair<ErrorKind, std::string> load_error(const fs::path& plan, const Graph& graph) {
  try {
    load_plan(plan, graph, "");
  } catch (const Error& e) {
    return {e.kind(), e.what()};
  }
  FAIL("the plan was accepted");
  return {};
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}
}  // namespace

TEST_CASE("17.9 a layer listed twice in a plan") {
  const LoadedModel mlp = load_model(kSource / "models/fmnist_mlp.onnx");
  const std::string first = quantizable_layers(mlp.graph).at(0).name;
  const PlanFiles files;
  // Was: accepted, the second entry silently replacing the first.
  const fs::path plan = files.write("twice.yaml", "bitplan_plan: 1\nlayers:\n  " + first +
                                                      ": {weights: int8/channel/sym}\n  " + first +
                                                      ": {weights: int4/channel/sym}\n");
  const auto [kind, message] = load_error(plan, mlp.graph);
  CHECK(kind == ErrorKind::invalid_input);
  CHECK(message == "plan '" + plan.string() + "' line 4, column 3: key 'layers." + first +
                       "' appears twice in one mapping (first at line 3, column 3); each key may "
                       "appear once");
  // The same name quoted differently is the same layer.
  const fs::path quoted = files.write("quoted.yaml", "bitplan_plan: 1\nlayers:\n  " + first +
                                                         ": fp32\n  \"" + first + "\": fp32\n");
  CHECK(contains(load_error(quoted, mlp.graph).second, "appears twice"));
  // A key twice inside one layer's spec.
  const fs::path inner = files.write(
      "inner.yaml",
      "bitplan_plan: 1\ndefaults: {weights: int8/channel/sym, weights: int4/channel/sym}\n");
  CHECK(contains(load_error(inner, mlp.graph).second,
                 "line 2, column 39: key 'defaults.weights' appears twice"));
}

TEST_CASE("17.9 a second document in a plan") {
  const LoadedModel mlp = load_model(kSource / "models/fmnist_mlp.onnx");
  const PlanFiles files;
  // Was: the second document (here a whole second plan) silently ignored.
  const fs::path plan =
      files.write("two.yaml",
                  "bitplan_plan: 1\ndefaults: fp32\n---\nbitplan_plan: 1\ndefaults: "
                  "{weights: int8/channel/sym}\n");
  const auto [kind, message] = load_error(plan, mlp.graph);
  CHECK(kind == ErrorKind::invalid_input);
  CHECK(contains(message, "plan '" + plan.string() + "' line 3, column 1: a second YAML document"));
}

TEST_CASE("17.9 plan keys that are not names, and non-text values, are schema errors") {
  const LoadedModel mlp = load_model(kSource / "models/fmnist_mlp.onnx");
  const std::string first = quantizable_layers(mlp.graph).at(0).name;
  const PlanFiles files;
  // Were internal errors (yaml-cpp's bad conversion escaped as exit 1).
  for (const auto& [text, part] : std::vector<std::pair<std::string, std::string>>{
           {"bitplan_plan: 1\nlayers:\n  [a, b]: fp32\n", "a key of layers is a list"},
           {"bitplan_plan: 1\nmodel_hash: [1]\n", "line 2, column 13: model_hash must be a hash"},
           {"bitplan_plan: 1\nlayers:\n  " + first + ": {calibration: [mse]}\n",
            "calibration must be a method name"},
           {"bitplan_plan: 1\nlayers:\n  " + first + ": {weigths: int8/channel/sym}\n",
            "unknown key '" + first +
                ".weigths'; known keys are weights, activations, dynamic, calibration"},
       }) {
    const std::string& plan_text = text;  // CAPTURE's lambda cannot capture a binding
    CAPTURE(plan_text);
    const auto [kind, message] = load_error(files.write("bad.yaml", text), mlp.graph);
    CHECK(kind == ErrorKind::invalid_input);
    CHECK(contains(message, part));
  }
}

}  // namespace executor_quant_plan_hardening_test
