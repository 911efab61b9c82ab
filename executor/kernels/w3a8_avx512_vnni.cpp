// W3A8 panel kernel, AVX-512 VNNI: a panel of 64 columns, four zmm of 16 int32 lanes, one
// lane per column holding 4 consecutive k (w3a8.hpp). Per octet of k: three 64-byte loads
// (planes A, B, C), then the eight code vectors by the table of w3a8.hpp, as in the AVX2
// kernel (w3a8_avx2.cpp) but with the last two's and + or as one vpternlogd; each row's 4
// activation codes of a quad are broadcast to every lane and vpdpbusd adds the four u8 x s8
// products of each lane into its int32 (no intermediate s16, so nothing can saturate). At the
// end of each group the zero-point terms are subtracted and the exact sums scaled once, with
// tiles of up to 4 rows (16 int32 accumulators, the code vectors and a broadcast in 32 zmm).
// Compiled with a function target attribute; w3a8_gemm calls it only where
// cpu_supports(Isa::avx512_vnni).
// GCC 12's false "may be used uninitialized" inside its own AVX-512 intrinsics (see
// w4a8_avx512_vnni.cpp): silenced for this file only.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <cstring>

#include "executor/kernels/per_token_x86.hpp"
#include "executor/kernels/w3a8.hpp"

namespace bitplan::kernels::detail {
namespace {

// The eight code vectors of an octet (w3a8.hpp): c[q][s] is code t = 4q + s. vpternlogd
// 0xF8 is A | (B & C): the low two bits, or the high bit moved to bit 2 and isolated.
BITPLAN_AVX512_VNNI inline void w3_codes_avx512(const std::uint8_t* octet, __m512i low3,
                                                __m512i low2, __m512i bit2, __m512i c[2][4]) {
  const __m512i a = _mm512_loadu_si512(octet);
  const __m512i b = _mm512_loadu_si512(octet + 64);
  const __m512i h = _mm512_loadu_si512(octet + 128);
  c[0][0] = _mm512_and_si512(a, low3);
  c[0][1] = _mm512_and_si512(_mm512_srli_epi16(a, 3), low3);
  c[0][2] = _mm512_and_si512(b, low3);
  c[0][3] = _mm512_and_si512(_mm512_srli_epi16(b, 3), low3);
  c[1][0] = _mm512_and_si512(h, low3);
  c[1][1] = _mm512_and_si512(_mm512_srli_epi16(h, 3), low3);
  c[1][2] = _mm512_ternarylogic_epi32(_mm512_and_si512(_mm512_srli_epi16(a, 6), low2),
                                      _mm512_srli_epi16(h, 4), bit2, 0xF8);
  c[1][3] = _mm512_ternarylogic_epi32(_mm512_and_si512(_mm512_srli_epi16(b, 6), low2),
                                      _mm512_srli_epi16(h, 5), bit2, 0xF8);
}

template <int MT>
BITPLAN_AVX512_VNNI void w3_tile_avx512_vnni(const PackedW3a8& w, const PanelData& d,
                                             const W4a8Activations& a, std::int64_t row0, float* y,
                                             std::int64_t ldy) {
  const std::int64_t octets = w.group_padded / 8;
  const std::uint8_t* xq[MT];
  for (int r = 0; r < MT; ++r) xq[r] = a.codes.data() + (row0 + r) * a.padded_k;
  __m512 acc[MT][4];
  for (int r = 0; r < MT; ++r)
    for (int s = 0; s < 4; ++s) acc[r][s] = _mm512_setzero_ps();
  const __m512i low3 = _mm512_set1_epi8(0x07);
  const __m512i low2 = _mm512_set1_epi8(0x03);
  const __m512i bit2 = _mm512_set1_epi8(0x04);
  for (std::int64_t g = 0; g < w.groups; ++g) {
    __m512i dot[MT][4];
    BITPLAN_UNROLL
    for (int r = 0; r < MT; ++r)
      for (int s = 0; s < 4; ++s) dot[r][s] = _mm512_setzero_si512();
    const std::uint8_t* wq = d.codes + g * octets * 192;
    const std::int64_t x0 = g * w.group_padded;
    for (std::int64_t o = 0; o < octets; ++o) {
      __m512i c[2][4];
      w3_codes_avx512(wq + o * 192, low3, low2, bit2, c);
      BITPLAN_UNROLL
      for (int q = 0; q < 2; ++q) {
        BITPLAN_UNROLL
        for (int r = 0; r < MT; ++r) {
          std::int32_t four;
          std::memcpy(&four, xq[r] + x0 + o * 8 + q * 4, sizeof four);
          const __m512i xb = _mm512_set1_epi32(four);
          // vpdpbusd: the first operand's bytes are unsigned (activations), the second's signed.
          BITPLAN_UNROLL
          for (int s = 0; s < 4; ++s) dot[r][s] = _mm512_dpbusd_epi32(dot[r][s], xb, c[q][s]);
        }
      }
    }
    group_end_avx512<MT, 4>(d, g, a, row0, dot, acc);
  }
  store_rows_avx512<MT, 4>(a, row0, acc, y, ldy);
}

}  // namespace

void w3a8_panel_avx512_vnni(const PackedW3a8& w, std::int64_t panel, const W4a8Activations& a,
                            std::int64_t row0, std::int64_t m, float* y, std::int64_t ldy) {
  const PanelData d = panel_data(w, panel);
  row_tiles<4>(m, [&]<int MT>(std::int64_t r) {
    w3_tile_avx512_vnni<MT>(w, d, a, row0 + r, y + r * ldy, ldy);
  });
}

}  // namespace bitplan::kernels::detail
