// Conformance against the ONNX backend node tests shipped in Debian's libonnx-testdata
// (/usr/share/libonnx-testdata/data/node/<test>/model.onnx + test_data_set_*/*.pb): a suite
// nobody here wrote. Every test whose ops bitplan registers is run; a test is
//   passed    when every output matches within |got - want| <= atol + rtol * |want|,
//   declined  when bitplan refuses it with a clear "unsupported" reason (e.g. float16
//             inputs, training-mode BatchNorm), listed in the output,
//   failed    otherwise (wrong numbers, wrong shapes, crashes into internal errors).
// bitplan plans shapes statically, so inputs that fix shapes or bounds (Reshape's shape,
// Pad's pads, Clip's min...) must be known when the plan is built. Where a test feeds such
// a value as a runtime input, the harness retries with the test's inputs bound as
// initializers: the same kernels then run during planning (constant folding). Those tests
// are counted separately.
// The test fails on any failed case. Set BITPLAN_NODE_TESTS to another folder to override.
#include <doctest/doctest.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>

#include "executor/plan.hpp"
#include "ir/onnx_import.hpp"
#include "tests/skip.hpp"

namespace onnx_node_tests_test {

namespace fs = std::filesystem;
using namespace bitplan;

namespace {

constexpr double kRtol = 1e-3;
constexpr double kAtol = 1e-5;

std::vector<Tensor> load_numbered(const fs::path& dir, const std::string& prefix) {
  std::vector<Tensor> out;
  for (int i = 0;; ++i) {
    const fs::path p = dir / fmt::format("{}_{}.pb", prefix, i);
    if (!fs::exists(p)) break;
    out.push_back(load_tensor_pb(p));
  }
  return out;
}

// Empty string when equal within tolerance, else a description of the first mismatch.
std::string compare(const Tensor& got, const Tensor& want) {
  if (got.dims() != want.dims())
    return fmt::format("shape {} != expected {}", to_string(got.dims()), to_string(want.dims()));
  if (got.dtype() != want.dtype())
    return fmt::format("type {} != expected {}", dtype_name(got.dtype()), dtype_name(want.dtype()));
  const auto g = got.to_double_vector(), w = want.to_double_vector();
  for (std::size_t i = 0; i < g.size(); ++i) {
    if (std::isnan(w[i]) && std::isnan(g[i])) continue;
    if (std::isinf(w[i]) && g[i] == w[i]) continue;
    if (!(std::abs(g[i] - w[i]) <= kAtol + kRtol * std::abs(w[i])))
      return fmt::format("element {}: {} != expected {}", i, g[i], w[i]);
  }
  return "";
}

// The node tests bitplan declines on purpose (one name per line, '#' starts a comment).
std::set<std::string> read_expected_declines() {
  std::ifstream in(fs::path(BITPLAN_SOURCE_DIR) / "tests/conformance/expected_declines.txt");
  REQUIRE(in);
  std::set<std::string> names;
  for (std::string line; std::getline(in, line);) {
    line = line.substr(0, line.find('#'));
    line.erase(line.find_last_not_of(" \t") + 1);
    if (!line.empty()) names.insert(line);
  }
  return names;
}

}  // namespace

TEST_CASE("ONNX backend node tests") {
  const char* env = std::getenv("BITPLAN_NODE_TESTS");
  const fs::path root = env ? env : "/usr/share/libonnx-testdata/data/node";
  if (!fs::is_directory(root)) {
    testing::skip(root.string() + " not found (apt install libonnx-testdata)");
    return;
  }
  std::vector<fs::path> dirs;
  for (const auto& e : fs::directory_iterator(root))
    if (fs::exists(e.path() / "model.onnx")) dirs.push_back(e.path());
  std::sort(dirs.begin(), dirs.end());

  const auto& registry = OpRegistry::instance();
  int passed = 0, not_applicable = 0;
  std::map<std::string, std::string> declined, failed;
  std::set<std::string> ops_covered, bound;
  for (const auto& dir : dirs) {
    const std::string name = dir.filename().string();
    try {
      bool applicable = true;
      for (const auto& op : peek_op_types(dir / "model.onnx"))
        applicable = applicable && registry.find("", op);
      if (!applicable) {
        ++not_applicable;
        continue;
      }
      const Graph graph = load_onnx(dir / "model.onnx");
      for (const auto& set : fs::directory_iterator(dir)) {
        if (!set.is_directory()) continue;
        const std::vector<Tensor> inputs = load_numbered(set.path(), "input");
        const std::vector<Tensor> expected = load_numbered(set.path(), "output");
        // Test data fixes every dim, including the symbolic ones.
        Graph fixed = graph;
        for (std::size_t i = 0; i < fixed.inputs.size() && i < inputs.size(); ++i) {
          fixed.inputs[i].dims = inputs[i].dims();
          fixed.inputs[i].dtype = inputs[i].dtype();
        }
        std::vector<Tensor> outputs;
        std::unique_ptr<ExecutionPlan> plan;  // outputs are views into the plan's buffers
        try {
          plan = std::make_unique<ExecutionPlan>(fixed, PlanOptions{});
          outputs = plan->run(inputs);
        } catch (const Error& e) {
          if (std::string(e.what()).find("must be known before running") == std::string::npos)
            throw;
          for (std::size_t i = 0; i < fixed.inputs.size() && i < inputs.size(); ++i)
            fixed.initializers[fixed.inputs[i].name] = inputs[i];
          fixed.inputs.clear();
          plan = std::make_unique<ExecutionPlan>(fixed, PlanOptions{});
          outputs = plan->run({});
          bound.insert(name);
        }
        for (std::size_t i = 0; i < expected.size(); ++i) {
          const std::string diff = compare(outputs.at(i), expected[i]);
          if (!diff.empty())
            throw Error(ErrorKind::internal, fmt::format("output {}: {}", i, diff));
        }
      }
      for (const auto& node : graph.nodes) ops_covered.insert(node.op_type);
      ++passed;
    } catch (const Error& e) {
      if (e.kind() == ErrorKind::unsupported) {
        // Tests whose ops exist but whose model is outside bitplan's scope.
        std::string reason = e.what();
        declined[name] = reason.substr(0, 160);
      } else {
        failed[name] = e.what();
      }
    } catch (const std::exception& e) {
      failed[name] = std::string("exception: ") + e.what();
    }
  }
  // Declines are checked against the list in the repo: a test that used to pass and now
  // declines fails the suite, and so does a listed test that now passes (take it off the list).
  const std::set<std::string> expected_declines = read_expected_declines();
  for (const auto& [name, why] : declined) {
    MESSAGE("declined " << name << ": " << why);
    if (!expected_declines.count(name))
      failed[name] = "declined, but not in tests/conformance/expected_declines.txt: " + why;
  }
  for (const auto& name : expected_declines)
    if (!declined.count(name) && fs::is_directory(root / name))
      failed[name] = failed.count(name) ? failed[name]
                                        : "listed in tests/conformance/expected_declines.txt "
                                          "but no longer declined: take it off the list";
  for (const auto& [name, why] : failed) MESSAGE("FAILED " << name << ": " << why);
  const int run = passed + static_cast<int>(failed.size());
  MESSAGE(
      fmt::format("ONNX node tests: {} directories; {} use only supported ops; ran {}, passed {}, "
                  "failed {}, declined {} (unsupported types/attributes); {} of the passed needed "
                  "shape inputs bound at plan time; {} op types covered; tolerance |got-want| <= "
                  "{} + {}*|want|",
                  dirs.size(), dirs.size() - static_cast<std::size_t>(not_applicable), run, passed,
                  failed.size(), declined.size(), bound.size(), ops_covered.size(), kAtol, kRtol));
  CHECK(failed.empty());
  CHECK(passed > 0);
}

}  // namespace onnx_node_tests_test
