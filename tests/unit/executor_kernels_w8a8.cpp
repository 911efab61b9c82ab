// The W8A8 kernel (executor/kernels/w8a8.hpp), with the checks the per-token kernels share
// (executor_per_token_checks.hpp): packing read back exactly; the integer sums are exact, also
// with every code at 127 or at -128 and every activation code 255; and the AVX-512 VNNI path
// agrees with the scalar path (the definition) bit for bit and with a double-precision
// reference on the simulation's values within the bound derived in executor_kernels_w4a8.cpp,
// for odd sizes, K tails (groups padded to a multiple of 4), every group size, signed symmetric
// and asymmetric int8 grids, M = 1, 2, 3, 5, 33, and the epilogue. There is no AVX2 path (the
// header says why): weights packed for AVX2 run the definition. The activation codes are
// W4A8's (tested there). No timing here (bench/bench_lowbit.cpp times it).
#include <doctest/doctest.h>

#include <limits>

#include "core/error.hpp"
#include "executor/kernels/w8a8.hpp"
#include "tests/skip.hpp"
#include "tests/unit/executor_per_token_checks.hpp"

namespace executor_kernels_w8a8_test {

using namespace bitplan;
using namespace bitplan::kernels;
using namespace bitplan::testing::per_token;

namespace {

struct W8Kernel {
  static constexpr const char* name = "W8A8";
  static constexpr int bits = 8, min_code = -128, max_code = 127, k_multiple = 4,
                       symmetric_offset = 0;
  static PackedW8a8 pack(const W4a32Source& source, Isa isa) { return pack_w8a8(source, isa); }
  static void gemm(const PackedW8a8& w, const float* x, std::int64_t m, std::int64_t ldx, float* y,
                   std::int64_t ldy, W4a8Activations& a, const GemmEpilogue& e) {
    w8a8_gemm(w, x, m, ldx, y, ldy, a, e);
  }
  static std::int64_t panel_width(Isa isa) { return w8a8_panel_width(isa); }
};
using K = W8Kernel;

}  // namespace

TEST_CASE("W8A8 packing reads back every code, for every panel width") {
  check_packing<K>();
}

TEST_CASE("W8A8 packing refuses offsets, scales and groups outside the format") {
  Problem p = make_problem<K>(1, 32, 4, 32, false, 9);
  p.offsets[1] = 128.f;
  CHECK_THROWS_WITH_AS(
      pack_w8a8(p.source(), Isa::scalar),
      doctest::Contains("offset 128 of column 1, group 0 is not an integer in [-128, 127]"), Error);
  p = make_problem<K>(1, 32, 4, 32, false, 9);
  p.offsets[2] = 0.5f;
  CHECK_THROWS_WITH_AS(pack_w8a8(p.source(), Isa::scalar),
                       doctest::Contains("offset 0.5 of column 2"), Error);
  p = make_problem<K>(1, 32, 4, 32, false, 9);
  p.scales[2] = std::numeric_limits<float>::infinity();
  CHECK_THROWS_WITH_AS(pack_w8a8(p.source(), Isa::scalar),
                       doctest::Contains("scale inf of column 2"), Error);
  // 2·255·128 per weight: at most 2^31 / 65280 = 32896 weights per scale.
  W4a32Source long_group = p.source();
  long_group.k = 40000;
  long_group.group = 40000;
  CHECK_THROWS_WITH_AS(pack_w8a8(long_group, Isa::scalar),
                       doctest::Contains("could overflow int32 (at most 32896 weights"), Error);
}

TEST_CASE("W8A8 scalar path (the definition) matches the reference") {
  check_every_shape<K>(Isa::scalar);
  check_exact_integers<K>(Isa::scalar);
}

TEST_CASE("W8A8 AVX-512 VNNI path matches the scalar path bit for bit and the reference") {
  if (!cpu_supports(Isa::avx512_vnni)) {
    testing::skip("this CPU has no AVX-512 VNNI: the W8A8 VNNI path cannot run here");
    return;
  }
  check_every_shape<K>(Isa::avx512_vnni);
  check_exact_integers<K>(Isa::avx512_vnni);
}

TEST_CASE("W8A8 epilogue and NaN rows: as the simulation") {
  check_epilogue_and_nan_rows<K>();
}

}  // namespace executor_kernels_w8a8_test
