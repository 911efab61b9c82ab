// W3A8 panel kernel, AVX2: a panel of 32 columns, four ymm of 8 int32 lanes, one lane per
// column holding 4 consecutive k (w3a8.hpp). Per octet of k: three 32-byte loads (planes A,
// B, C), then the codes c in [0, 7] of the eight vectors t = 4q + s (quad q, columns
// 8s .. 8s + 7) by the table of w3a8.hpp: (A >> 3·i) & 7 and the like for six of them, and
// ((A >> 6) & 3) | ((C >> 4) & 4), ((B >> 6) & 3) | ((C >> 5) & 4) for the last two (the
// shifts are 16-bit: the bits they carry in from the neighbouring byte are masked off). Each
// row's 4 activation codes of a quad are broadcast to every lane and vpmaddubsw multiplies u8
// (activations) by s8 (codes) and adds neighbouring pairs into s16, with saturation, which
// cannot happen here: both operands are >= 0, so a pair is in [0, 2·255·7] = [0, 3570], and
// the pairs are added in s16 over at most 8 quads (32 k) before one vpmaddwd by ones widens
// them to int32: at most 8·3570 = 28560 < 32767. (W2A8 adds 16 quads of pairs <= 1530; W4A8,
// whose pairs reach 7650, widens every quad.) At the end of each group the zero-point terms
// are subtracted and the exact sums scaled once, as in W4A8. Tiles of up to 2 rows (8 s16
// accumulators and 4 code vectors nearly fill the 16 ymm). Compiled with a function target
// attribute; w3a8_gemm calls it only where cpu_supports(Isa::avx2).
#include <algorithm>
#include <cstring>

#include "executor/kernels/per_token_x86.hpp"
#include "executor/kernels/w3a8.hpp"

namespace bitplan::kernels::detail {
namespace {

// Octets whose s16 pair sums are added before widening: 4 octets = 8 quads (see above).
constexpr std::int64_t kW3OctetsPerWiden = 4;

// The code vectors of an octet's quad 0 (codes t = 0 .. 3: columns 8s .. 8s + 7 in c[s]) and
// quad 1 (t = 4 .. 7) from its planes a, b, h (w3a8.hpp), one quad at a time so that only
// four are live.
BITPLAN_AVX2 inline void w3_quad0_avx2(__m256i a, __m256i b, __m256i low3, __m256i c[4]) {
  c[0] = _mm256_and_si256(a, low3);
  c[1] = _mm256_and_si256(_mm256_srli_epi16(a, 3), low3);
  c[2] = _mm256_and_si256(b, low3);
  c[3] = _mm256_and_si256(_mm256_srli_epi16(b, 3), low3);
}

BITPLAN_AVX2 inline void w3_quad1_avx2(__m256i a, __m256i b, __m256i h, __m256i low3, __m256i low2,
                                       __m256i bit2, __m256i c[4]) {
  c[0] = _mm256_and_si256(h, low3);
  c[1] = _mm256_and_si256(_mm256_srli_epi16(h, 3), low3);
  c[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(a, 6), low2),
                         _mm256_and_si256(_mm256_srli_epi16(h, 4), bit2));
  c[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(b, 6), low2),
                         _mm256_and_si256(_mm256_srli_epi16(h, 5), bit2));
}

// pairs[r][s] += the s16 pair sums of row r's 4 activation codes at xq[r] + at times c[s].
template <int MT>
BITPLAN_AVX2 inline void w3_pairs_avx2(__m256i pairs[][4], const std::uint8_t* const xq[],
                                       std::int64_t at, const __m256i c[4]) {
  BITPLAN_UNROLL
  for (int r = 0; r < MT; ++r) {
    std::int32_t four;
    std::memcpy(&four, xq[r] + at, sizeof four);
    const __m256i xb = _mm256_set1_epi32(four);
    BITPLAN_UNROLL
    for (int s = 0; s < 4; ++s)
      pairs[r][s] = _mm256_add_epi16(pairs[r][s], _mm256_maddubs_epi16(xb, c[s]));
  }
}

template <int MT>
BITPLAN_AVX2 void w3_tile_avx2(const PackedW3a8& w, const PanelData& d, const W4a8Activations& a,
                               std::int64_t row0, float* y, std::int64_t ldy) {
  const std::int64_t octets = w.group_padded / 8;
  const std::uint8_t* xq[MT];
  for (int r = 0; r < MT; ++r) xq[r] = a.codes.data() + (row0 + r) * a.padded_k;
  __m256 acc[MT][4];
  for (int r = 0; r < MT; ++r)
    for (int s = 0; s < 4; ++s) acc[r][s] = _mm256_setzero_ps();
  const __m256i low3 = _mm256_set1_epi8(0x07);
  const __m256i low2 = _mm256_set1_epi8(0x03);
  const __m256i bit2 = _mm256_set1_epi8(0x04);
  const __m256i ones = _mm256_set1_epi16(1);
  for (std::int64_t g = 0; g < w.groups; ++g) {
    __m256i dot[MT][4];
    for (int r = 0; r < MT; ++r)
      for (int s = 0; s < 4; ++s) dot[r][s] = _mm256_setzero_si256();
    const std::uint8_t* wq = d.codes + g * octets * 96;
    const std::int64_t x0 = g * w.group_padded;
    for (std::int64_t o0 = 0; o0 < octets; o0 += kW3OctetsPerWiden) {
      const std::int64_t o1 = std::min(octets, o0 + kW3OctetsPerWiden);
      __m256i pairs[MT][4];
      BITPLAN_UNROLL
      for (int r = 0; r < MT; ++r)
        for (int s = 0; s < 4; ++s) pairs[r][s] = _mm256_setzero_si256();
      for (std::int64_t o = o0; o < o1; ++o) {
        const std::uint8_t* octet = wq + o * 96;
        const __m256i pa = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(octet));
        const __m256i pb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(octet + 32));
        const __m256i ph = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(octet + 64));
        __m256i c[4];
        w3_quad0_avx2(pa, pb, low3, c);
        w3_pairs_avx2<MT>(pairs, xq, x0 + o * 8, c);
        w3_quad1_avx2(pa, pb, ph, low3, low2, bit2, c);
        w3_pairs_avx2<MT>(pairs, xq, x0 + o * 8 + 4, c);
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

void w3a8_panel_avx2(const PackedW3a8& w, std::int64_t panel, const W4a8Activations& a,
                     std::int64_t row0, std::int64_t m, float* y, std::int64_t ldy) {
  const PanelData d = panel_data(w, panel);
  row_tiles<2>(
      m, [&]<int MT>(std::int64_t r) { w3_tile_avx2<MT>(w, d, a, row0 + r, y + r * ldy, ldy); });
}

}  // namespace bitplan::kernels::detail
