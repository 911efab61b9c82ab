// The W2A8 kernel (executor/kernels/w2a8.hpp), with the checks it shares with W3A8
// (executor_per_token_checks.hpp): packing read back exactly; the integer sums are exact,
// also with every code 3 and every activation code 255; and every ISA path (forced by its
// Isa argument, so the AVX2 path runs on AVX-512 machines and the scalar path everywhere)
// agrees with the scalar path bit for bit and with a double-precision reference on the
// simulation's values within the bound derived in executor_kernels_w4a8.cpp (the same float
// steps: one fma per group, then the row's scale), for odd sizes, K tails (groups padded to a
// multiple of 4), every group size, K past one s16 widening span of the AVX2 path (64 k),
// int2/sym and uint2/asym grids, M = 1, 2, 3, 5, 33, and the epilogue. The activation codes
// are W4A8's (tested there). No timing here (bench/bench_lowbit.cpp times it).
#include <doctest/doctest.h>

#include <limits>

#include "core/error.hpp"
#include "executor/kernels/w2a8.hpp"
#include "tests/skip.hpp"
#include "tests/unit/executor_per_token_checks.hpp"

namespace executor_kernels_w2a8_test {

using namespace bitplan;
using namespace bitplan::kernels;
using namespace bitplan::testing::per_token;

namespace {

struct W2Kernel {
  static constexpr const char* name = "W2A8";
  static constexpr int bits = 2, min_code = 0, max_code = 3, k_multiple = 4, symmetric_offset = 2;
  static PackedW2a8 pack(const W4a32Source& source, Isa isa) { return pack_w2a8(source, isa); }
  static void gemm(const PackedW2a8& w, const float* x, std::int64_t m, std::int64_t ldx, float* y,
                   std::int64_t ldy, W4a8Activations& a, const GemmEpilogue& e) {
    w2a8_gemm(w, x, m, ldx, y, ldy, a, e);
  }
  static std::int64_t panel_width(Isa isa) { return w2a8_panel_width(isa); }
};
using K = W2Kernel;

}  // namespace

TEST_CASE("W2A8 packing reads back every code, for every panel width") {
  check_packing<K>();
}

TEST_CASE("W2A8 packing refuses codes, offsets, scales and groups outside the format") {
  Problem p = make_problem<K>(1, 32, 4, 32, false, 9);
  p.codes[3] = 4;
  CHECK_THROWS_WITH_AS(pack_w2a8(p.source(), Isa::scalar),
                       doctest::Contains("code 4 at (k 0, n 3) is not in [0, 3]"), Error);
  p = make_problem<K>(1, 32, 4, 32, false, 9);
  p.offsets[1] = 8.f;
  CHECK_THROWS_WITH_AS(
      pack_w2a8(p.source(), Isa::scalar),
      doctest::Contains("offset 8 of column 1, group 0 is not an integer in [0, 3]"), Error);
  p = make_problem<K>(1, 32, 4, 32, false, 9);
  p.scales[2] = std::numeric_limits<float>::infinity();
  CHECK_THROWS_WITH_AS(pack_w2a8(p.source(), Isa::scalar),
                       doctest::Contains("scale inf of column 2"), Error);
  W4a32Source long_group = p.source();
  long_group.k = 2000000;
  long_group.group = 2000000;
  CHECK_THROWS_WITH_AS(pack_w2a8(long_group, Isa::scalar),
                       doctest::Contains("could overflow int32 (at most 1403584 weights"), Error);
}

TEST_CASE("W2A8 scalar path (the definition) matches the reference") {
  check_every_shape<K>(Isa::scalar);
  check_exact_integers<K>(Isa::scalar);
}

TEST_CASE("W2A8 AVX2 path matches the scalar path bit for bit and the reference") {
  if (!cpu_supports(Isa::avx2)) {
    MESSAGE("this CPU has no AVX2+FMA: the AVX2 path cannot run here");
    return;
  }
  check_every_shape<K>(Isa::avx2);
  check_exact_integers<K>(Isa::avx2);
}

TEST_CASE("W2A8 AVX-512 VNNI path matches the scalar path bit for bit and the reference") {
  if (!cpu_supports(Isa::avx512_vnni)) {
    testing::skip("this CPU has no AVX-512 VNNI: the W2A8 VNNI path cannot run here");
    return;
  }
  check_every_shape<K>(Isa::avx512_vnni);
  check_exact_integers<K>(Isa::avx512_vnni);
}

TEST_CASE("W2A8 epilogue and NaN rows: as the simulation") {
  check_epilogue_and_nan_rows<K>();
}

}  // namespace executor_kernels_w2a8_test
