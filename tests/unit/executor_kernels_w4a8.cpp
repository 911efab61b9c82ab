// The W4A8 kernel (executor/kernels/w4a8.hpp): packing read back exactly; the activation
// codes are the simulation's (fake_quantize_activation_per_token) bit for bit; the integer
// sums are exact; and every ISA path (forced by its Isa argument, so the AVX2 path runs on
// AVX-512 machines and the scalar path everywhere) agrees with the scalar path bit for bit
// and with a double-precision reference on the simulation's values within a derived bound,
// for odd sizes, K tails (groups padded to a multiple of 4), every group size, signed
// symmetric and unsigned asymmetric grids, and M = 1, 3, 8, 33. No timing here
// (bench/bench_lowbit.cpp times it).
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "core/error.hpp"
#include "executor/kernels/w4a8.hpp"
#include "executor/quant/formats.hpp"
#include "executor/quant/quantizer.hpp"
#include "tests/skip.hpp"

namespace executor_kernels_w4a8_test {

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
  std::int64_t group_of(std::int64_t kk) const { return kk / std::min(group, k); }
  // c - o: the weight's integer (q - zero point).
  std::int32_t weight_int(std::int64_t kk, std::int64_t nn) const {
    return codes[kk * n + nn] - static_cast<std::int32_t>(offsets[group_of(kk) * n + nn]);
  }
  // The simulation's dequantized weight, fl((c - o)·s).
  float weight(std::int64_t kk, std::int64_t nn) const {
    return static_cast<float>(weight_int(kk, nn)) * scales[group_of(kk) * n + nn];
  }
};

// `symmetric_signed`: int4/sym (offsets all 8, codes 1..15); else uint4/asym (random offsets,
// codes 0..15). `unit_scales`: every weight scale 1, for the exact-integer test.
Problem make_problem(std::int64_t m, std::int64_t k, std::int64_t n, std::int64_t group,
                     bool symmetric_signed, std::uint32_t seed, bool unit_scales = false) {
  std::mt19937 rng(seed);
  Problem p{m, k, n, group, (k + std::min(group, k) - 1) / std::min(group, k), {}, {}, {}, {}};
  std::uniform_int_distribution<int> code(symmetric_signed ? 1 : 0, 15), offset(0, 15);
  std::uniform_real_distribution<float> scale(0.001f, 0.1f);
  std::normal_distribution<float> act(0.3f, 1.f);
  p.codes.resize(static_cast<std::size_t>(k * n));
  for (auto& c : p.codes) c = static_cast<std::int8_t>(code(rng));
  p.scales.resize(static_cast<std::size_t>(p.groups * n));
  p.offsets.resize(p.scales.size());
  for (auto& s : p.scales) s = unit_scales ? 1.f : scale(rng);
  for (auto& o : p.offsets) o = symmetric_signed ? 8.f : static_cast<float>(offset(rng));
  p.x.resize(static_cast<std::size_t>(m * k));
  for (auto& v : p.x) v = act(rng);
  return p;
}

// x as the simulation fake-quantizes it: uint8/token/asym, dynamic.
std::vector<float> simulated_x(const Problem& p) {
  std::vector<float> xq(p.x.size());
  fake_quantize_activation_per_token(FormatId::uint8, false, p.x.data(), xq.data(), p.m, p.k, 1);
  return xq;
}

std::vector<float> run(const Problem& p, Isa isa) {
  const PackedW4a8 packed = pack_w4a8(p.source(), isa);
  W4a8Activations a = make_w4a8_activations(packed, p.m);
  std::vector<float> y(static_cast<std::size_t>(p.m * p.n), std::nanf(""));
  w4a8_gemm(packed, p.x.data(), p.m, p.k, y.data(), p.n, a);
  return y;
}

// The bound against the simulation's value Y = sum_k xs_k·w_k (xs = fl((q - zx)·sx) and
// w = fl((c - o)·sw), the simulation's float operands), summed here in double. Every path
// computes, from exact int32 sums I_g (|I_g| < 2^24 at these sizes, so converted exactly),
//   y = fl(sx · fl(... fl(sw_1·I_1 + fl(sw_0·I_0)) ...)),  one rounding per fused
// multiply-add and one for sx: |y - E| <= gamma_{groups+1} · sum_g sx·sw_g·|I_g| against
// the exact value E = sum_k (q - zx)·sx·(c - o)·sw (Higham, "Accuracy and Stability of
// Numerical Algorithms", (3.4)/(3.5); gamma_j = j·u / (1 - j·u), u = 2^-24). Y differs from
// E by the roundings of xs and w: |Y - E| <= (2u + u^2)·sum_k |xs_k·w_k|/(1 - u)^2. With
// sum_g sx·sw_g·|I_g| <= sum_k |xs_k w_k|/(1 - u)^2, both are within
//   (gamma_{groups+1} + 2u + u^2) / (1 - u)^2 · sum_k |xs_k·w_k|,
// plus 1 % for the reference's own double sums and the smallest subnormal for sums of zero.
double error_bound(const Problem& p, const std::vector<float>& xs, std::int64_t row,
                   std::int64_t col) {
  const double u = std::ldexp(1.0, -24), j = static_cast<double>(p.groups + 1);
  double magnitude = 0;
  for (std::int64_t kk = 0; kk < p.k; ++kk)
    magnitude += std::fabs(double(xs[row * p.k + kk]) * double(p.weight(kk, col)));
  const double gamma = j * u / (1 - j * u);
  return 1.01 * (gamma + 2 * u + u * u) / ((1 - u) * (1 - u)) * magnitude +
         std::numeric_limits<float>::denorm_min();
}

double reference(const Problem& p, const std::vector<float>& xs, std::int64_t row,
                 std::int64_t col) {
  double sum = 0;
  for (std::int64_t kk = 0; kk < p.k; ++kk)
    sum += double(xs[row * p.k + kk]) * double(p.weight(kk, col));
  return sum;
}

// Runs `isa`'s path, checks it bit for bit against the scalar path (when given) and every
// output against the reference; returns the worst error as a fraction of its bound.
double check_path(const Problem& p, Isa isa, const std::vector<float>* scalar) {
  const std::vector<float> y = run(p, isa);
  const std::vector<float> xs = simulated_x(p);
  double worst = 0;
  for (std::int64_t r = 0; r < p.m; ++r)
    for (std::int64_t c = 0; c < p.n; ++c) {
      const float v = y[static_cast<std::size_t>(r * p.n + c)];
      const double ref = reference(p, xs, r, c);
      const double err = std::fabs(double(v) - ref), bound = error_bound(p, xs, r, c);
      worst = std::max(worst, err / bound);
      const bool same_as_scalar = !scalar || (*scalar)[static_cast<std::size_t>(r * p.n + c)] == v;
      if (!(err <= bound) || !same_as_scalar) {
        FAIL_CHECK(
            isa_name(isa) << " m " << p.m << " k " << p.k << " n " << p.n << " group " << p.group
                          << ": y[" << r << "][" << c << "] = " << v << ", reference " << ref
                          << ", bound " << bound << ", scalar "
                          << (scalar ? (*scalar)[static_cast<std::size_t>(r * p.n + c)] : v));
        return worst;
      }
    }
  return worst;
}

// The sizes every path is checked at: odd K and N, K tails of a quad and of a group, tails
// of the panel, several panels, groups shorter, equal to and longer than K (per channel).
void check_every_shape(Isa isa) {
  std::uint32_t seed = 1;
  double worst = 0;
  for (const std::int64_t m : {1, 3, 8, 33})
    for (const auto& [k, n] : std::vector<std::pair<std::int64_t, std::int64_t>>{
             {1, 1}, {7, 5}, {37, 19}, {64, 16}, {96, 33}, {128, 64}, {202, 47}, {384, 70}})
      for (const std::int64_t group : {32, 64, 128, 1 << 20})
        for (const bool symmetric : {true, false}) {
          const Problem p = make_problem(m, k, n, group, symmetric, seed++);
          const std::vector<float> scalar = run(p, Isa::scalar);
          worst = std::max(worst, check_path(p, isa, isa == Isa::scalar ? nullptr : &scalar));
        }
  MESSAGE(isa_name(isa) << ": worst error " << worst << " of the bound");
}

// With every weight scale 1 the float sums hold exact integers (below 2^24), so each path's
// output is, bit for bit, fl(sx · sum_k (q - zx)(c - o)): any error in an integer sum shows.
void check_exact_integers(Isa isa) {
  std::uint32_t seed = 100;
  for (const std::int64_t m : {1, 3, 8, 33})
    for (const auto& [k, n] :
         std::vector<std::pair<std::int64_t, std::int64_t>>{{7, 5}, {37, 19}, {96, 33}, {202, 47}})
      for (const std::int64_t group : {32, 64, 128, 1 << 20})
        for (const bool symmetric : {true, false}) {
          const Problem p = make_problem(m, k, n, group, symmetric, seed++, true);
          const PackedW4a8 packed = pack_w4a8(p.source(), isa);
          W4a8Activations a = make_w4a8_activations(packed, p.m);
          std::vector<float> y(static_cast<std::size_t>(p.m * p.n));
          w4a8_gemm(packed, p.x.data(), p.m, p.k, y.data(), p.n, a);
          bool all = true;
          for (std::int64_t r = 0; r < p.m; ++r) {
            const std::int32_t zx = a.zero_points[static_cast<std::size_t>(r)];
            const float sx = a.scales[static_cast<std::size_t>(r)];
            for (std::int64_t c = 0; c < p.n; ++c) {
              std::int64_t exact = 0;
              for (std::int64_t kk = 0; kk < p.k; ++kk) {
                const std::int64_t g = p.group_of(kk),
                                   at = g * packed.group_padded + kk % std::min(p.group, p.k);
                exact += (a.codes[static_cast<std::size_t>(r * a.padded_k + at)] - zx) *
                         std::int64_t{p.weight_int(kk, c)};
              }
              all =
                  all && y[static_cast<std::size_t>(r * p.n + c)] == sx * static_cast<float>(exact);
            }
          }
          CHECK_MESSAGE(all, isa_name(isa) << " m " << m << " k " << p.k << " n " << p.n
                                           << " group " << group);
        }
}

}  // namespace

TEST_CASE("W4A8 packing reads back every code, for every panel width") {
  for (const Isa isa : {Isa::scalar, Isa::avx2, Isa::avx512_vnni}) {
    // K = 45 in groups of 30: two groups of 30 and 15, padded to 32 and 16 k.
    const Problem p = make_problem(1, 45, 71, 30, false, 7);
    const PackedW4a8 packed = pack_w4a8(p.source(), isa);
    CHECK(packed.panel == w4a8_panel_width(isa));
    CHECK(packed.panels == (71 + packed.panel - 1) / packed.panel);
    CHECK(packed.groups == 2);
    CHECK(packed.group_padded == 32);
    CHECK(packed.codes.size() ==
          static_cast<std::size_t>(packed.panels * 2 * 32 / 4 * 2 * packed.panel));
    bool all = true, sums = true;
    for (std::int64_t n = 0; n < p.n; ++n) {
      std::int32_t sum[2] = {0, 0};
      for (std::int64_t k = 0; k < p.k; ++k) {
        all = all && packed_code(packed, k, n) == p.codes[k * p.n + n];
        sum[p.group_of(k)] += p.weight_int(k, n);
      }
      for (std::int64_t g = 0; g < 2; ++g)
        sums =
            sums && packed.weight_sums[static_cast<std::size_t>(
                        ((n / packed.panel) * 2 + g) * packed.panel + n % packed.panel)] == sum[g];
    }
    CHECK(all);
    CHECK(sums);
    // Padding columns of the last panel weigh nothing: code 0, offset 0.
    for (std::int64_t n = p.n; n < packed.panels * packed.panel; ++n)
      CHECK(packed_code(packed, 0, n) == 0);
  }
  // Transposed source strides ([N, K] storage, a Gemm with transB) pack the same bytes.
  const Problem p = make_problem(1, 40, 9, 32, true, 8);
  std::vector<std::int8_t> nk(p.codes.size());
  for (std::int64_t k = 0; k < p.k; ++k)
    for (std::int64_t n = 0; n < p.n; ++n) nk[n * p.k + k] = p.codes[k * p.n + n];
  W4a32Source transposed = p.source();
  transposed.codes = nk.data();
  transposed.stride_k = 1;
  transposed.stride_n = p.k;
  CHECK(pack_w4a8(transposed, Isa::avx2).codes == pack_w4a8(p.source(), Isa::avx2).codes);
}

TEST_CASE("W4A8 packing refuses codes, offsets, scales and groups outside the format") {
  Problem p = make_problem(1, 32, 4, 32, false, 9);
  p.codes[3] = 16;
  CHECK_THROWS_WITH_AS(pack_w4a8(p.source(), Isa::scalar),
                       doctest::Contains("code 16 at (k 0, n 3) is not in [0, 15]"), Error);
  p = make_problem(1, 32, 4, 32, false, 9);
  p.offsets[1] = 2.5f;
  CHECK_THROWS_WITH_AS(pack_w4a8(p.source(), Isa::scalar),
                       doctest::Contains("offset 2.5 of column 1, group 0"), Error);
  p = make_problem(1, 32, 4, 32, false, 9);
  p.scales[2] = 0.f;
  CHECK_THROWS_WITH_AS(pack_w4a8(p.source(), Isa::scalar), doctest::Contains("scale 0 of column 2"),
                       Error);
  // A group whose integer sums could pass int32 (2·255·15 per weight): refused, not wrapped.
  W4a32Source long_group = p.source();
  long_group.k = 300000;
  long_group.group = 300000;
  CHECK_THROWS_WITH_AS(pack_w4a8(long_group, Isa::scalar),
                       doctest::Contains("could overflow int32 (at most 280716 weights"), Error);
}

TEST_CASE("W4A8 activation codes are the simulation's per-token uint8 grid, bit for bit") {
  // Rows with a tail, a row of zeros, a row with ±Inf (saturates) and a row with a NaN.
  Problem p = make_problem(6, 37, 3, 16, false, 12);
  for (std::int64_t k = 0; k < p.k; ++k) p.x[static_cast<std::size_t>(2 * p.k + k)] = 0.f;
  p.x[static_cast<std::size_t>(3 * p.k + 5)] = std::numeric_limits<float>::infinity();
  p.x[static_cast<std::size_t>(3 * p.k + 6)] = -std::numeric_limits<float>::infinity();
  p.x[static_cast<std::size_t>(4 * p.k + 9)] = std::nanf("");
  const PackedW4a8 packed = pack_w4a8(p.source(), Isa::scalar);
  W4a8Activations a = make_w4a8_activations(packed, p.m);
  quantize_w4a8_activations(packed, p.x.data(), p.m, p.k, a);
  const std::vector<float> xs = simulated_x(p);
  for (std::int64_t r = 0; r < p.m; ++r) {
    CAPTURE(r);
    const float sx = a.scales[static_cast<std::size_t>(r)];
    const auto zx = static_cast<float>(a.zero_points[static_cast<std::size_t>(r)]);
    if (r == 4) {
      CHECK(std::isnan(sx));  // the row's outputs are NaN, as the simulation's
      continue;
    }
    bool same = true;
    std::int32_t group_sum[3] = {0, 0, 0};
    for (std::int64_t k = 0; k < p.k; ++k) {
      const std::uint8_t code = a.codes[static_cast<std::size_t>(
          r * a.padded_k + (k / 16) * packed.group_padded + k % 16)];
      group_sum[k / 16] += code;
      same =
          same && dequantize_from_grid(code, sx, zx) == xs[static_cast<std::size_t>(r * p.k + k)];
    }
    CHECK(same);
    for (std::int64_t g = 0; g < 3; ++g)
      CHECK(a.code_sums[static_cast<std::size_t>(r * 3 + g)] == group_sum[g]);
    // The padding of the last group (k 37 .. 39) stays 0: it adds nothing to the sums.
    for (std::int64_t at = 2 * 16 + 5; at < a.padded_k; ++at)
      CHECK(a.codes[static_cast<std::size_t>(r * a.padded_k + at)] == 0);
  }
  // The NaN row's outputs are all NaN.
  std::vector<float> y(static_cast<std::size_t>(p.m * p.n));
  w4a8_gemm(packed, p.x.data(), p.m, p.k, y.data(), p.n, a);
  for (std::int64_t c = 0; c < p.n; ++c)
    CHECK(std::isnan(y[static_cast<std::size_t>(4 * p.n + c)]));
  CHECK(y[static_cast<std::size_t>(2 * p.n)] == 0.f);  // a row of zeros gives exact zeros
}

TEST_CASE("W4A8 scalar path (the definition) matches the reference") {
  check_every_shape(Isa::scalar);
  check_exact_integers(Isa::scalar);
}

TEST_CASE("W4A8 AVX2 path matches the scalar path bit for bit and the reference") {
  if (!cpu_supports(Isa::avx2)) {
    MESSAGE("this CPU has no AVX2+FMA: the AVX2 path cannot run here");
    return;
  }
  check_every_shape(Isa::avx2);
  check_exact_integers(Isa::avx2);
}

TEST_CASE("W4A8 AVX-512 VNNI path matches the scalar path bit for bit and the reference") {
  if (!cpu_supports(Isa::avx512_vnni)) {
    testing::skip("this CPU has no AVX-512 VNNI: the W4A8 VNNI path cannot run here");
    return;
  }
  check_every_shape(Isa::avx512_vnni);
  check_exact_integers(Isa::avx512_vnni);
}

TEST_CASE("W4A8 epilogue: bias, activation and output fake quantization as the simulation") {
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
  for (const Isa isa : {Isa::scalar, Isa::avx2, Isa::avx512_vnni}) {
    if (!cpu_supports(isa)) continue;
    const PackedW4a8 packed = pack_w4a8(p.source(), isa);
    W4a8Activations a = make_w4a8_activations(packed, p.m);
    std::vector<float> sums(static_cast<std::size_t>(p.m * p.n)), y(sums.size());
    w4a8_gemm(packed, p.x.data(), p.m, p.k, sums.data(), p.n, a);
    w4a8_gemm(packed, p.x.data(), p.m, p.k, y.data(), p.n, a, e);
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

}  // namespace executor_kernels_w4a8_test
