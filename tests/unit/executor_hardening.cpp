// Plan building at sizes that overflow 64 bits (issue 17.10): huge batches and shapes are
// refused with the node or input named, before oneDNN or the memory plan multiplies them.
#include <doctest/doctest.h>

#include <cstdint>
#include <string>

#include "executor/plan.hpp"

namespace executor_hardening_test {

using namespace bitplan;

namespace {

// y = Gemm(a, b) where a and b are the input x [N, 1] expanded to `a_dims` and `b_dims`:
// graph inputs are limited to 2^40 elements, but a node can ask for far larger values.
Graph expanded_gemm_graph(const Dims& a_dims, const Dims& b_dims) {
  Graph graph;
  graph.name = "gemm";
  graph.opset = 13;
  graph.inputs.push_back({"x", DType::f32, {-1, 1}, {"N", ""}});
  graph.initializers["a_dims"] = Tensor::from_values<std::int64_t>({2}, a_dims);
  graph.initializers["b_dims"] = Tensor::from_values<std::int64_t>({2}, b_dims);
  graph.outputs.push_back({"y", DType::f32, {-1, -1}, {"N", ""}});
  graph.nodes.push_back({"expand_a", "Expand", "", {"x", "a_dims"}, {"a"}, {}});
  graph.nodes.push_back({"expand_b", "Expand", "", {"x", "b_dims"}, {"b"}, {}});
  graph.nodes.push_back({"fc", "Gemm", "", {"a", "b"}, {"y"}, {}});
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

TEST_CASE("17.10 build_gemm refuses an output whose size overflows, naming the node") {
  // a [2^40, 1] and b [1, 2^24] fit; y [2^40, 2^24] would be 2^66 bytes.
  const std::string error =
      plan_error(expanded_gemm_graph({std::int64_t{1} << 40, 1}, {1, std::int64_t{1} << 24}), 1,
                 ErrorKind::invalid_input);
  CHECK(error ==
        "invalid node 'fc' (Gemm): output shape [1099511627776, 16777216]: its size in "
        "bytes does not fit in 64 bits");
}

TEST_CASE("17.10 build_gemm refuses a multiply-accumulate count that overflows") {
  // a, b and y are [2^30, 2^30] (2^62 bytes each), but M*N*K is 2^90.
  const std::int64_t side = std::int64_t{1} << 30;
  const std::string error =
      plan_error(expanded_gemm_graph({side, side}, {side, side}), 1, ErrorKind::invalid_input);
  CHECK(error ==
        "invalid node 'fc' (Gemm): the multiply-accumulate count 1073741824 x "
        "1073741824 x 1073741824 does not fit in 64 bits");
}

TEST_CASE("17.10 an Expand whose output element count overflows is refused, naming the node") {
  const std::string error =
      plan_error(expanded_gemm_graph({std::int64_t{1} << 40, std::int64_t{1} << 24}, {1, 1}), 1,
                 ErrorKind::invalid_input);
  CHECK(error.find("invalid node 'expand_a' (Expand): ") == 0);
  CHECK(error.find("[1099511627776, 16777216]") != std::string::npos);
}

TEST_CASE("a Gemm plan of ordinary sizes still builds and counts its MACs") {
  const ExecutionPlan plan(expanded_gemm_graph({8, 4}, {4, 2}), PlanOptions{1});
  REQUIRE(plan.steps().size() == 3);
  CHECK(plan.steps()[2].macs == 8 * 4 * 2);
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

namespace {

// y = ConvTranspose(x, w) of a [N, 1, 4, 4] input and [1, 1, 3, 3] weights, with `attrs`.
Graph conv_transpose_graph(std::map<std::string, AttrValue> attrs) {
  Graph graph;
  graph.name = "deconv";
  graph.opset = 13;
  graph.inputs.push_back({"x", DType::f32, {-1, 1, 4, 4}, {"N", "", "", ""}});
  graph.initializers["w"] = Tensor(DType::f32, {1, 1, 3, 3});
  graph.outputs.push_back({"y", DType::f32, {-1, 1, 6, 6}, {"N", "", "", ""}});
  graph.nodes.push_back({"deconv", "ConvTranspose", "", {"x", "w"}, {"y"}, std::move(attrs)});
  return graph;
}

}  // namespace

TEST_CASE("17.10 ConvTranspose attributes of the wrong length or overflowing size are refused") {
  // One stride for two spatial axes: read past the attribute's end before.
  CHECK(plan_error(conv_transpose_graph({{"strides", Dims{2}}}), 1, ErrorKind::invalid_input)
            .find("invalid node 'deconv' (ConvTranspose): strides [2], dilations [1, 1], "
                  "output_padding [0, 0], pads [0, 0, 0, 0] and output_shape [] must have 2 "
                  "(pads 4) entries for a 2-d input") != std::string::npos);
  CHECK(plan_error(conv_transpose_graph({{"strides", Dims{std::int64_t{1} << 62, 1}}}), 1,
                   ErrorKind::invalid_input)
            .find("the output size overflows 64 bits") != std::string::npos);
  CHECK(plan_error(conv_transpose_graph({{"pads", Dims{-1, 0, 0, 0}}}), 1, ErrorKind::invalid_input)
            .find("output_padding [0, 0] and pads [-1, 0, 0, 0] >= 0") != std::string::npos);
}

TEST_CASE("17.10 Resize scales whose output length does not fit in int64 are refused") {
  Graph graph;
  graph.name = "resize";
  graph.opset = 13;
  graph.inputs.push_back({"x", DType::f32, {-1, 1, 4, 4}, {"N", "", "", ""}});
  graph.initializers["scales"] =
      Tensor::from_values<float>({4}, std::vector<float>{1.f, 1.f, 1e30f, 1.f});
  graph.outputs.push_back({"y", DType::f32, {-1, 1, 4, 4}, {"N", "", "", ""}});
  graph.nodes.push_back({"up", "Resize", "", {"x", "", "scales"}, {"y"}, {}});
  CHECK(plan_error(graph, 1, ErrorKind::invalid_input)
            .find("invalid node 'up' (Resize): an output length of") != std::string::npos);
}

}  // namespace executor_hardening_test
