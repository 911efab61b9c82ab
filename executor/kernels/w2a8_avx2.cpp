// W2A8 panel kernel, AVX2: a panel of 32 columns, four ymm of 8 int32 lanes, one lane per
// column holding 4 consecutive k (w2a8.hpp). Per quad of k: one 32-byte load; (v >> 2s) & 3
// gives the codes of columns 8s .. 8s + 7 (s = 0 .. 3). Each row's 4 activation codes are
// broadcast to every lane and vpmaddubsw multiplies u8 (activations) by s8 (codes in
// [0, 3]) and adds neighbouring pairs into s16. Those s16 sums are added up over up to 16
// quads before one vpmaddwd by ones widens them to int32: a pair is at most 2·255·3 = 1530,
// 16 of them 24480 < 32767, so nothing saturates and the sums stay exact, and the widening
// costs one instruction per 64 k instead of one per 4 (the W4A8 kernel widens every quad:
// its pairs reach 7650). At the end of each group the zero-point terms are subtracted and the
// exact sums scaled once, as in W4A8. Tiles of up to 2 rows (8 s16 accumulators and the 4
// unpacked code vectors fill the 16 ymm). Compiled with a function target attribute;
// w2a8_gemm calls it only where cpu_supports(Isa::avx2).
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "executor/kernels/w2a8.hpp"

#if defined(__clang__)
#define BITPLAN_UNROLL _Pragma("unroll")
#else
#define BITPLAN_UNROLL _Pragma("GCC unroll 16")
#endif
#define BITPLAN_AVX2 __attribute__((target("avx2,fma")))

namespace bitplan::kernels::detail {
namespace {

// Quads whose s16 pair sums are added before widening (see above).
constexpr std::int64_t kW2QuadsPerWiden = 16;

template <int MT>
BITPLAN_AVX2 void w2_tile_avx2(const PackedW2a8& w, const std::uint8_t* codes, const float* scales,
                               const std::int32_t* offsets, std::int64_t ostep,
                               const std::int32_t* weight_sums, const W4a8Activations& a,
                               std::int64_t row0, float* y, std::int64_t ldy) {
  const std::int64_t quads = w.group_padded / 4;
  const std::uint8_t* xq[MT];
  for (int r = 0; r < MT; ++r) xq[r] = a.codes.data() + (row0 + r) * a.padded_k;
  __m256 acc[MT][4];
  for (int r = 0; r < MT; ++r)
    for (int s = 0; s < 4; ++s) acc[r][s] = _mm256_setzero_ps();
  const __m256i low2 = _mm256_set1_epi8(0x03);
  const __m256i ones = _mm256_set1_epi16(1);
  for (std::int64_t g = 0; g < w.groups; ++g) {
    __m256i dot[MT][4];
    for (int r = 0; r < MT; ++r)
      for (int s = 0; s < 4; ++s) dot[r][s] = _mm256_setzero_si256();
    const std::uint8_t* wq = codes + g * quads * 32;
    const std::int64_t x0 = g * w.group_padded;
    for (std::int64_t q0 = 0; q0 < quads; q0 += kW2QuadsPerWiden) {
      const std::int64_t q1 = std::min(quads, q0 + kW2QuadsPerWiden);
      __m256i pairs[MT][4];
      BITPLAN_UNROLL
      for (int r = 0; r < MT; ++r)
        for (int s = 0; s < 4; ++s) pairs[r][s] = _mm256_setzero_si256();
      for (std::int64_t q = q0; q < q1; ++q) {
        const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wq + q * 32));
        const __m256i c[4] = {_mm256_and_si256(v, low2),
                              _mm256_and_si256(_mm256_srli_epi16(v, 2), low2),
                              _mm256_and_si256(_mm256_srli_epi16(v, 4), low2),
                              _mm256_and_si256(_mm256_srli_epi16(v, 6), low2)};
        BITPLAN_UNROLL
        for (int r = 0; r < MT; ++r) {
          std::int32_t four;
          std::memcpy(&four, xq[r] + x0 + q * 4, sizeof four);
          const __m256i xb = _mm256_set1_epi32(four);
          BITPLAN_UNROLL
          for (int s = 0; s < 4; ++s)
            pairs[r][s] = _mm256_add_epi16(pairs[r][s], _mm256_maddubs_epi16(xb, c[s]));
        }
      }
      BITPLAN_UNROLL
      for (int r = 0; r < MT; ++r)
        for (int s = 0; s < 4; ++s)
          dot[r][s] = _mm256_add_epi32(dot[r][s], _mm256_madd_epi16(pairs[r][s], ones));
    }
    // I = sum xq·c - o·X - zx·S (exact), then acc += sw · I, 8 columns at a time.
    BITPLAN_UNROLL
    for (int s = 0; s < 4; ++s) {
      const __m256i o =
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(offsets + g * ostep + 8 * s));
      const __m256i ws =
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(weight_sums + g * 32 + 8 * s));
      const __m256 sw = _mm256_loadu_ps(scales + g * 32 + 8 * s);
      BITPLAN_UNROLL
      for (int r = 0; r < MT; ++r) {
        const std::int64_t row = row0 + r;
        const __m256i x_sum =
            _mm256_set1_epi32(a.code_sums[static_cast<std::size_t>(row * w.groups + g)]);
        const __m256i zx = _mm256_set1_epi32(a.zero_points[static_cast<std::size_t>(row)]);
        const __m256i i = _mm256_sub_epi32(
            _mm256_sub_epi32(dot[r][s], _mm256_mullo_epi32(o, x_sum)), _mm256_mullo_epi32(ws, zx));
        acc[r][s] = _mm256_fmadd_ps(sw, _mm256_cvtepi32_ps(i), acc[r][s]);
      }
    }
  }
  for (int r = 0; r < MT; ++r) {
    const __m256 sx = _mm256_set1_ps(a.scales[static_cast<std::size_t>(row0 + r)]);
    for (int s = 0; s < 4; ++s) _mm256_storeu_ps(y + r * ldy + 8 * s, _mm256_mul_ps(sx, acc[r][s]));
  }
}

}  // namespace

void w2a8_panel_avx2(const PackedW2a8& w, std::int64_t panel, const W4a8Activations& a,
                     std::int64_t row0, std::int64_t m, float* y, std::int64_t ldy) {
  const std::uint8_t* codes = w.codes.data() + panel * w.panel_bytes();
  const std::int64_t at = panel * w.groups * 32;
  const float* scales = w.scales.data() + at;
  const std::int32_t* offsets = w.panel_offsets(panel);
  const std::int64_t ostep = w.offset_group_step();
  const std::int32_t* weight_sums = w.weight_sums.data() + at;
  std::int64_t r = 0;
  for (; r + 2 <= m; r += 2)
    w2_tile_avx2<2>(w, codes, scales, offsets, ostep, weight_sums, a, row0 + r, y + r * ldy, ldy);
  if (r < m)
    w2_tile_avx2<1>(w, codes, scales, offsets, ostep, weight_sums, a, row0 + r, y + r * ldy, ldy);
}

}  // namespace bitplan::kernels::detail
