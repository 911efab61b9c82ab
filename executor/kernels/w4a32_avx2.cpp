// W4A32 panel kernel, AVX2 + FMA: a panel of 16 columns, two ymm of 8 columns each.
// Per k: one 8-byte load zero-extended to 8 int32 lanes gives the codes of columns 0-7 (low
// nibbles) and 8-15 (high nibbles); each half is converted to float and its offset
// subtracted (q - zero point, exact), then multiplied by the broadcast activation of each
// row of the tile and accumulated; at the end of each group the sums are scaled once
// (w4a32.hpp). Every weight is converted once per tile of MT rows (4 rows: 8 FMAs per
// 16 weights, FMA-bound); with fewer rows, KU independent accumulator sets hide the FMA
// latency. Compiled with a function target attribute: this file adds no ISA flag to the
// build, and w4a32_gemm calls it only where cpu_supports(Isa::avx2).
#include <immintrin.h>

#include "executor/kernels/w4a32.hpp"

#if defined(__clang__)
#define BITPLAN_UNROLL _Pragma("unroll")
#else
#define BITPLAN_UNROLL _Pragma("GCC unroll 16")
#endif
#define BITPLAN_AVX2 __attribute__((target("avx2,fma")))

namespace bitplan::kernels::detail {
namespace {

// One k: the panel's codes less their offsets (the integers q - zero point, exact in
// float), times each row's x[k], into acc[r].
template <int MT>
BITPLAN_AVX2 inline __attribute__((always_inline)) void step(const std::uint8_t* codes,
                                                             std::int64_t kk, __m256i low4,
                                                             __m256 o0, __m256 o1, const float* x,
                                                             std::int64_t ldx,
                                                             __m256 (&acc)[MT][2]) {
  const __m256i c =
      _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(codes + kk * 8)));
  // c | 0x4B000000 is the float 2^23 + c: minus (2^23 + o), exact, it is c - o without a
  // conversion (an integer op instead of one on the float add ports).
  const __m256i magic = _mm256_set1_epi32(0x4B000000);
  const __m256 w0 =
      _mm256_sub_ps(_mm256_castsi256_ps(_mm256_or_si256(_mm256_and_si256(c, low4), magic)), o0);
  const __m256 w1 =
      _mm256_sub_ps(_mm256_castsi256_ps(_mm256_or_si256(_mm256_srli_epi32(c, 4), magic)), o1);
  BITPLAN_UNROLL
  for (int r = 0; r < MT; ++r) {
    const __m256 xv = _mm256_broadcast_ss(x + r * ldx + kk);
    acc[r][0] = _mm256_fmadd_ps(w0, xv, acc[r][0]);
    acc[r][1] = _mm256_fmadd_ps(w1, xv, acc[r][1]);
  }
}

template <int MT, int KU>
BITPLAN_AVX2 void tile_avx2(const std::uint8_t* codes, const float* scales, const float* offsets,
                            std::int64_t ostep, std::int64_t k_total, std::int64_t group,
                            const float* x, std::int64_t ldx, float* y, std::int64_t ldy) {
  __m256 acc[MT][2];
  for (int r = 0; r < MT; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
  const __m256i low4 = _mm256_set1_epi32(0xF);
  for (std::int64_t g0 = 0, g = 0; g0 < k_total; g0 += group, ++g) {
    // The offsets as 2^23 + o (exact: integers below 2^24), for the step's conversion trick.
    const __m256 two23 = _mm256_set1_ps(8388608.f);
    const __m256 o0 = _mm256_add_ps(_mm256_loadu_ps(offsets + g * ostep), two23),
                 o1 = _mm256_add_ps(_mm256_loadu_ps(offsets + g * ostep + 8), two23);
    const std::int64_t g1 = g0 + group < k_total ? g0 + group : k_total;
    // The group's sums: KU consecutive k at a time, each into its own accumulators, the
    // last few into set 0. Loops over u and r are unrolled, so every index is a constant and
    // the sums stay in registers.
    __m256 part[KU][MT][2];
    BITPLAN_UNROLL
    for (int u = 0; u < KU; ++u) BITPLAN_UNROLL
    for (int r = 0; r < MT; ++r) part[u][r][0] = part[u][r][1] = _mm256_setzero_ps();
    std::int64_t k = g0;
    for (; k + KU <= g1; k += KU) {
      BITPLAN_UNROLL
      for (int u = 0; u < KU; ++u) step<MT>(codes, k + u, low4, o0, o1, x, ldx, part[u]);
    }
    for (; k < g1; ++k) step<MT>(codes, k, low4, o0, o1, x, ldx, part[0]);
    // Then scaled once per group: acc += s * sum_k x_k (q_k - zero point).
    const __m256 s0 = _mm256_loadu_ps(scales + g * 16), s1 = _mm256_loadu_ps(scales + g * 16 + 8);
    BITPLAN_UNROLL
    for (int r = 0; r < MT; ++r) {
      __m256 p0 = part[0][r][0], p1 = part[0][r][1];
      BITPLAN_UNROLL
      for (int u = 1; u < KU; ++u) {
        p0 = _mm256_add_ps(p0, part[u][r][0]);
        p1 = _mm256_add_ps(p1, part[u][r][1]);
      }
      acc[r][0] = _mm256_fmadd_ps(p0, s0, acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(p1, s1, acc[r][1]);
    }
  }
  for (int r = 0; r < MT; ++r) {
    _mm256_storeu_ps(y + r * ldy, acc[r][0]);
    _mm256_storeu_ps(y + r * ldy + 8, acc[r][1]);
  }
}

}  // namespace

void w4a32_panel_avx2(const PackedW4a32& w, std::int64_t panel, const float* x, std::int64_t m,
                      std::int64_t ldx, float* y, std::int64_t ldy) {
  const std::uint8_t* codes = w.codes.data() + panel * w.k * 8;
  const float* scales = w.scales.data() + panel * w.groups * 16;
  const float* offsets = w.panel_offsets(panel);
  const std::int64_t ostep = w.offset_group_step();
  std::int64_t r = 0;
  for (; r + 4 <= m; r += 4)
    tile_avx2<4, 1>(codes, scales, offsets, ostep, w.k, w.group, x + r * ldx, ldx, y + r * ldy,
                    ldy);
  switch (m - r) {
    case 3:
      tile_avx2<3, 1>(codes, scales, offsets, ostep, w.k, w.group, x + r * ldx, ldx, y + r * ldy,
                      ldy);
      break;
    case 2:
      tile_avx2<2, 2>(codes, scales, offsets, ostep, w.k, w.group, x + r * ldx, ldx, y + r * ldy,
                      ldy);
      break;
    case 1:
      tile_avx2<1, 4>(codes, scales, offsets, ostep, w.k, w.group, x + r * ldx, ldx, y + r * ldy,
                      ldy);
      break;
    default:
      break;
  }
}

}  // namespace bitplan::kernels::detail
