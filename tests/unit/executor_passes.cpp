// Import passes change the graph, never its outputs: each rewrite is checked against the
// unrewritten graph run through the same executor.
#include <doctest/doctest.h>

#include <random>

#include "executor/plan.hpp"
#include "ir/passes.hpp"

namespace executor_passes_test {

using namespace bitplan;

namespace {

Tensor random_tensor(Dims dims, std::uint32_t seed, float lo = -1.f, float hi = 1.f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  Tensor t(DType::f32, std::move(dims));
  for (std::int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = dist(rng);
  return t;
}

std::vector<float> run_graph(const Graph& g, const Tensor& x) {
  ExecutionPlan plan(g, PlanOptions{x.dim(0)});
  const auto out = plan.run(std::span<const Tensor>(&x, 1));
  return std::vector<float>(out[0].values<float>().begin(), out[0].values<float>().end());
}

void check_close(const std::vector<float>& a, const std::vector<float>& b, float tol) {
  REQUIRE(a.size() == b.size());
  float worst = 0;
  for (std::size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(a[i] - b[i]));
  CHECK(worst <= tol);
  // Guard against comparing two all-zero outputs (benchdnn's "mistrusted" rule).
  std::size_t nonzero = 0;
  for (float v : a) nonzero += v != 0.f;
  CHECK(nonzero > a.size() / 2);
}

Tensor scalar_f32(float v) {
  return Tensor::scalar<float>(v);
}

}  // namespace

TEST_CASE("BatchNorm folds into Conv and Relu fuses, with identical outputs") {
  Graph g;
  g.name = "conv_bn_relu";
  g.opset = 13;
  g.inputs.push_back({"x", DType::f32, {-1, 3, 8, 8}, {}});
  g.outputs.push_back({"y", DType::f32, {-1, 4, 8, 8}, {}});
  g.initializers["w"] = random_tensor({4, 3, 3, 3}, 1);
  g.initializers["b"] = random_tensor({4}, 2);
  g.initializers["gamma"] = random_tensor({4}, 3, 0.5f, 2.f);
  g.initializers["beta"] = random_tensor({4}, 4);
  g.initializers["mean"] = random_tensor({4}, 5);
  g.initializers["var"] = random_tensor({4}, 6, 0.1f, 2.f);
  Node conv{"conv", "Conv", "", {"x", "w", "b"}, {"c"}, {}};
  conv.attrs["pads"] = std::vector<std::int64_t>{1, 1, 1, 1};
  g.nodes = {conv,
             {"bn", "BatchNormalization", "", {"c", "gamma", "beta", "mean", "var"}, {"n"}, {}},
             {"drop", "Dropout", "", {"n"}, {"d"}, {}},
             {"relu", "Relu", "", {"d"}, {"y"}, {}}};
  const Tensor x = random_tensor({2, 3, 8, 8}, 7);
  const auto before = run_graph(g, x);
  Graph simplified = g;
  const SimplifyReport report = simplify(simplified);
  CHECK(report.folded_batchnorm == 1);
  CHECK(report.removed_identity == 1);
  CHECK(report.fused_activation == 1);
  REQUIRE(simplified.nodes.size() == 1);
  CHECK(simplified.nodes[0].name == "conv");  // the layer keeps its ONNX name
  check_close(run_graph(simplified, x), before, 1e-5f);
}

TEST_CASE("decomposed LayerNorm and erf-GELU are recognised, with identical outputs") {
  Graph g;
  g.name = "ln_gelu";
  g.opset = 13;
  g.inputs.push_back({"x", DType::f32, {-1, 5, 16}, {}});
  g.outputs.push_back({"y", DType::f32, {-1, 5, 16}, {}});
  g.initializers["gamma"] = random_tensor({16}, 1, 0.5f, 1.5f);
  g.initializers["beta"] = random_tensor({16}, 2);
  g.initializers["two"] = scalar_f32(2.f);
  g.initializers["eps"] = scalar_f32(1e-5f);
  g.initializers["sqrt2"] = scalar_f32(1.4142135f);
  g.initializers["one"] = scalar_f32(1.f);
  g.initializers["half"] = scalar_f32(0.5f);
  Node mean{"mean", "ReduceMean", "", {"x"}, {"m"}, {}};
  mean.attrs["axes"] = std::vector<std::int64_t>{-1};
  Node var{"var", "ReduceMean", "", {"sq"}, {"v"}, {}};
  var.attrs["axes"] = std::vector<std::int64_t>{-1};
  g.nodes = {mean,
             {"sub", "Sub", "", {"x", "m"}, {"d"}, {}},
             {"pow", "Pow", "", {"d", "two"}, {"sq"}, {}},
             var,
             {"add_eps", "Add", "", {"v", "eps"}, {"ve"}, {}},
             {"sqrt", "Sqrt", "", {"ve"}, {"s"}, {}},
             {"div", "Div", "", {"d", "s"}, {"nrm"}, {}},
             {"mul_g", "Mul", "", {"nrm", "gamma"}, {"ng"}, {}},
             {"add_b", "Add", "", {"ng", "beta"}, {"ln"}, {}},
             {"gdiv", "Div", "", {"ln", "sqrt2"}, {"g1"}, {}},
             {"erf", "Erf", "", {"g1"}, {"g2"}, {}},
             {"gadd", "Add", "", {"g2", "one"}, {"g3"}, {}},
             {"gmul", "Mul", "", {"ln", "g3"}, {"g4"}, {}},
             {"ghalf", "Mul", "", {"g4", "half"}, {"y"}, {}}};
  const Tensor x = random_tensor({3, 5, 16}, 9, -3.f, 3.f);
  const auto before = run_graph(g, x);
  Graph simplified = g;
  const SimplifyReport report = simplify(simplified);
  CHECK(report.fused_layernorm == 1);
  CHECK(report.fused_gelu == 1);
  REQUIRE(simplified.nodes.size() == 2);
  CHECK(simplified.nodes[0].op_type == "LayerNormalization");
  CHECK(simplified.nodes[1].op_type == "Gelu");
  check_close(run_graph(simplified, x), before, 1e-5f);
}

TEST_CASE("shape chains of torch exports fold at plan time") {
  // Flatten written as x.view(x.size(0), -1): Shape -> Gather(0) -> Unsqueeze -> Concat -> Reshape.
  Graph g;
  g.name = "shape_chain";
  g.opset = 13;
  g.inputs.push_back({"x", DType::f32, {-1, 2, 3}, {}});
  g.outputs.push_back({"y", DType::f32, {-1, 6}, {}});
  g.initializers["zero"] = Tensor::scalar<std::int64_t>(0);
  g.initializers["minus_one"] =
      Tensor::from_values<std::int64_t>({1}, std::vector<std::int64_t>{-1});
  g.initializers["axes"] = Tensor::from_values<std::int64_t>({1}, std::vector<std::int64_t>{0});
  Node concat{"concat", "Concat", "", {"b1", "minus_one"}, {"shape"}, {}};
  concat.attrs["axis"] = std::int64_t{0};
  Node gather{"gather", "Gather", "", {"s", "zero"}, {"b"}, {}};
  g.nodes = {{"shape", "Shape", "", {"x"}, {"s"}, {}},
             gather,
             {"unsq", "Unsqueeze", "", {"b", "axes"}, {"b1"}, {}},
             concat,
             {"reshape", "Reshape", "", {"x", "shape"}, {"y"}, {}}};
  ExecutionPlan plan(g, PlanOptions{4});
  // Only the Reshape survives as a step (a view); everything else folded.
  REQUIRE(plan.steps().size() == 1);
  CHECK(plan.steps()[0].op_type == "Reshape");
  CHECK(plan.output_meta()[0].dims == Dims{4, 6});
}

}  // namespace executor_passes_test
