// Shape and data-movement ops (executor/ops/shape.cpp, resize.cpp), each run as a one-node
// graph through ExecutionPlan and compared with hand-computed values. Inputs are either
// runtime graph inputs (the kernel runs in ExecutionPlan::run) or initializers (the planner
// folds the node), so both paths are covered.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <numeric>

#include "executor/plan.hpp"

namespace executor_shape_ops_test_test {

using namespace bitplan;

namespace {

enum class Feed { runtime, constant, omitted };

struct Input {
  Tensor value;
  Feed feed = Feed::runtime;
};

Input runtime(Tensor t) {
  return {std::move(t), Feed::runtime};
}
Input constant(Tensor t) {
  return {std::move(t), Feed::constant};
}
Input omitted() {
  return {Tensor(), Feed::omitted};
}

template <typename T>
Tensor tensor(Dims dims, std::vector<T> values) {
  return Tensor::from_values<T>(std::move(dims), values);
}
Tensor f32(Dims dims, std::vector<float> values) {
  return tensor<float>(std::move(dims), std::move(values));
}
Tensor i64(Dims dims, std::vector<std::int64_t> values) {
  return tensor<std::int64_t>(std::move(dims), std::move(values));
}
Tensor i64s(std::vector<std::int64_t> values) {
  const auto n = static_cast<std::int64_t>(values.size());
  return i64({n}, std::move(values));
}
// 0, 1, 2, ... as float32 in the given shape.
Tensor iota_f32(Dims dims) {
  std::vector<float> v(static_cast<std::size_t>(product(dims)));
  std::iota(v.begin(), v.end(), 0.0f);
  return f32(std::move(dims), std::move(v));
}

struct OneNode {
  std::string op_type;
  std::vector<Input> inputs;
  std::map<std::string, AttrValue> attrs = {};
  std::size_t outputs = 1;
  std::int64_t opset = 13;
};

// A graph of one node; `feeds` receives the runtime inputs in graph order.
Graph one_node_graph(const OneNode& spec, std::vector<Tensor>& feeds) {
  Graph graph;
  graph.name = spec.op_type;
  graph.opset = spec.opset;
  Node node{spec.op_type, spec.op_type, "", {}, {}, spec.attrs};
  for (std::size_t i = 0; i < spec.inputs.size(); ++i) {
    const Input& in = spec.inputs[i];
    const std::string name = in.feed == Feed::omitted ? "" : "in" + std::to_string(i);
    node.inputs.push_back(name);
    if (in.feed == Feed::constant) graph.initializers[name] = in.value;
    if (in.feed == Feed::runtime) {
      graph.inputs.push_back({name, in.value.dtype(), in.value.dims(), {}});
      feeds.push_back(in.value);
    }
  }
  for (std::size_t i = 0; i < spec.outputs; ++i) {
    node.outputs.push_back("out" + std::to_string(i));
    graph.outputs.push_back({node.outputs.back(), DType::f32, {}, {}});
  }
  graph.nodes.push_back(std::move(node));
  return graph;
}

// Plans and runs a one-node graph; returns copies of the outputs (the plan's are views).
std::vector<Tensor> run(const OneNode& spec) {
  std::vector<Tensor> feeds;
  ExecutionPlan plan(one_node_graph(spec, feeds), PlanOptions{});
  std::vector<Tensor> results;
  for (const Tensor& t : plan.run(feeds)) results.push_back(t.clone());
  return results;
}

Tensor run1(const OneNode& spec) {
  return run(spec).at(0);
}

void check_values(const Tensor& got, const Dims& dims, const std::vector<double>& want) {
  CHECK(to_string(got.dims()) == to_string(dims));
  const auto values = got.to_double_vector();
  REQUIRE(values.size() == want.size());
  for (std::size_t i = 0; i < want.size(); ++i) {
    INFO("element " << i);
    CHECK(values[i] == doctest::Approx(want[i]).epsilon(1e-6));
  }
}

// Throws an Error of `kind` whose message contains `text`.
void check_error(const OneNode& spec, ErrorKind kind, const std::string& text) {
  try {
    run(spec);
    FAIL("no error; expected one containing '" << text << "'");
  } catch (const Error& e) {
    CHECK(e.kind() == kind);
    CHECK_MESSAGE(std::string(e.what()).find(text) != std::string::npos, e.what());
  }
}

}  // namespace

TEST_CASE("Shape: constant output, opset 15 start/end") {
  const OneNode shape{"Shape", {runtime(iota_f32({2, 3, 4}))}, {}, 1, 15};
  check_values(run1(shape), {3}, {2, 3, 4});
  CHECK(run1(shape).dtype() == DType::i64);
  std::vector<Tensor> feeds;
  CHECK(ExecutionPlan(one_node_graph(shape, feeds), PlanOptions{}).steps().empty());  // folded
  check_values(
      run1({"Shape", {runtime(iota_f32({2, 3, 4}))}, {{"start", std::int64_t{-2}}}, 1, 15}), {2},
      {3, 4});
  check_values(run1({"Shape",
                     {runtime(iota_f32({2, 3, 4}))},
                     {{"start", std::int64_t{1}}, {"end", std::int64_t{-1}}},
                     1,
                     15}),
               {1}, {3});
  // Out-of-range bounds clamp; an empty range gives an empty shape.
  check_values(run1({"Shape",
                     {runtime(iota_f32({2, 3, 4}))},
                     {{"start", std::int64_t{-10}}, {"end", std::int64_t{10}}},
                     1,
                     15}),
               {3}, {2, 3, 4});
  check_values(run1({"Shape", {runtime(iota_f32({2, 3}))}, {{"start", std::int64_t{2}}}, 1, 15}),
               {0}, {});
}

TEST_CASE("Reshape: 0 copies a dim, -1 is inferred, the output is a view") {
  const Tensor x = iota_f32({2, 3, 4});
  check_values(run1({"Reshape", {runtime(x), constant(i64s({0, -1}))}, {}, 1, 14}), {2, 12},
               x.to_double_vector());
  check_values(run1({"Reshape", {runtime(x), constant(i64s({-1, 0, 2}))}, {}, 1, 14}), {4, 3, 2},
               x.to_double_vector());
  // allowzero: a 0 is a zero-length dim.
  check_values(run1({"Reshape",
                     {runtime(tensor<float>({0, 3}, {})), constant(i64s({3, 0}))},
                     {{"allowzero", std::int64_t{1}}},
                     1,
                     14}),
               {3, 0}, {});

  // No copy: the output aliases the runtime input.
  Graph graph;
  graph.opset = 14;
  graph.inputs.push_back({"x", DType::f32, {2, 3, 4}, {}});
  graph.initializers["shape"] = i64s({6, 4});
  graph.nodes.push_back({"r", "Reshape", "", {"x", "shape"}, {"y"}, {}});
  graph.outputs.push_back({"y", DType::f32, {}, {}});
  ExecutionPlan view_plan(graph, PlanOptions{});
  const std::vector<Tensor> feeds{x};
  CHECK(view_plan.run(feeds)[0].raw() == x.raw());

  check_error({"Reshape", {runtime(x), constant(i64s({-1, -1}))}, {}, 1, 14},
              ErrorKind::invalid_input, "more than one -1");
  check_error({"Reshape", {runtime(x), constant(i64s({5, -1}))}, {}, 1, 14},
              ErrorKind::invalid_input, "cannot infer");
  check_error({"Reshape", {runtime(x), runtime(i64s({24}))}, {}, 1, 14}, ErrorKind::unsupported,
              "must be known before running");
}

TEST_CASE("Cast to the type the input has is a view; other casts convert") {
  const Tensor x = f32({2, 2}, {1.5f, -2.5f, 3.0f, 4.25f});
  Graph graph;
  graph.opset = 13;
  graph.inputs.push_back({"x", DType::f32, {2, 2}, {}});
  graph.nodes.push_back({"same", "Cast", "", {"x"}, {"y"}, {{"to", std::int64_t{1}}}});
  graph.nodes.push_back({"wide", "Cast", "", {"x"}, {"z"}, {{"to", std::int64_t{7}}}});
  graph.outputs.push_back({"y", DType::f32, {}, {}});
  graph.outputs.push_back({"z", DType::i64, {}, {}});
  ExecutionPlan plan(graph, PlanOptions{});
  REQUIRE(plan.steps().size() == 2);
  CHECK(plan.steps()[0].view);  // float -> float: no kernel (what the GPU cost model skips)
  CHECK(!plan.steps()[1].view);
  const std::vector<Tensor> feeds{x};
  const auto out = plan.run(feeds);
  CHECK(out[0].raw() == x.raw());
  check_values(out[0], {2, 2}, {1.5, -2.5, 3.0, 4.25});
  check_values(out[1], {2, 2}, {1, -2, 3, 4});
}

TEST_CASE("Flatten, Squeeze, Unsqueeze, Identity") {
  const Tensor x = iota_f32({2, 1, 3, 1});
  const auto v = x.to_double_vector();
  check_values(run1({"Flatten", {runtime(x)}, {{"axis", std::int64_t{-1}}}}), {6, 1}, v);
  check_values(run1({"Flatten", {runtime(x)}, {{"axis", std::int64_t{0}}}}), {1, 6}, v);
  check_values(run1({"Flatten", {runtime(x)}, {{"axis", std::int64_t{4}}}}), {6, 1}, v);
  // Squeeze: axes as an attribute (opset 11), as an input (13), or none (all 1s).
  check_values(run1({"Squeeze", {runtime(x)}, {{"axes", std::vector<std::int64_t>{-1}}}, 1, 11}),
               {2, 1, 3}, v);
  check_values(run1({"Squeeze", {runtime(x), constant(i64s({1, -1}))}}), {2, 3}, v);
  check_values(run1({"Squeeze", {runtime(x)}}), {2, 3}, v);
  check_error({"Squeeze", {runtime(x), constant(i64s({0}))}}, ErrorKind::invalid_input,
              "cannot squeeze axis 0");
  // Unsqueeze: axes index the output, in any order, negative from its end.
  check_values(run1({"Unsqueeze", {runtime(iota_f32({3, 4})), constant(i64s({-1, 0}))}}),
               {1, 3, 4, 1}, iota_f32({12}).to_double_vector());
  check_values(run1({"Unsqueeze", {runtime(iota_f32({3, 4})), constant(i64s({3, 1}))}}),
               {3, 1, 4, 1}, iota_f32({12}).to_double_vector());
  check_values(
      run1(
          {"Unsqueeze", {runtime(iota_f32({3}))}, {{"axes", std::vector<std::int64_t>{0}}}, 1, 11}),
      {1, 3}, {0, 1, 2});
  check_error({"Unsqueeze", {runtime(iota_f32({3})), constant(i64s({0, 0}))}},
              ErrorKind::invalid_input, "twice");
  check_values(run1({"Identity", {runtime(x)}}), {2, 1, 3, 1}, v);
}

TEST_CASE("Transpose: default reverses, perm, every dtype, folded") {
  const Tensor x = iota_f32({2, 3, 4});
  check_values(
      run1({"Transpose", {runtime(x)}}), {4, 3, 2},
      {0, 12, 4, 16, 8, 20, 1, 13, 5, 17, 9, 21, 2, 14, 6, 18, 10, 22, 3, 15, 7, 19, 11, 23});
  check_values(
      run1({"Transpose", {constant(x)}, {{"perm", std::vector<std::int64_t>{1, 0, 2}}}}), {3, 2, 4},
      {0, 1, 2, 3, 12, 13, 14, 15, 4, 5, 6, 7, 16, 17, 18, 19, 8, 9, 10, 11, 20, 21, 22, 23});
  const bool flags[] = {true, false, true, true};  // (std::vector<bool> has no span)
  const Tensor b = Tensor::from_values<bool>({2, 2}, flags);
  const Tensor y = run1({"Transpose", {runtime(b)}});
  CHECK(y.dtype() == DType::boolean);
  check_values(y, {2, 2}, {1, 1, 0, 1});
  const Tensor bytes = tensor<std::int8_t>({1, 2, 3}, {-1, -2, -3, 4, 5, 6});
  check_values(
      run1({"Transpose", {runtime(bytes)}, {{"perm", std::vector<std::int64_t>{2, 0, 1}}}}),
      {3, 1, 2}, {-1, 4, -2, 5, -3, 6});
  check_error({"Transpose", {runtime(x)}, {{"perm", std::vector<std::int64_t>{0, 0, 1}}}},
              ErrorKind::invalid_input, "not a permutation");
}

TEST_CASE("Transpose and Slice of larger tensors match a naive loop (parallel, chunked rows)") {
  const Dims dims{3, 70, 50};
  const Tensor x = iota_f32(dims);
  const Tensor t =
      run1({"Transpose", {runtime(x)}, {{"perm", std::vector<std::int64_t>{2, 0, 1}}}});
  const auto got = t.to_double_vector();
  bool same = true;
  for (std::int64_t c = 0; c < 50; ++c)
    for (std::int64_t a = 0; a < 3; ++a)
      for (std::int64_t b = 0; b < 70; ++b)
        same = same && got[static_cast<std::size_t>((c * 3 + a) * 70 + b)] ==
                           static_cast<double>((a * 70 + b) * 50 + c);
  CHECK(same);
  // One long contiguous row (rows are cut into chunks): x[1:, :, :] of a big tensor.
  const Tensor big = iota_f32({2, 300, 200});
  const Tensor s = run1({"Slice", {runtime(big), constant(i64s({1})), constant(i64s({2}))}});
  const auto sv = s.to_double_vector();
  CHECK(s.dims() == Dims{1, 300, 200});
  CHECK(sv.front() == 60000);
  CHECK(sv.back() == 119999);
  CHECK(sv[12345] == 60000 + 12345);
}

TEST_CASE("Slice: negative steps, clamping, negative axes, opset 9 attributes") {
  const Tensor x = iota_f32({3, 4});
  // x[::-1, 3:0:-2]
  check_values(run1({"Slice",
                     {runtime(x), constant(i64s({-1, 3})),
                      constant(i64s({std::numeric_limits<std::int64_t>::min(), 0})),
                      constant(i64s({0, 1})), constant(i64s({-1, -2}))}}),
               {3, 2}, {11, 9, 7, 5, 3, 1});
  // Ends past the axis clamp; starts past it give an empty slice.
  check_values(
      run1({"Slice",
            {runtime(x), constant(i64s({1})), constant(i64s({1000})), constant(i64s({-1}))}}),
      {3, 3}, {1, 2, 3, 5, 6, 7, 9, 10, 11});
  check_values(
      run1({"Slice",
            {runtime(x), constant(i64s({10})), constant(i64s({1000})), constant(i64s({1}))}}),
      {3, 0}, {});
  // Default axes are 0, 1, ...; a step larger than the axis takes one element.
  check_values(run1({"Slice",
                     {runtime(x), constant(i64s({1, 0})), constant(i64s({3, 4})), omitted(),
                      constant(i64s({5, 3}))}}),
               {1, 2}, {4, 7});
  check_values(run1({"Slice",
                     {runtime(x)},
                     {{"starts", std::vector<std::int64_t>{1}},
                      {"ends", std::vector<std::int64_t>{-1}},
                      {"axes", std::vector<std::int64_t>{1}}},
                     1,
                     9}),
               {3, 2}, {1, 2, 5, 6, 9, 10});
  check_error({"Slice",
               {runtime(x), constant(i64s({0})), constant(i64s({1})), constant(i64s({0})),
                constant(i64s({0}))}},
              ErrorKind::invalid_input, "step of axis 0 is 0");
}

TEST_CASE("Concat and Split") {
  const Tensor a = iota_f32({2, 2}), b = f32({2, 1}, {10, 11});
  check_values(run1({"Concat", {runtime(a), constant(b)}, {{"axis", std::int64_t{-1}}}}), {2, 3},
               {0, 1, 10, 2, 3, 11});
  check_values(run1({"Concat", {runtime(a), runtime(a)}, {{"axis", std::int64_t{0}}}}), {4, 2},
               {0, 1, 2, 3, 0, 1, 2, 3});
  check_values(run1({"Concat",
                     {runtime(i64s({1, 2})), runtime(i64({0}, {})), constant(i64s({3}))},
                     {{"axis", std::int64_t{0}}}}),
               {3}, {1, 2, 3});
  check_error({"Concat", {runtime(a), runtime(iota_f32({3, 3}))}, {{"axis", std::int64_t{0}}}},
              ErrorKind::invalid_input, "does not match input 0");

  const Tensor x = iota_f32({2, 6});
  auto parts = run({"Split", {runtime(x)}, {{"axis", std::int64_t{1}}}, 3});
  check_values(parts[0], {2, 2}, {0, 1, 6, 7});
  check_values(parts[2], {2, 2}, {4, 5, 10, 11});
  parts = run({"Split", {runtime(x), constant(i64s({1, 0, 5}))}, {{"axis", std::int64_t{-1}}}, 3});
  check_values(parts[0], {2, 1}, {0, 6});
  check_values(parts[1], {2, 0}, {});
  check_values(parts[2], {2, 5}, {1, 2, 3, 4, 5, 7, 8, 9, 10, 11});
  parts = run({"Split",
               {runtime(x)},
               {{"axis", std::int64_t{1}}, {"split", std::vector<std::int64_t>{4, 2}}},
               2,
               11});
  check_values(parts[1], {2, 2}, {4, 5, 10, 11});
  // Opset 18 num_outputs: ceil-sized chunks, the last takes the rest.
  parts = run({"Split", {runtime(iota_f32({5}))}, {{"num_outputs", std::int64_t{2}}}, 2, 18});
  check_values(parts[0], {3}, {0, 1, 2});
  check_values(parts[1], {2}, {3, 4});
  check_error({"Split", {runtime(iota_f32({5}))}, {}, 2}, ErrorKind::invalid_input,
              "does not split evenly");
}

TEST_CASE("Gather: any axis, negative and int32 indices, scalar index") {
  const Tensor x = iota_f32({3, 4});
  check_values(run1({"Gather", {runtime(x), runtime(i64s({2, -3}))}}), {2, 4},
               {8, 9, 10, 11, 0, 1, 2, 3});
  check_values(run1({"Gather",
                     {constant(x), runtime(tensor<std::int32_t>({2, 2}, {-1, 0, 1, 1}))},
                     {{"axis", std::int64_t{1}}}}),
               {3, 2, 2}, {3, 0, 1, 1, 7, 4, 5, 5, 11, 8, 9, 9});
  check_values(run1({"Gather", {runtime(x), constant(i64({}, {1}))}, {{"axis", std::int64_t{-1}}}}),
               {3}, {1, 5, 9});
  check_error({"Gather", {runtime(x), runtime(i64s({3}))}}, ErrorKind::invalid_input,
              "index 3 is out of range for axis 0 of length 3");
}

TEST_CASE("Expand and Tile") {
  // Bidirectional: [3, 1] with shape [2, 1, 4] -> [2, 3, 4]; a 1 in the shape keeps the input dim.
  const Tensor x = f32({3, 1}, {1, 2, 3});
  const Tensor e = run1({"Expand", {runtime(x), constant(i64s({2, 1, 4}))}});
  CHECK(e.dims() == Dims{2, 3, 4});
  CHECK(e.to_double_vector()[4] == 2);
  CHECK(e.to_double_vector()[23] == 3);
  check_values(run1({"Expand", {runtime(f32({}, {7})), constant(i64s({2}))}}), {2}, {7, 7});
  check_error({"Expand", {runtime(x), constant(i64s({2, 1}))}}, ErrorKind::invalid_input,
              "cannot expand");

  check_values(run1({"Tile", {runtime(iota_f32({2, 2})), constant(i64s({2, 3}))}}), {4, 6},
               {0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3, 0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3});
  check_values(run1({"Tile", {runtime(i64s({5, 6})), constant(i64s({0}))}}), {0}, {});
}

TEST_CASE("ConstantOfShape and Range give constants") {
  const Tensor zeros = run1({"ConstantOfShape", {constant(i64s({2, 2}))}});
  CHECK(zeros.dtype() == DType::f32);
  check_values(zeros, {2, 2}, {0, 0, 0, 0});
  const Tensor sevens = run1({"ConstantOfShape",
                              {constant(i64s({3}))},
                              {{"value", tensor<std::int32_t>({1}, {7})}},
                              1,
                              9});
  CHECK(sevens.dtype() == DType::i32);
  check_values(sevens, {3}, {7, 7, 7});

  check_values(
      run1({"Range", {constant(f32({}, {1})), constant(f32({}, {2})), constant(f32({}, {0.3f}))}}),
      {4}, {1, 1.3, 1.6, 1.9});
  const Tensor down =
      run1({"Range",
            {constant(tensor<std::int32_t>({}, {10})), constant(tensor<std::int32_t>({}, {4})),
             constant(tensor<std::int32_t>({}, {-3}))}});
  CHECK(down.dtype() == DType::i32);
  check_values(down, {2}, {10, 7});
  check_error({"Range", {runtime(f32({}, {0})), constant(f32({}, {2})), constant(f32({}, {1}))}},
              ErrorKind::unsupported, "must be known before running");
}

TEST_CASE("Pad: constant, reflect, edge, negative pads, opset 18 axes") {
  const Tensor x = iota_f32({2, 3});  // [[0 1 2] [3 4 5]]
  check_values(run1({"Pad", {runtime(x), constant(i64s({1, 0, 0, 2})), constant(f32({}, {9}))}}),
               {3, 5}, {9, 9, 9, 9, 9, 0, 1, 2, 9, 9, 3, 4, 5, 9, 9});
  check_values(
      run1({"Pad", {runtime(x), constant(i64s({0, 2, 0, 2}))}, {{"mode", std::string("reflect")}}}),
      {2, 7}, {2, 1, 0, 1, 2, 1, 0, 5, 4, 3, 4, 5, 4, 3});
  check_values(
      run1({"Pad", {runtime(x), constant(i64s({1, 1, 0, 1}))}, {{"mode", std::string("edge")}}}),
      {3, 5}, {0, 0, 1, 2, 2, 0, 0, 1, 2, 2, 3, 3, 4, 5, 5});
  // Negative pads crop: drop the first column, pad one zero after.
  check_values(run1({"Pad", {runtime(x), constant(i64s({0, -1, 0, 1}))}}), {2, 3},
               {1, 2, 0, 4, 5, 0});
  // Opset 18: pads for the listed axes only; the pad value may be a runtime input.
  check_values(
      run1({"Pad",
            {runtime(x), constant(i64s({1, 0})), runtime(f32({}, {-1})), constant(i64s({-1}))},
            {},
            1,
            18}),
      {2, 4}, {-1, 0, 1, 2, -1, 3, 4, 5});
  // Opset 2 form: pads and value as attributes, on an integer tensor.
  check_values(run1({"Pad",
                     {runtime(i64s({1, 2}))},
                     {{"pads", std::vector<std::int64_t>{2, 1}}, {"value", 4.0f}},
                     1,
                     7}),
               {5}, {4, 4, 1, 2, 4});
  check_error({"Pad", {runtime(x), constant(i64s({0, 1, 0, 1}))}, {{"mode", std::string("wrap")}}},
              ErrorKind::unsupported, "mode 'wrap' is not supported");
}

TEST_CASE("DepthToSpace and SpaceToDepth") {
  const Tensor x = iota_f32({1, 4, 1, 2});
  const Tensor dcr = run1({"DepthToSpace", {runtime(x)}, {{"blocksize", std::int64_t{2}}}});
  check_values(dcr, {1, 1, 2, 4}, {0, 2, 1, 3, 4, 6, 5, 7});
  check_values(run1({"DepthToSpace",
                     {runtime(x)},
                     {{"blocksize", std::int64_t{2}}, {"mode", std::string("CRD")}}}),
               {1, 1, 2, 4}, {0, 2, 1, 3, 4, 6, 5, 7});
  // SpaceToDepth inverts DCR DepthToSpace.
  check_values(run1({"SpaceToDepth", {runtime(dcr)}, {{"blocksize", std::int64_t{2}}}}),
               {1, 4, 1, 2}, x.to_double_vector());
  const Tensor y = iota_f32({1, 8, 1, 1});
  check_values(run1({"DepthToSpace",
                     {runtime(y)},
                     {{"blocksize", std::int64_t{2}}, {"mode", std::string("CRD")}}}),
               {1, 2, 2, 2}, {0, 1, 2, 3, 4, 5, 6, 7});
  check_values(run1({"DepthToSpace", {runtime(y)}, {{"blocksize", std::int64_t{2}}}}), {1, 2, 2, 2},
               {0, 2, 4, 6, 1, 3, 5, 7});
}

TEST_CASE("Resize: nearest modes, linear coordinate modes, sizes, cubic refused") {
  const Tensor x = f32({1, 1, 2, 2}, {1, 2, 3, 4});
  const auto resize = [&](std::map<std::string, AttrValue> attrs, Input scales,
                          Input sizes = omitted()) {
    return run1(
        {"Resize", {runtime(x), omitted(), std::move(scales), std::move(sizes)}, std::move(attrs)});
  };
  const Input twice = constant(f32({4}, {1, 1, 2, 2}));
  check_values(resize({{"mode", std::string("nearest")}}, twice), {1, 1, 4, 4},
               {1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4});
  check_values(resize({{"mode", std::string("linear")}}, twice), {1, 1, 4, 4},
               {1, 1.25, 1.75, 2, 1.5, 1.75, 2.25, 2.5, 2.5, 2.75, 3.25, 3.5, 3, 3.25, 3.75, 4});
  check_values(resize({{"mode", std::string("linear")},
                       {"coordinate_transformation_mode", std::string("align_corners")}},
                      omitted(), constant(i64s({1, 1, 3, 3}))),
               {1, 1, 3, 3}, {1, 1.5, 2, 2, 2.5, 3, 3, 3.5, 4});
  check_values(resize({{"mode", std::string("linear")},
                       {"coordinate_transformation_mode", std::string("asymmetric")}},
                      twice),
               {1, 1, 4, 4}, {1, 1.5, 2, 2, 2, 2.5, 3, 3, 3, 3.5, 4, 4, 3, 3.5, 4, 4});
  // 1-d along the last axis: x = [1 2; 3 4] -> 3 columns, half_pixel source coords -1/6, 1/2, 7/6.
  check_values(resize({{"mode", std::string("nearest")}, {"nearest_mode", std::string("ceil")}},
                      constant(f32({4}, {1, 1, 1, 1.5f}))),
               {1, 1, 2, 3}, {1, 2, 2, 3, 4, 4});
  check_values(resize({{"mode", std::string("nearest")}, {"nearest_mode", std::string("floor")}},
                      constant(f32({4}, {1, 1, 1, 1.5f}))),
               {1, 1, 2, 3}, {1, 1, 2, 3, 3, 4});
  // Nearest moves any dtype.
  const Tensor bytes = tensor<std::uint8_t>({2, 2}, {1, 2, 3, 4});
  check_values(run1({"Resize",
                     {runtime(bytes), omitted(), constant(f32({2}, {1, 2}))},
                     {{"coordinate_transformation_mode", std::string("asymmetric")}}}),
               {2, 4}, {1, 1, 2, 2, 3, 3, 4, 4});
  // Opset 10: scales is input 1, coordinates asymmetric.
  check_values(run1({"Resize", {runtime(x), constant(f32({4}, {1, 1, 1, 2}))}, {}, 1, 10}),
               {1, 1, 2, 4}, {1, 1, 2, 2, 3, 3, 4, 4});
  check_values(run1({"Upsample", {runtime(x)}, {{"scales", std::vector<float>{1, 1, 2, 1}}}, 1, 7}),
               {1, 1, 4, 2}, {1, 2, 1, 2, 3, 4, 3, 4});
  check_error({"Resize", {runtime(x), omitted(), twice}, {{"mode", std::string("cubic")}}},
              ErrorKind::unsupported, "mode 'cubic' is not supported; nearest and linear are");
  check_error({"Resize", {runtime(x), omitted(), twice, constant(i64s({1, 1, 4, 4}))}},
              ErrorKind::invalid_input, "exactly one of scales and sizes");
}

TEST_CASE("Pow: a constant exponent of 2 or 3 is the product, others std::pow, runtime exponents too") {
  const Tensor x = f32({2, 3}, {-1.5f, 0.f, 0.1f, 2.f, 3.25f, -7.f});
  for (const float exponent : {2.f, 3.f, 0.5f, -1.f}) {
    INFO("exponent " << exponent);
    const Tensor e = f32({1}, {exponent});
    const Tensor folded_shape = run1({"Pow", {runtime(x), constant(e)}});
    const Tensor runtime_exponent = run1({"Pow", {runtime(x), runtime(e)}});
    CHECK(to_string(folded_shape.dims()) == "[2, 3]");
    for (std::int64_t i = 0; i < x.numel(); ++i) {
      const float base = x.data<float>()[i];
      const float want = std::pow(base, exponent);
      const float got = folded_shape.data<float>()[i];
      if (std::isnan(want)) {
        CHECK(std::isnan(got));
        continue;
      }
      if (std::isinf(want)) {
        CHECK(got == want);
        continue;
      }
      // x*x and x*x*x are within one rounding of each multiply of powf's correctly rounded
      // result: 2 ulp at most.
      CHECK(got == doctest::Approx(want).epsilon(3e-7));
      CHECK(runtime_exponent.data<float>()[i] == want);
    }
  }
}

}  // namespace executor_shape_ops_test_test
