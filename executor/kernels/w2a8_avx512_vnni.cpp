// W2A8 panel kernel, AVX-512 VNNI: a panel of 64 columns, four zmm of 16 int32 lanes, one
// lane per column holding 4 consecutive k (w2a8.hpp). Per quad of k: one 64-byte load;
// (v >> 2s) & 3 gives the codes of columns 16s .. 16s + 15 (s = 0 .. 3); each row's 4
// activation codes are broadcast to every lane and vpdpbusd adds the four u8 x s8 products
// of each lane into its int32 (no intermediate s16, so nothing can saturate). At the end of
// each group the zero-point terms are subtracted and the exact sums scaled once, as in the
// AVX2 kernel (w2a8_avx2.cpp), with tiles of up to 4 rows (16 int32 accumulators, the 4 code
// vectors and a broadcast in 32 zmm). Compiled with a function target attribute; w2a8_gemm
// calls it only where cpu_supports(Isa::avx512_vnni).
// GCC 12's false "may be used uninitialized" inside its own AVX-512 intrinsics (see
// w4a8_avx512_vnni.cpp): silenced for this file only.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <cstring>

#include "executor/kernels/per_token_x86.hpp"
#include "executor/kernels/w2a8.hpp"

namespace bitplan::kernels::detail {
namespace {

template <int MT>
BITPLAN_AVX512_VNNI void w2_tile_avx512_vnni(const PackedW2a8& w, const PanelData& d,
                                             const W4a8Activations& a, std::int64_t row0, float* y,
                                             std::int64_t ldy) {
  const std::int64_t quads = w.group_padded / 4;
  const std::uint8_t* xq[MT];
  for (int r = 0; r < MT; ++r) xq[r] = a.codes.data() + (row0 + r) * a.padded_k;
  __m512 acc[MT][4];
  for (int r = 0; r < MT; ++r)
    for (int s = 0; s < 4; ++s) acc[r][s] = _mm512_setzero_ps();
  const __m512i low2 = _mm512_set1_epi8(0x03);
  for (std::int64_t g = 0; g < w.groups; ++g) {
    __m512i dot[MT][4];
    BITPLAN_UNROLL
    for (int r = 0; r < MT; ++r)
      for (int s = 0; s < 4; ++s) dot[r][s] = _mm512_setzero_si512();
    const std::uint8_t* wq = d.codes + g * quads * 64;
    const std::int64_t x0 = g * w.group_padded;
    for (std::int64_t q = 0; q < quads; ++q) {
      const __m512i v = _mm512_loadu_si512(wq + q * 64);
      const __m512i c[4] = {_mm512_and_si512(v, low2),
                            _mm512_and_si512(_mm512_srli_epi16(v, 2), low2),
                            _mm512_and_si512(_mm512_srli_epi16(v, 4), low2),
                            _mm512_and_si512(_mm512_srli_epi16(v, 6), low2)};
      BITPLAN_UNROLL
      for (int r = 0; r < MT; ++r) {
        std::int32_t four;
        std::memcpy(&four, xq[r] + x0 + q * 4, sizeof four);
        const __m512i xb = _mm512_set1_epi32(four);
        // vpdpbusd: the first operand's bytes are unsigned (activations), the second's signed.
        BITPLAN_UNROLL
        for (int s = 0; s < 4; ++s) dot[r][s] = _mm512_dpbusd_epi32(dot[r][s], xb, c[s]);
      }
    }
    group_end_avx512<MT, 4>(d, g, a, row0, dot, acc);
  }
  store_rows_avx512<MT, 4>(a, row0, acc, y, ldy);
}

}  // namespace

void w2a8_panel_avx512_vnni(const PackedW2a8& w, std::int64_t panel, const W4a8Activations& a,
                            std::int64_t row0, std::int64_t m, float* y, std::int64_t ldy) {
  const PanelData d = panel_data(w, panel);
  row_tiles<4>(m, [&]<int MT>(std::int64_t r) {
    w2_tile_avx512_vnni<MT>(w, d, a, row0 + r, y + r * ldy, ldy);
  });
}

}  // namespace bitplan::kernels::detail
