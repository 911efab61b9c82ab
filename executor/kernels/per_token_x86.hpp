// The vector pieces the per-token kernels' AVX2 and AVX-512 VNNI paths share
// (w4a8_*.cpp, w3a8_*.cpp, w2a8_*.cpp): where a panel's data starts, the end of a group
// (the zero-point terms subtracted from the exact int32 sums, then one fma per group) and the
// store of a tile's rows. Included only by those files; every function is compiled for its
// ISA with a target attribute, as the kernels are, and inlined into them.
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "executor/kernels/per_token.hpp"

#if defined(__clang__)
#define BITPLAN_UNROLL _Pragma("unroll")
#else
#define BITPLAN_UNROLL _Pragma("GCC unroll 16")
#endif
#define BITPLAN_AVX2 __attribute__((target("avx2,fma")))
#define BITPLAN_AVX512_VNNI __attribute__((target("avx512f,avx512bw,avx512vnni,fma")))

namespace bitplan::kernels::detail {

// Panel p's codes and its per (group, column) data.
struct PanelData {
  const std::uint8_t* codes;
  const float* scales;
  const std::int32_t* offsets;
  std::int64_t ostep;  // offsets' step from one group to the next (0 when uniform)
  const std::int32_t* weight_sums;
};

template <class Packed>
PanelData panel_data(const Packed& w, std::int64_t p) {
  const std::int64_t at = p * w.groups * w.panel;
  return {w.codes.data() + p * w.panel_bytes(), w.scales.data() + at, w.panel_offsets(p),
          w.offset_group_step(), w.weight_sums.data() + at};
}

// End of group g for rows row0 .. row0 + MT - 1 and NV vectors of 8 columns:
// I = sum xq·c - o·X - zx·S (exact), then acc += sw · I.
template <int MT, int NV>
BITPLAN_AVX2 inline void group_end_avx2(const PanelData& d, std::int64_t g,
                                        const W4a8Activations& a, std::int64_t row0,
                                        const __m256i (&dot)[MT][NV], __m256 (&acc)[MT][NV]) {
  BITPLAN_UNROLL
  for (int s = 0; s < NV; ++s) {
    const __m256i o =
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(d.offsets + g * d.ostep + 8 * s));
    const __m256i ws =
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(d.weight_sums + g * 8 * NV + 8 * s));
    const __m256 sw = _mm256_loadu_ps(d.scales + g * 8 * NV + 8 * s);
    BITPLAN_UNROLL
    for (int r = 0; r < MT; ++r) {
      const std::int64_t row = row0 + r;
      const __m256i x_sum =
          _mm256_set1_epi32(a.code_sums[static_cast<std::size_t>(row * a.groups + g)]);
      const __m256i zx = _mm256_set1_epi32(a.zero_points[static_cast<std::size_t>(row)]);
      const __m256i i = _mm256_sub_epi32(_mm256_sub_epi32(dot[r][s], _mm256_mullo_epi32(o, x_sum)),
                                         _mm256_mullo_epi32(ws, zx));
      acc[r][s] = _mm256_fmadd_ps(sw, _mm256_cvtepi32_ps(i), acc[r][s]);
    }
  }
}

// y[r][..] = sx[row0 + r] · acc[r][..].
template <int MT, int NV>
BITPLAN_AVX2 inline void store_rows_avx2(const W4a8Activations& a, std::int64_t row0,
                                         const __m256 (&acc)[MT][NV], float* y, std::int64_t ldy) {
  for (int r = 0; r < MT; ++r) {
    const __m256 sx = _mm256_set1_ps(a.scales[static_cast<std::size_t>(row0 + r)]);
    for (int s = 0; s < NV; ++s)
      _mm256_storeu_ps(y + r * ldy + 8 * s, _mm256_mul_ps(sx, acc[r][s]));
  }
}

// The same for NV vectors of 16 columns.
template <int MT, int NV>
BITPLAN_AVX512_VNNI inline void group_end_avx512(const PanelData& d, std::int64_t g,
                                                 const W4a8Activations& a, std::int64_t row0,
                                                 const __m512i (&dot)[MT][NV],
                                                 __m512 (&acc)[MT][NV]) {
  BITPLAN_UNROLL
  for (int s = 0; s < NV; ++s) {
    const __m512i o = _mm512_loadu_si512(d.offsets + g * d.ostep + 16 * s);
    const __m512i ws = _mm512_loadu_si512(d.weight_sums + g * 16 * NV + 16 * s);
    const __m512 sw = _mm512_loadu_ps(d.scales + g * 16 * NV + 16 * s);
    BITPLAN_UNROLL
    for (int r = 0; r < MT; ++r) {
      const std::int64_t row = row0 + r;
      const __m512i x_sum =
          _mm512_set1_epi32(a.code_sums[static_cast<std::size_t>(row * a.groups + g)]);
      const __m512i zx = _mm512_set1_epi32(a.zero_points[static_cast<std::size_t>(row)]);
      const __m512i i = _mm512_sub_epi32(_mm512_sub_epi32(dot[r][s], _mm512_mullo_epi32(o, x_sum)),
                                         _mm512_mullo_epi32(ws, zx));
      acc[r][s] = _mm512_fmadd_ps(sw, _mm512_cvtepi32_ps(i), acc[r][s]);
    }
  }
}

template <int MT, int NV>
BITPLAN_AVX512_VNNI inline void store_rows_avx512(const W4a8Activations& a, std::int64_t row0,
                                                  const __m512 (&acc)[MT][NV], float* y,
                                                  std::int64_t ldy) {
  for (int r = 0; r < MT; ++r) {
    const __m512 sx = _mm512_set1_ps(a.scales[static_cast<std::size_t>(row0 + r)]);
    for (int s = 0; s < NV; ++s)
      _mm512_storeu_ps(y + r * ldy + 16 * s, _mm512_mul_ps(sx, acc[r][s]));
  }
}

// Runs tile<MT>(r) over rows [0, m): tiles of MaxMT rows, then one of the rest.
template <int MaxMT, class Tile>
void row_tiles(std::int64_t m, const Tile& tile) {
  std::int64_t r = 0;
  for (; r + MaxMT <= m; r += MaxMT) tile.template operator()<MaxMT>(r);
  if constexpr (MaxMT > 1) {
    if (r < m)
      row_tiles<MaxMT - 1>(m - r,
                           [&]<int MT>(std::int64_t rr) { tile.template operator()<MT>(r + rr); });
  }
}

}  // namespace bitplan::kernels::detail
