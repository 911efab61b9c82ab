// PlanOptions::matmul_epilogues (fuse_matmul_epilogues, ir/passes.hpp): a MatMul's scalar
// Div/Mul, constant bias Add and Gelu run as oneDNN output scale, bias and post-op. The
// fused plan must give the separate ops' outputs up to float rounding (bounded here by 1e-5
// of the largest output magnitude: x * (1/d) for x / d, another summation order for the
// bias) and run fewer steps; what does not match the pattern stays as it was.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "executor/plan.hpp"

namespace executor_matmul_epilogues_test {

using namespace bitplan;

namespace {

Tensor noise(Dims dims, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  Tensor t(DType::f32, std::move(dims));
  for (std::int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = normal(rng);
  return t;
}

Tensor scalar(float v) {
  return Tensor::from_values<float>({}, std::vector<float>{v});
}

// A transformer's FFN input projection (MatMul, bias Add, Gelu) and attention scores
// (MatMul of two runtime inputs, Div by a scalar), plus a MatMul whose Add is not a bias.
Graph graph() {
  Graph g;
  g.name = "epilogues";
  g.opset = 20;
  g.inputs.push_back({"x", DType::f32, {2, 5, 8}, {}});
  g.inputs.push_back({"k", DType::f32, {2, 8, 5}, {}});
  g.initializers["w"] = noise({8, 12}, 1);
  g.initializers["bias"] = noise({12}, 2);
  g.initializers["d"] = scalar(2.8284271f);
  g.initializers["full"] = noise({5, 12}, 3);  // not a [N] bias
  g.nodes.push_back({"mm", "MatMul", "", {"x", "w"}, {"h"}, {}});
  g.nodes.push_back({"add", "Add", "", {"h", "bias"}, {"hb"}, {}});
  g.nodes.push_back({"gelu", "Gelu", "", {"hb"}, {"y"}, {}});
  g.nodes.push_back({"scores", "MatMul", "", {"x", "k"}, {"s"}, {}});
  g.nodes.push_back({"scale", "Div", "", {"s", "d"}, {"z"}, {}});
  g.nodes.push_back({"mm2", "MatMul", "", {"x", "w"}, {"h2"}, {}});
  g.nodes.push_back({"add2", "Add", "", {"h2", "full"}, {"u"}, {}});
  for (const char* out : {"y", "z", "u"}) g.outputs.push_back({out, DType::f32, {}, {}});
  return g;
}

double relative_difference(const Tensor& a, const Tensor& b) {
  REQUIRE(a.numel() == b.numel());
  double diff = 0, scale = 0;
  for (std::int64_t i = 0; i < a.numel(); ++i) {
    diff = std::max(diff, std::abs(double(a.data<float>()[i]) - double(b.data<float>()[i])));
    scale = std::max(scale, std::abs(double(b.data<float>()[i])));
  }
  return diff / scale;
}

}  // namespace

TEST_CASE("MatMul epilogues fold into the MatMul and keep its outputs") {
  const Graph g = graph();
  ExecutionPlan separate(g, PlanOptions{1, false, false});
  ExecutionPlan fused(g, PlanOptions{1, false, true});
  // Add + Gelu and Div disappear; the Add of a [5, 12] tensor stays.
  CHECK(separate.steps().size() == 7);
  CHECK(fused.steps().size() == 4);
  const std::vector<Tensor> feeds{noise({2, 5, 8}, 4), noise({2, 8, 5}, 5)};
  std::vector<Tensor> want, got;
  for (const Tensor& t : separate.run(feeds)) want.push_back(t.clone());
  for (const Tensor& t : fused.run(feeds)) got.push_back(t.clone());
  REQUIRE(got.size() == 3);
  for (std::size_t i = 0; i < 3; ++i) {
    CAPTURE(i);
    CHECK(relative_difference(got[i], want[i]) <= 1e-5);
  }
}

}  // namespace executor_matmul_epilogues_test
