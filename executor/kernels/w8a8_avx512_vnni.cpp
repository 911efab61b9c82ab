// W8A8 panel kernel, AVX-512 VNNI: a panel of 32 columns, two zmm of 16 int32 lanes, one lane
// per column holding 4 consecutive k (w8a8.hpp). Per quad of k: two 64-byte loads, the codes
// as stored (s8); each row's 4 activation codes are broadcast to every lane and vpdpbusd adds
// the four u8 x s8 products of each lane into its int32 (no intermediate s16, so nothing can
// saturate). At the end of each group the zero-point terms are subtracted and the exact sums
// scaled once (per_token_x86.hpp), with tiles of up to 8 rows (16 int32 accumulators).
// Compiled with a function target attribute; w8a8_gemm calls it only for weights packed for
// Isa::avx512_vnni, which the driver checks this CPU supports.
// GCC 12's false "may be used uninitialized" inside its own AVX-512 intrinsics (see
// w4a8_avx512_vnni.cpp): silenced for this file only.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <cstring>

#include "executor/kernels/per_token_x86.hpp"
#include "executor/kernels/w8a8.hpp"

namespace bitplan::kernels::detail {
namespace {

template <int MT>
BITPLAN_AVX512_VNNI void w8_tile_avx512_vnni(const PackedW8a8& w, const PanelData& d,
                                             const W4a8Activations& a, std::int64_t row0, float* y,
                                             std::int64_t ldy) {
  const std::int64_t quads = w.group_padded / 4;
  const std::uint8_t* xq[MT];
  for (int r = 0; r < MT; ++r) xq[r] = a.codes.data() + (row0 + r) * a.padded_k;
  __m512 acc[MT][2];
  for (int r = 0; r < MT; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  for (std::int64_t g = 0; g < w.groups; ++g) {
    __m512i dot[MT][2];
    BITPLAN_UNROLL
    for (int r = 0; r < MT; ++r) dot[r][0] = dot[r][1] = _mm512_setzero_si512();
    const std::uint8_t* wq = d.codes + g * quads * 128;
    const std::int64_t x0 = g * w.group_padded;
    for (std::int64_t q = 0; q < quads; ++q) {
      const __m512i c0 = _mm512_loadu_si512(wq + q * 128);
      const __m512i c1 = _mm512_loadu_si512(wq + q * 128 + 64);
      BITPLAN_UNROLL
      for (int r = 0; r < MT; ++r) {
        std::int32_t four;
        std::memcpy(&four, xq[r] + x0 + q * 4, sizeof four);
        const __m512i xb = _mm512_set1_epi32(four);
        // vpdpbusd: the first operand's bytes are unsigned (activations), the second's signed.
        dot[r][0] = _mm512_dpbusd_epi32(dot[r][0], xb, c0);
        dot[r][1] = _mm512_dpbusd_epi32(dot[r][1], xb, c1);
      }
    }
    group_end_avx512<MT, 2>(d, g, a, row0, dot, acc);
  }
  store_rows_avx512<MT, 2>(a, row0, acc, y, ldy);
}

}  // namespace

void w8a8_panel_avx512_vnni(const PackedW8a8& w, std::int64_t panel, const W4a8Activations& a,
                            std::int64_t row0, std::int64_t m, float* y, std::int64_t ldy) {
  const PanelData d = panel_data(w, panel);
  row_tiles<8>(m, [&]<int MT>(std::int64_t r) {
    w8_tile_avx512_vnni<MT>(w, d, a, row0 + r, y + r * ldy, ldy);
  });
}

}  // namespace bitplan::kernels::detail
