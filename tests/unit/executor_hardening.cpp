// Plan building at sizes that overflow 64 bits (issue 17.10): huge batches and shapes are
// refused with the node or input named, before oneDNN or the memory plan multiplies them.
#include <doctest/doctest.h>

#include <cstdint>
#include <string>

#include "executor/plan.hpp"

using namespace bitplan;

namespace {

// y = Gemm(x, w) with x [N, k] (N symbolic: the batch) and w [k, n] an initializer or, when
// `runtime_weights`, a graph input of symbolic shape [N, N].
Graph gemm_graph(std::int64_t k, std::int64_t n, bool runtime_weights = false) {
  Graph graph;
  graph.name = "gemm";
  graph.opset = 13;
  graph.inputs.push_back({"x", DType::f32, {-1, runtime_weights ? -1 : k}, {"N", ""}});
  if (runtime_weights)
    graph.inputs.push_back({"w", DType::f32, {-1, -1}, {"N", "N"}});
  else
    graph.initializers["w"] = Tensor(DType::f32, {k, n});
  graph.outputs.push_back({"y", DType::f32, {-1, n}, {"N", ""}});
  graph.nodes.push_back({"fc", "Gemm", "", {"x", "w"}, {"y"}, {}});
  return graph;
}

std::string plan_error(const Graph& graph, std::int64_t batch, ErrorKind kind) {
  try {
    ExecutionPlan plan(graph, PlanOptions{batch});
  } catch (const Error& e) {
    CHECK(static_cast<int>(e.kind()) == static_cast<int>(kind));
    return e.what();
  }
  FAIL("the plan was built at batch " << batch);
  return "";
}

}  // namespace

TEST_CASE("17.10 build_gemm refuses a batch whose output size overflows, naming the node") {
  // x [2^60, 1] is 2^62 bytes (fits); y [2^60, 16] would be 2^66 bytes.
  const std::string error =
      plan_error(gemm_graph(1, 16), std::int64_t{1} << 60, ErrorKind::invalid_input);
  CHECK(error ==
        "invalid node 'fc' (Gemm): output shape [1152921504606846976, 16]: its size in "
        "bytes does not fit in 64 bits");
}

TEST_CASE("17.10 build_gemm refuses a multiply-accumulate count that overflows") {
  // x, w and y are [2^30, 2^30] (2^62 bytes each), but M*N*K is 2^90.
  const std::string error =
      plan_error(gemm_graph(0, 0, true), std::int64_t{1} << 30, ErrorKind::invalid_input);
  CHECK(error ==
        "invalid node 'fc' (Gemm): the multiply-accumulate count 1073741824 x "
        "1073741824 x 1073741824 does not fit in 64 bits");
}

TEST_CASE("17.10 a batch whose graph input overflows is refused as a usage error") {
  const std::string error = plan_error(gemm_graph(4, 2), std::int64_t{1} << 62, ErrorKind::usage);
  CHECK(error.find("input 'x' of shape [4611686018427387904, 4] (batch 4611686018427387904): "
                   "its size in bytes does not fit in 64 bits") != std::string::npos);
}

TEST_CASE("a Gemm plan at an ordinary batch still builds and counts its MACs") {
  const ExecutionPlan plan(gemm_graph(4, 2), PlanOptions{8});
  REQUIRE(plan.steps().size() == 1);
  CHECK(plan.steps()[0].macs == 8 * 4 * 2);
}

TEST_CASE("17.10 Tile repeats whose output length overflows are refused") {
  Graph graph;
  graph.name = "tile";
  graph.opset = 13;
  graph.inputs.push_back({"x", DType::f32, {-1, 3}, {"N", ""}});
  graph.initializers["repeats"] =
      Tensor::from_values<std::int64_t>({2}, std::vector<std::int64_t>{std::int64_t{1} << 62, 1});
  graph.outputs.push_back({"y", DType::f32, {-1, 3}, {"N", ""}});
  graph.nodes.push_back({"tile", "Tile", "", {"x", "repeats"}, {"y"}, {}});
  CHECK(plan_error(graph, 4, ErrorKind::invalid_input) ==
        "invalid node 'tile' (Tile): repeats [4611686018427387904, 1] of input [4, 3]: the output "
        "length overflows 64 bits");
}

TEST_CASE("17.10 Conv dilations whose window extent overflows are refused") {
  Graph graph;
  graph.name = "conv";
  graph.opset = 13;
  graph.inputs.push_back({"x", DType::f32, {-1, 1, 8, 8}, {"N", "", "", ""}});
  graph.initializers["w"] = Tensor(DType::f32, {1, 1, 3, 3});
  graph.outputs.push_back({"y", DType::f32, {-1, 1, 8, 8}, {"N", "", "", ""}});
  graph.nodes.push_back(
      {"conv", "Conv", "", {"x", "w"}, {"y"}, {{"dilations", Dims{std::int64_t{1} << 62, 1}}}});
  CHECK(plan_error(graph, 1, ErrorKind::invalid_input)
            .find("invalid node 'conv' (Conv): kernel [3, 3], strides [1, 1], dilations "
                  "[4611686018427387904, 1] and pads [0, 0, 0, 0] on input [8, 8]: the window "
                  "arithmetic overflows 64 bits") != std::string::npos);
}
