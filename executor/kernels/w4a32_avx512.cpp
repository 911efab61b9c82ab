// W4A32 panel kernel, AVX-512 F: a panel of 32 columns, two zmm of 16 columns each.
// Per k: one 16-byte load zero-extended to 16 int32 lanes gives the codes of columns 0-15
// (low nibbles) and 16-31 (high nibbles); each half is converted and its offset subtracted,
// accumulated against each row's broadcast x[k] and scaled once per group, as in the AVX2
// kernel (w4a32_avx2.cpp) at twice the width and with twice the registers (tiles of up to
// 8 rows). Compiled with a function target attribute; w4a32_gemm calls it only where
// cpu_supports(Isa::avx512).
// GCC 12 warns that the _mm512_undefined_* placeholders inside its own intrinsics "may be
// used uninitialized" when they are inlined into a target-attribute function (a known false
// positive): silenced for this file only.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include "executor/kernels/w4a32.hpp"

#if defined(__clang__)
#define BITPLAN_UNROLL _Pragma("unroll")
#else
#define BITPLAN_UNROLL _Pragma("GCC unroll 16")
#endif
#define BITPLAN_AVX512 __attribute__((target("avx512f,fma")))

namespace bitplan::kernels::detail {
namespace {

// One k: the panel's codes less their offsets (the integers q - zero point, exact in
// float), times each row's x[k], into acc[r].
template <int MT>
BITPLAN_AVX512 inline __attribute__((always_inline)) void step(const std::uint8_t* codes,
                                                               std::int64_t kk, __m512i low4,
                                                               __m512 o0, __m512 o1, const float* x,
                                                               std::int64_t ldx,
                                                               __m512 (&acc)[MT][2]) {
  const __m512i c =
      _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + kk * 16)));
  // c | 0x4B000000 is the float 2^23 + c: minus (2^23 + o), exact, it is c - o without a
  // conversion (an integer op instead of one on the float add ports).
  const __m512i magic = _mm512_set1_epi32(0x4B000000);
  const __m512 w0 =
      _mm512_sub_ps(_mm512_castsi512_ps(_mm512_or_si512(_mm512_and_si512(c, low4), magic)), o0);
  const __m512 w1 =
      _mm512_sub_ps(_mm512_castsi512_ps(_mm512_or_si512(_mm512_srli_epi32(c, 4), magic)), o1);
  BITPLAN_UNROLL
  for (int r = 0; r < MT; ++r) {
    const __m512 xv = _mm512_set1_ps(x[r * ldx + kk]);
    acc[r][0] = _mm512_fmadd_ps(w0, xv, acc[r][0]);
    acc[r][1] = _mm512_fmadd_ps(w1, xv, acc[r][1]);
  }
}

template <int MT, int KU>
BITPLAN_AVX512 void tile_avx512(const std::uint8_t* codes, const float* scales,
                                const float* offsets, std::int64_t ostep, std::int64_t k_total,
                                std::int64_t group, const float* x, std::int64_t ldx, float* y,
                                std::int64_t ldy) {
  __m512 acc[MT][2];
  for (int r = 0; r < MT; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  const __m512i low4 = _mm512_set1_epi32(0xF);
  for (std::int64_t g0 = 0, g = 0; g0 < k_total; g0 += group, ++g) {
    // The offsets as 2^23 + o (exact: integers below 2^24), for the step's conversion trick.
    const __m512 two23 = _mm512_set1_ps(8388608.f);
    const __m512 o0 = _mm512_add_ps(_mm512_loadu_ps(offsets + g * ostep), two23),
                 o1 = _mm512_add_ps(_mm512_loadu_ps(offsets + g * ostep + 16), two23);
    const std::int64_t g1 = g0 + group < k_total ? g0 + group : k_total;
    // The group's sums: KU consecutive k at a time, each into its own accumulators, the
    // last few into set 0. Loops over u and r are unrolled, so every index is a constant and
    // the sums stay in registers.
    __m512 part[KU][MT][2];
    BITPLAN_UNROLL
    for (int u = 0; u < KU; ++u) BITPLAN_UNROLL
    for (int r = 0; r < MT; ++r) part[u][r][0] = part[u][r][1] = _mm512_setzero_ps();
    std::int64_t k = g0;
    for (; k + KU <= g1; k += KU) {
      BITPLAN_UNROLL
      for (int u = 0; u < KU; ++u) step<MT>(codes, k + u, low4, o0, o1, x, ldx, part[u]);
    }
    for (; k < g1; ++k) step<MT>(codes, k, low4, o0, o1, x, ldx, part[0]);
    // Then scaled once per group: acc += s * sum_k x_k (q_k - zero point).
    const __m512 s0 = _mm512_loadu_ps(scales + g * 32), s1 = _mm512_loadu_ps(scales + g * 32 + 16);
    BITPLAN_UNROLL
    for (int r = 0; r < MT; ++r) {
      __m512 p0 = part[0][r][0], p1 = part[0][r][1];
      BITPLAN_UNROLL
      for (int u = 1; u < KU; ++u) {
        p0 = _mm512_add_ps(p0, part[u][r][0]);
        p1 = _mm512_add_ps(p1, part[u][r][1]);
      }
      acc[r][0] = _mm512_fmadd_ps(p0, s0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(p1, s1, acc[r][1]);
    }
  }
  for (int r = 0; r < MT; ++r) {
    _mm512_storeu_ps(y + r * ldy, acc[r][0]);
    _mm512_storeu_ps(y + r * ldy + 16, acc[r][1]);
  }
}

template <int MT>
BITPLAN_AVX512 void rows_avx512(const std::uint8_t* codes, const float* scales,
                                const float* offsets, std::int64_t ostep, const PackedW4a32& w,
                                const float* x, std::int64_t ldx, float* y, std::int64_t ldy) {
  constexpr int KU = MT >= 4 ? 1 : MT >= 2 ? 2 : 4;
  tile_avx512<MT, KU>(codes, scales, offsets, ostep, w.k, w.group, x, ldx, y, ldy);
}

}  // namespace

void w4a32_panel_avx512(const PackedW4a32& w, std::int64_t panel, const float* x, std::int64_t m,
                        std::int64_t ldx, float* y, std::int64_t ldy) {
  const std::uint8_t* codes = w.codes.data() + panel * w.k * 16;
  const float* scales = w.scales.data() + panel * w.groups * 32;
  const float* offsets = w.panel_offsets(panel);
  const std::int64_t ostep = w.offset_group_step();
  std::int64_t r = 0;
  for (; r + 8 <= m; r += 8)
    rows_avx512<8>(codes, scales, offsets, ostep, w, x + r * ldx, ldx, y + r * ldy, ldy);
  const float* xr = x + r * ldx;
  float* yr = y + r * ldy;
  switch (m - r) {
    case 7:
      rows_avx512<7>(codes, scales, offsets, ostep, w, xr, ldx, yr, ldy);
      break;
    case 6:
      rows_avx512<6>(codes, scales, offsets, ostep, w, xr, ldx, yr, ldy);
      break;
    case 5:
      rows_avx512<5>(codes, scales, offsets, ostep, w, xr, ldx, yr, ldy);
      break;
    case 4:
      rows_avx512<4>(codes, scales, offsets, ostep, w, xr, ldx, yr, ldy);
      break;
    case 3:
      rows_avx512<3>(codes, scales, offsets, ostep, w, xr, ldx, yr, ldy);
      break;
    case 2:
      rows_avx512<2>(codes, scales, offsets, ostep, w, xr, ldx, yr, ldy);
      break;
    case 1:
      rows_avx512<1>(codes, scales, offsets, ostep, w, xr, ldx, yr, ldy);
      break;
    default:
      break;
  }
}

}  // namespace bitplan::kernels::detail
