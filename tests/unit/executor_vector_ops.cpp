// The vectorised float32 paths of Gelu, Sigmoid, Tanh, Exp, Softmax and LogSoftmax (oneDNN
// eltwise and softmax primitives, executor/ops/onednn_common.hpp) against a double-precision
// reference of the ops' definitions, each run as a one-node graph through ExecutionPlan on
// odd sizes (vector tails) and over the range where each function is not yet saturated.
//
// Bounds: |fast - exact| <= rel * |exact| + abs_floor * max(1, |x|), rel = 2e-6 (17 ulp) for
// every map; the absolute floor (GELU only) is what the float32 scalar formula itself cannot
// beat: 0.5 * x * (1 + erf(x / sqrt 2)) loses everything below ulp(1) = 1.2e-7 of the bracket
// for negative x, an absolute error up to ~|x| * 6e-8 in the scalar std::erf path too.
// Measured worst on AVX2 (oneDNN 2.6), as a fraction of the bound: Gelu 0.41, Gelu-tanh 0.18,
// Sigmoid 0.12, Tanh 0.04, Exp 0.18, Softmax 0.18; the headroom is for other ISAs' code.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>

#include "executor/plan.hpp"

namespace executor_vector_ops_test {

using namespace bitplan;

namespace {

// Runs op_type on `x` (a runtime input) as a one-node graph; returns a copy of the output.
Tensor run_op(const std::string& op_type, const Tensor& x,
              std::map<std::string, AttrValue> attrs = {}, std::int64_t opset = 13) {
  Graph graph;
  graph.name = op_type;
  graph.opset = opset;
  graph.inputs.push_back({"x", DType::f32, x.dims(), {}});
  graph.outputs.push_back({"y", DType::f32, {}, {}});
  graph.nodes.push_back(Node{op_type, op_type, "", {"x"}, {"y"}, std::move(attrs)});
  ExecutionPlan plan(graph, PlanOptions{});
  std::vector<Tensor> feeds{x};
  return plan.run(feeds).at(0).clone();
}

// Values evenly spread over [lo, hi] in the shape `dims`, the middle one exactly zero.
Tensor ramp(Dims dims, double lo, double hi) {
  const auto n = static_cast<std::size_t>(product(dims));
  std::vector<float> v(n);
  for (std::size_t i = 0; i < n; ++i)
    v[i] = static_cast<float>(lo + (hi - lo) * static_cast<double>(i) / static_cast<double>(n - 1));
  v[n / 2] = 0.f;
  return Tensor::from_values<float>(std::move(dims), v);
}

struct Bound {
  double rel;        // relative to |exact|
  double abs_floor;  // absolute, per unit of max(1, |x|)
};

// Checks fast(x) against exact(x) elementwise within `bound`; reports the worst excess.
void check_unary(const std::string& op_type, const Tensor& x, const Tensor& y,
                 const std::function<double(double)>& exact, Bound bound) {
  REQUIRE(y.numel() == x.numel());
  const float* px = x.data<float>();
  const float* py = y.data<float>();
  double worst = 0;
  std::int64_t worst_i = 0;
  for (std::int64_t i = 0; i < x.numel(); ++i) {
    const double want = exact(static_cast<double>(px[i]));
    const double allowed =
        bound.rel * std::abs(want) + bound.abs_floor * std::max(1.0, std::abs(double(px[i])));
    const double ratio = std::abs(static_cast<double>(py[i]) - want) / allowed;
    if (!(ratio <= worst)) {
      worst = ratio;
      worst_i = i;
    }
  }
  INFO(op_type << ": worst at x = " << px[worst_i] << ": got " << py[worst_i] << ", exact "
               << exact(static_cast<double>(px[worst_i])));
  CHECK(worst <= 1.0);
}

double gelu_erf(double x) {
  return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0)));
}
double gelu_tanh(double x) {
  return 0.5 * x * (1 + std::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
}

}  // namespace

TEST_CASE("vectorised unary maps stay within their bound of the exact function") {
  // 3 x 1001: not a multiple of any vector width, so every path's tail runs.
  const Dims dims{3, 1001};
  SUBCASE("Gelu (erf)") {
    const Tensor x = ramp(dims, -12, 12);
    check_unary("Gelu", x, run_op("Gelu", x, {}, 20), gelu_erf, {2e-6, 2e-7});
  }
  SUBCASE("Gelu (tanh)") {
    const Tensor x = ramp(dims, -12, 12);
    check_unary("Gelu tanh", x, run_op("Gelu", x, {{"approximate", std::string("tanh")}}, 20),
                gelu_tanh, {2e-6, 2e-7});
  }
  SUBCASE("Sigmoid") {
    const Tensor x = ramp(dims, -30, 30);
    check_unary("Sigmoid", x, run_op("Sigmoid", x), [](double v) { return 1 / (1 + std::exp(-v)); },
                {2e-6, 1e-30});
  }
  SUBCASE("Tanh") {
    const Tensor x = ramp(dims, -12, 12);
    check_unary("Tanh", x, run_op("Tanh", x), [](double v) { return std::tanh(v); }, {2e-6, 1e-30});
  }
  SUBCASE("Exp") {
    const Tensor x = ramp(dims, -80, 80);
    check_unary("Exp", x, run_op("Exp", x), [](double v) { return std::exp(v); }, {2e-6, 1e-30});
  }
}

TEST_CASE("vectorised Softmax stays within its bound of the exact result") {
  // Bound: |fast - exact| <= 1e-6 * (1 + |x - max|) * exact. The factor (1 + |x - max|) is
  // the float32 rounding of x - max that the scalar reference inherits too (a probability of
  // e^-30 carries ~30 * 6e-8 relative error from it alone).
  std::mt19937 rng(7);
  std::normal_distribution<float> dist(0.f, 6.f);
  for (const Dims& dims : {Dims{5, 129}, Dims{2, 3, 1000}, Dims{4, 1}}) {
    std::vector<float> v(static_cast<std::size_t>(product(dims)));
    for (float& e : v) e = dist(rng);
    const Tensor x = Tensor::from_values<float>(dims, v);
    const std::int64_t n = dims.back(), rows = product(dims) / n;
    const Tensor y = run_op("Softmax", x);
    CAPTURE(to_string(dims));
    double worst = 0;
    for (std::int64_t r = 0; r < rows; ++r) {
      const float* px = x.data<float>() + r * n;
      const float* py = y.data<float>() + r * n;
      const double mx = *std::max_element(px, px + n);
      double sum = 0;
      for (std::int64_t j = 0; j < n; ++j) sum += std::exp(double(px[j]) - mx);
      for (std::int64_t j = 0; j < n; ++j) {
        const double want = std::exp(double(px[j]) - mx) / sum;
        const double allowed = 1e-6 * (1 + std::abs(double(px[j]) - mx)) * want;
        worst = std::max(worst, std::abs(double(py[j]) - want) / allowed);
      }
    }
    CHECK(worst <= 1.0);
  }
}

TEST_CASE("Softmax over a strided axis (the scalar kernel) agrees with the exact result") {
  // Axis 1 of [2, 7, 3]: inner = 3, which the oneDNN path does not take.
  std::vector<float> v(42);
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i % 11) - 5.f;
  const Tensor x = Tensor::from_values<float>({2, 7, 3}, v);
  const Tensor y = run_op("Softmax", x, {{"axis", std::int64_t{1}}});
  for (std::int64_t o = 0; o < 2; ++o)
    for (std::int64_t i = 0; i < 3; ++i) {
      double sum = 0;
      for (std::int64_t j = 0; j < 7; ++j) sum += std::exp(double(v[(o * 7 + j) * 3 + i]));
      for (std::int64_t j = 0; j < 7; ++j) {
        const std::size_t k = static_cast<std::size_t>((o * 7 + j) * 3 + i);
        CHECK(y.data<float>()[k] == doctest::Approx(std::exp(double(v[k])) / sum).epsilon(1e-6));
      }
    }
}

}  // namespace executor_vector_ops_test
