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
#include <algorithm>
#include <cstring>

#include "executor/kernels/per_token_x86.hpp"
#include "executor/kernels/w2a8.hpp"

namespace bitplan::kernels::detail {
namespace {

// Quads whose s16 pair sums are added before widening (see above).
constexpr std::int64_t kW2QuadsPerWiden = 16;

template <int MT>
BITPLAN_AVX2 void w2_tile_avx2(const PackedW2a8& w, const PanelData& d, const W4a8Activations& a,
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
    const std::uint8_t* wq = d.codes + g * quads * 32;
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
    group_end_avx2<MT, 4>(d, g, a, row0, dot, acc);
  }
  store_rows_avx2<MT, 4>(a, row0, acc, y, ldy);
}

}  // namespace

void w2a8_panel_avx2(const PackedW2a8& w, std::int64_t panel, const W4a8Activations& a,
                     std::int64_t row0, std::int64_t m, float* y, std::int64_t ldy) {
  const PanelData d = panel_data(w, panel);
  row_tiles<2>(
      m, [&]<int MT>(std::int64_t r) { w2_tile_avx2<MT>(w, d, a, row0 + r, y + r * ldy, ldy); });
}

}  // namespace bitplan::kernels::detail
