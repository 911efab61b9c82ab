// The W4A32 kernel (executor/kernels/w4a32.hpp): packing read back exactly, and every ISA
// path (forced by its Isa argument, so the AVX2 path runs on AVX-512 machines and the scalar
// path everywhere) against a double-precision reference, for odd sizes, tails (K and N not
// multiples of the vector width or panel), every group size, signed/unsigned, symmetric and
// asymmetric grids, and M = 1, 3, 8, 32. No timing here (bench/bench_lowbit.cpp times it).
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "core/error.hpp"
#include "executor/kernels/w4a32.hpp"
#include "tests/skip.hpp"

namespace executor_kernels_w4a32_test {

using namespace bitplan;
using namespace bitplan::kernels;

namespace {

// A random problem: container codes [K, N], one scale and offset per (group, column), x.
struct Problem {
  std::int64_t m, k, n, group, groups;
  std::vector<std::int8_t> codes;      // [K][N]
  std::vector<float> scales, offsets;  // [groups][N]
  std::vector<float> x;                // [M][K]
  W4a32Source source() const {
    return {k, n, group, codes.data(), n, 1, scales.data(), offsets.data()};
  }
  // The weight as every path dequantizes it: (c - o) * s, one float rounding.
  float weight(std::int64_t kk, std::int64_t nn) const {
    const std::int64_t g = kk / std::min(group, k);
    return (static_cast<float>(codes[kk * n + nn]) - offsets[g * n + nn]) * scales[g * n + nn];
  }
};

// `symmetric_signed`: offsets all 8 (int4/sym); else random offsets (asymmetric grids).
Problem make_problem(std::int64_t m, std::int64_t k, std::int64_t n, std::int64_t group,
                     bool symmetric_signed, std::uint32_t seed) {
  std::mt19937 rng(seed);
  Problem p{m, k, n, group, (k + std::min(group, k) - 1) / std::min(group, k), {}, {}, {}, {}};
  std::uniform_int_distribution<int> code(symmetric_signed ? 1 : 0, 15), offset(0, 15);
  std::uniform_real_distribution<float> scale(0.001f, 0.1f);
  std::normal_distribution<float> act(0.3f, 1.f);
  p.codes.resize(static_cast<std::size_t>(k * n));
  for (auto& c : p.codes) c = static_cast<std::int8_t>(code(rng));
  p.scales.resize(static_cast<std::size_t>(p.groups * n));
  p.offsets.resize(p.scales.size());
  for (auto& s : p.scales) s = scale(rng);
  for (auto& o : p.offsets) o = symmetric_signed ? 8.f : static_cast<float>(offset(rng));
  p.x.resize(static_cast<std::size_t>(m * k));
  for (auto& v : p.x) v = act(rng);
  return p;
}

// Error bound of a float path against the exact sum Y = sum_k x_k w_k with the simulation's
// weights w = fl((c - o)·s). The scalar path sums the K products x·w in order: depth K. The
// vector paths sum x·(c - o) (exact integers times x) per group of G over at most 4
// accumulators (depth G + 4), multiply by s once (1) and add the groups up (depth
// ceil(K/G)); taking w for (c - o)·s costs one more u. G + ceil(K/G) <= K + 1, so every
// path is within (Higham, "Accuracy and Stability of Numerical Algorithms", (3.4)/(3.5))
//   |y_path - Y| <= gamma_{K+8} · sum_k |x_k w_k|,  gamma_j = j·u / (1 - j·u), u = 2^-24.
// The reference below sums in double (its own error, K·2^-53·sum|x w|, is negligible); the
// bound gets a 1.01 factor for that and the smallest subnormal for sums of zero.
double error_bound(const Problem& p, std::int64_t row, std::int64_t col) {
  const double u = std::ldexp(1.0, -24), j = static_cast<double>(p.k + 8);
  double magnitude = 0;
  for (std::int64_t kk = 0; kk < p.k; ++kk)
    magnitude += std::fabs(double(p.x[row * p.k + kk]) * double(p.weight(kk, col)));
  return 1.01 * (j * u / (1 - j * u)) * magnitude + std::numeric_limits<float>::denorm_min();
}

double reference(const Problem& p, std::int64_t row, std::int64_t col) {
  double sum = 0;
  for (std::int64_t kk = 0; kk < p.k; ++kk)
    sum += double(p.x[row * p.k + kk]) * double(p.weight(kk, col));
  return sum;
}

// Runs `isa`'s path and checks every output against the reference; returns the worst
// error as a fraction of its bound.
double check_path(const Problem& p, Isa isa) {
  const PackedW4a32 packed = pack_w4a32(p.source(), isa);
  std::vector<float> y(static_cast<std::size_t>(p.m * p.n), std::nanf(""));
  w4a32_gemm(packed, p.x.data(), p.m, p.k, y.data(), p.n);
  double worst = 0;
  for (std::int64_t r = 0; r < p.m; ++r)
    for (std::int64_t c = 0; c < p.n; ++c) {
      const double err = std::fabs(double(y[r * p.n + c]) - reference(p, r, c));
      const double bound = error_bound(p, r, c);
      worst = std::max(worst, err / bound);
      if (!(err <= bound)) {
        FAIL_CHECK(isa_name(isa) << " m " << p.m << " k " << p.k << " n " << p.n << " group "
                                 << p.group << ": y[" << r << "][" << c << "] = " << y[r * p.n + c]
                                 << ", reference " << reference(p, r, c) << ", bound " << bound);
        return worst;
      }
    }
  return worst;
}

// The sizes every path is checked at: odd K and N, tails of the vector width and panel,
// several panels, groups shorter, equal to and longer than K (per channel), and a last group
// shorter than the others.
void check_every_shape(Isa isa) {
  std::uint32_t seed = 1;
  double worst = 0;
  for (const std::int64_t m : {1, 3, 8, 32})
    for (const auto& [k, n] : std::vector<std::pair<std::int64_t, std::int64_t>>{
             {1, 1}, {7, 5}, {37, 19}, {64, 16}, {96, 33}, {128, 64}, {200, 47}, {384, 70}})
      for (const std::int64_t group : {32, 64, 128, 1 << 20})
        for (const bool symmetric : {true, false}) {
          const Problem p = make_problem(m, k, n, group, symmetric, seed++);
          worst = std::max(worst, check_path(p, isa));
        }
  MESSAGE(isa_name(isa) << ": worst error " << worst << " of the bound");
}

}  // namespace

TEST_CASE("W4A32 packing reads back every code, for every panel width") {
  for (const Isa isa : {Isa::scalar, Isa::avx2, Isa::avx512}) {
    const Problem p = make_problem(1, 45, 71, 32, false, 7);
    const PackedW4a32 packed = pack_w4a32(p.source(), isa);
    CHECK(packed.panel == w4a32_panel_width(isa));
    CHECK(packed.panels == (71 + packed.panel - 1) / packed.panel);
    CHECK(packed.groups == 2);
    CHECK(packed.codes.size() == static_cast<std::size_t>(packed.panels * 45 * packed.panel / 2));
    bool all = true;
    for (std::int64_t k = 0; k < p.k; ++k)
      for (std::int64_t n = 0; n < p.n; ++n)
        all = all && packed_code(packed, k, n) == p.codes[k * p.n + n];
    CHECK(all);
    // Padding columns of the last panel weigh nothing: code 0, offset 0.
    for (std::int64_t n = p.n; n < packed.panels * packed.panel; ++n)
      CHECK(packed_code(packed, 0, n) == 0);
  }
  // Symmetric grids share one offset: stored once, and the padding columns take it as code.
  const Problem sym = make_problem(1, 45, 71, 32, true, 7);
  const PackedW4a32 one = pack_w4a32(sym.source(), Isa::avx2);
  CHECK(one.uniform_offset);
  CHECK(one.offsets.size() == static_cast<std::size_t>(one.panel));
  CHECK(one.bytes() <
        pack_w4a32(make_problem(1, 45, 71, 32, false, 7).source(), Isa::avx2).bytes());
  CHECK(packed_code(one, 0, one.panels * one.panel - 1) == 8);
  // Transposed source strides ([N, K] storage, a Gemm with transB) pack the same bytes.
  const Problem p = make_problem(1, 40, 9, 32, true, 8);
  std::vector<std::int8_t> nk(p.codes.size());
  for (std::int64_t k = 0; k < p.k; ++k)
    for (std::int64_t n = 0; n < p.n; ++n) nk[n * p.k + k] = p.codes[k * p.n + n];
  W4a32Source transposed = p.source();
  transposed.codes = nk.data();
  transposed.stride_k = 1;
  transposed.stride_n = p.k;
  CHECK(pack_w4a32(transposed, Isa::avx2).codes == pack_w4a32(p.source(), Isa::avx2).codes);
}

TEST_CASE("W4A32 packing refuses codes, offsets and scales outside the format") {
  Problem p = make_problem(1, 32, 4, 32, false, 9);
  p.codes[3] = 16;
  CHECK_THROWS_WITH_AS(pack_w4a32(p.source(), Isa::scalar),
                       doctest::Contains("code 16 at (k 0, n 3) is not in [0, 15]"), Error);
  p = make_problem(1, 32, 4, 32, false, 9);
  p.offsets[1] = 2.5f;
  CHECK_THROWS_WITH_AS(pack_w4a32(p.source(), Isa::scalar),
                       doctest::Contains("offset 2.5 of column 1, group 0"), Error);
  p = make_problem(1, 32, 4, 32, false, 9);
  p.scales[2] = 0.f;
  CHECK_THROWS_WITH_AS(pack_w4a32(p.source(), Isa::scalar),
                       doctest::Contains("scale 0 of column 2"), Error);
}

TEST_CASE("W4A32 scalar path (the definition) matches the reference") {
  check_every_shape(Isa::scalar);
}

TEST_CASE("W4A32 AVX2 path matches the reference") {
  if (!cpu_supports(Isa::avx2)) {
    MESSAGE("this CPU has no AVX2+FMA: the AVX2 path cannot run here");
    return;
  }
  check_every_shape(Isa::avx2);
}

TEST_CASE("W4A32 AVX-512 path matches the reference") {
  if (!cpu_supports(Isa::avx512)) {
    testing::skip("this CPU has no AVX-512 F: the AVX-512 W4A32 path cannot run here");
    return;
  }
  check_every_shape(Isa::avx512);
}

TEST_CASE("W4A32 epilogue: bias, activation and output fake quantization as the simulation") {
  const Problem p = make_problem(8, 96, 40, 32, false, 11);
  std::vector<float> bias(static_cast<std::size_t>(p.n));
  for (std::size_t i = 0; i < bias.size(); ++i) bias[i] = 0.05f * float(i % 7) - 0.1f;
  GemmEpilogue e;
  e.bias = bias.data();
  e.clamp = true;
  e.lo = 0.f;
  e.hi = 6.f;
  e.quantize_output = true;
  e.out_scale = 0.02f;
  e.out_zero_point = 3.f;
  e.out_qmin = 0.f;
  e.out_qmax = 255.f;
  for (const Isa isa : {Isa::scalar, Isa::avx2, Isa::avx512}) {
    if (!cpu_supports(isa)) continue;
    const PackedW4a32 packed = pack_w4a32(p.source(), isa);
    std::vector<float> sums(static_cast<std::size_t>(p.m * p.n)), y(sums.size());
    w4a32_gemm(packed, p.x.data(), p.m, p.k, sums.data(), p.n);
    w4a32_gemm(packed, p.x.data(), p.m, p.k, y.data(), p.n, e);
    bool all = true;
    for (std::int64_t i = 0; i < p.m * p.n; ++i) {
      // The same path's sums, then the simulation's own steps (oneDNN post-op order).
      float v = std::min(std::max(sums[i] + bias[i % p.n], 0.f), 6.f);
      const float q = std::min(std::max(std::nearbyint(v / 0.02f) + 3.f, 0.f), 255.f);
      all = all && y[i] == (q - 3.f) * 0.02f;
    }
    CHECK_MESSAGE(all, isa_name(isa));
  }
}

TEST_CASE("kernel ISA names and the host's choice") {
  CHECK(isa_from_name("avx2") == Isa::avx2);
  CHECK(!isa_from_name("sse"));
  CHECK(cpu_supports(cpu_isa()));
  CHECK(isa_of_onednn("avx512_core_amx") == Isa::avx512_vnni);
  CHECK(isa_of_onednn("avx512_core") == Isa::avx512);
  CHECK(isa_of_onednn("avx2_vnni") == Isa::avx2);
  CHECK(isa_of_onednn("sse41") == Isa::scalar);
  MESSAGE("kernel ISA here: " << isa_name(cpu_isa()));
}

}  // namespace executor_kernels_w4a32_test
