// The packed-B SGEMM (executor/kernels/sgemm_packed.hpp): packing read back exactly, every ISA
// path (forced by the ISA it was packed for, so the AVX2 path runs on AVX-512 machines and the
// scalar path everywhere) against a double-precision reference for odd M, K and N (tails of
// the microkernel's rows and of the panel, K across several k-blocks), transposed B, alpha and
// bias; the vector paths bit for bit equal to the scalar one (the same fused multiply-adds in
// the same order). Then through the executor: PlanOptions::fp32_gemm packed and onednn agree on
// MatMul (3-D input, fused scale, bias and Gelu) and Gemm (transB, bias). No timing here
// (bench/bench_sgemm.cpp times it).
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "core/error.hpp"
#include "executor/kernels/sgemm_packed.hpp"
#include "executor/plan.hpp"
#include "tests/skip.hpp"

namespace executor_kernels_sgemm_test {

using namespace bitplan;
using namespace bitplan::kernels;

namespace {

std::vector<float> noise(std::int64_t count, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  std::vector<float> v(static_cast<std::size_t>(count));
  for (float& x : v) x = normal(rng);
  return v;
}

struct Problem {
  std::int64_t m, k, n;
  bool transposed_b;
  float alpha;
  std::vector<float> a, b, bias;  // a [M][K]; b [K][N] or [N][K]; bias [N] or empty
  SgemmSource source() const {
    return {k, n, b.data(), transposed_b ? 1 : n, transposed_b ? k : 1};
  }
};

Problem make_problem(std::int64_t m, std::int64_t k, std::int64_t n, bool transposed_b, float alpha,
                     bool bias, unsigned seed) {
  Problem p{m, k, n, transposed_b, alpha, noise(m * k, seed), noise(k * n, seed + 1), {}};
  if (bias) p.bias = noise(n, seed + 2);
  return p;
}

// C through `isa`'s kernel, with C's rows wider than N (ldc = N + 3) and the padding checked
// untouched.
std::vector<float> run(const Problem& p, Isa isa) {
  const PackedSgemmB packed = pack_sgemm_b(p.source(), isa);
  const std::int64_t ldc = p.n + 3;
  std::vector<float> c(static_cast<std::size_t>(p.m * ldc), -7.f);
  sgemm_packed(packed, p.a.data(), p.m, p.k, c.data(), ldc, p.alpha,
               p.bias.empty() ? nullptr : p.bias.data());
  std::vector<float> out(static_cast<std::size_t>(p.m * p.n));
  for (std::int64_t r = 0; r < p.m; ++r)
    for (std::int64_t j = 0; j < ldc; ++j) {
      if (j < p.n)
        out[r * p.n + j] = c[r * ldc + j];
      else
        REQUIRE(c[r * ldc + j] == -7.f);
    }
  return out;
}

// |c - exact| <= (K + 2) u (|alpha| sum_k |a_k b_k| + |bias|), u = 2^-24: K fused
// multiply-adds in sequence each round once (the standard gamma_K bound for a recursive sum),
// then alpha·sum + bias once more.
void check_against_reference(const Problem& p, const std::vector<float>& got) {
  std::vector<float> want(static_cast<std::size_t>(p.m * p.n));
  const SgemmSource b = p.source();
  sgemm_reference(b, p.a.data(), p.m, p.k, want.data(), p.n, p.alpha,
                  p.bias.empty() ? nullptr : p.bias.data());
  const double u = std::ldexp(1.0, -24);
  for (std::int64_t r = 0; r < p.m; ++r)
    for (std::int64_t j = 0; j < p.n; ++j) {
      double magnitude = 0;
      for (std::int64_t k = 0; k < p.k; ++k)
        magnitude += std::abs(double(p.a[r * p.k + k]) * b.data[k * b.stride_k + j * b.stride_n]);
      const double bound =
          (double(p.k) + 2) * u *
              (std::abs(p.alpha) * magnitude + (p.bias.empty() ? 0.0 : std::abs(p.bias[j]))) +
          1e-30;
      const double err = std::abs(double(got[r * p.n + j]) - double(want[r * p.n + j]));
      if (err > bound) {
        CAPTURE(r);
        CAPTURE(j);
        CHECK(err <= bound);
        return;
      }
    }
}

struct Shape {
  std::int64_t m, k, n;
};

// Rows around the microkernels' 6 and 12 and the row block (96), N around the panels (16,
// 32), K across k-blocks (256) and tiny.
const std::vector<Shape>& shapes() {
  static const std::vector<Shape> s = {{1, 1, 1},    {1, 7, 5},     {5, 3, 17},   {6, 16, 16},
                                       {7, 33, 31},  {13, 300, 33}, {12, 64, 64}, {25, 513, 49},
                                       {97, 40, 70}, {200, 20, 3}};
  return s;
}

// Every shape through `isa` against the reference; and, with `bitwise`, equal to the scalar
// path bit for bit.
void check_every_shape(Isa isa) {
  unsigned seed = 1;
  for (const Shape& s : shapes())
    for (const bool tb : {false, true})
      for (const bool bias : {false, true}) {
        const float alpha = bias ? 0.125f : 1.f;
        const Problem p = make_problem(s.m, s.k, s.n, tb, alpha, bias, seed += 3);
        CAPTURE(s.m);
        CAPTURE(s.k);
        CAPTURE(s.n);
        CAPTURE(tb);
        CAPTURE(bias);
        const std::vector<float> got = run(p, isa);
        check_against_reference(p, got);
        if (isa != Isa::scalar) {
          const std::vector<float> scalar = run(p, Isa::scalar);
          CHECK(std::memcmp(got.data(), scalar.data(), got.size() * sizeof(float)) == 0);
        }
      }
}

}  // namespace

TEST_CASE("SGEMM packing reads back B and pads the last panel with zeros") {
  for (const Isa isa : {Isa::scalar, Isa::avx2, Isa::avx512})
    for (const bool tb : {false, true}) {
      const Problem p = make_problem(1, 5, 37, tb, 1.f, false, 3);
      const PackedSgemmB packed = pack_sgemm_b(p.source(), isa);
      CHECK(packed.nr == sgemm_panel_width(isa));
      CHECK(packed.panels == (37 + packed.nr - 1) / packed.nr);
      for (std::int64_t panel = 0; panel < packed.panels; ++panel)
        for (std::int64_t k = 0; k < p.k; ++k)
          for (std::int64_t j = 0; j < packed.nr; ++j) {
            const std::int64_t n = panel * packed.nr + j;
            const float want =
                n < p.n ? p.source().data[k * p.source().stride_k + n * p.source().stride_n] : 0.f;
            REQUIRE(packed.panel(panel)[k * packed.nr + j] == want);
          }
    }
  const Problem empty = make_problem(1, 0, 4, false, 1.f, false, 4);
  CHECK_THROWS_WITH_AS(pack_sgemm_b(empty.source(), Isa::scalar),
                       doctest::Contains("K 0 and N 4 must be positive"), Error);
}

TEST_CASE("SGEMM scalar path (the definition) matches the reference") {
  check_every_shape(Isa::scalar);
}

TEST_CASE("SGEMM AVX2 path matches the reference and the scalar path bit for bit") {
  if (!cpu_supports(Isa::avx2)) {
    MESSAGE("this CPU has no AVX2+FMA: the AVX2 path cannot run here");
    return;
  }
  check_every_shape(Isa::avx2);
}

TEST_CASE("SGEMM AVX-512 path matches the reference and the scalar path bit for bit") {
  if (!cpu_supports(Isa::avx512)) {
    testing::skip("this CPU has no AVX-512 F: the AVX-512 SGEMM path cannot run here");
    return;
  }
  check_every_shape(Isa::avx512);
}

namespace {

Tensor tensor(Dims dims, unsigned seed) {
  Tensor t(DType::f32, dims);
  const std::vector<float> v = noise(t.numel(), seed);
  std::copy(v.begin(), v.end(), t.data<float>());
  return t;
}

// A MatMul on a 3-D input with a scale, bias and Gelu for fuse_matmul_epilogues, a Gemm with
// transB and a bias, and a MatMul of two runtime inputs (oneDNN whatever the option says).
Graph graph() {
  Graph g;
  g.name = "sgemm";
  g.opset = 20;
  g.inputs.push_back({"x", DType::f32, {2, 7, 19}, {}});
  g.inputs.push_back({"x2", DType::f32, {5, 19}, {}});
  g.inputs.push_back({"r", DType::f32, {2, 19, 4}, {}});
  g.initializers["w"] = tensor({19, 21}, 1);
  g.initializers["bias"] = tensor({21}, 2);
  g.initializers["d"] = Tensor::from_values<float>({}, std::vector<float>{2.f});
  g.initializers["wt"] = tensor({33, 19}, 3);
  g.initializers["cb"] = tensor({33}, 4);
  g.nodes.push_back({"mm", "MatMul", "", {"x", "w"}, {"h"}, {}});
  g.nodes.push_back({"scale", "Div", "", {"h", "d"}, {"hs"}, {}});
  g.nodes.push_back({"add", "Add", "", {"hs", "bias"}, {"hb"}, {}});
  g.nodes.push_back({"gelu", "Gelu", "", {"hb"}, {"y"}, {}});
  Node gemm{"gemm", "Gemm", "", {"x2", "wt", "cb"}, {"z"}, {}};
  gemm.attrs["transB"] = AttrValue{std::int64_t{1}};
  g.nodes.push_back(gemm);
  g.nodes.push_back({"mm_runtime", "MatMul", "", {"x", "r"}, {"u"}, {}});
  for (const char* out : {"y", "z", "u"}) g.outputs.push_back({out, DType::f32, {}, {}});
  return g;
}

}  // namespace

TEST_CASE("PlanOptions::fp32_gemm: the packed SGEMM and oneDNN's matmul agree") {
  const Graph g = graph();
  const std::vector<Tensor> feeds{tensor({2, 7, 19}, 5), tensor({5, 19}, 6), tensor({2, 19, 4}, 7)};
  for (const bool fused : {false, true}) {
    CAPTURE(fused);
    std::vector<std::vector<Tensor>> outputs;
    for (const Fp32Gemm choice : {Fp32Gemm::onednn, Fp32Gemm::packed, Fp32Gemm::automatic}) {
      PlanOptions options;
      options.matmul_epilogues = fused;
      options.fp32_gemm = choice;
      ExecutionPlan plan(g, options);
      std::vector<Tensor> out;
      for (const Tensor& t : plan.run(feeds)) out.push_back(t.clone());
      outputs.push_back(std::move(out));
    }
    for (std::size_t path = 1; path < outputs.size(); ++path)
      for (std::size_t i = 0; i < 3; ++i) {
        CAPTURE(path);
        CAPTURE(i);
        const Tensor &want = outputs[0][i], &got = outputs[path][i];
        REQUIRE(want.numel() == got.numel());
        double diff = 0, scale = 0;
        for (std::int64_t e = 0; e < want.numel(); ++e) {
          diff = std::max(diff, std::abs(double(got.data<float>()[e]) - want.data<float>()[e]));
          scale = std::max(scale, std::abs(double(want.data<float>()[e])));
        }
        // Another summation order (and oneDNN's Gelu either way): float rounding only.
        CHECK(diff <= 1e-5 * scale);
      }
  }
}

}  // namespace executor_kernels_sgemm_test
