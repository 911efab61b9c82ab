// Packed-B SGEMM microkernel, AVX2 + FMA: up to 6 rows x 16 columns (a panel: two ymm) of C
// in 12 accumulators; per k, two loads of the panel's row and one broadcast per row of A
// feed 12 FMAs (sgemm_packed.hpp). Compiled with a function target attribute: this file adds
// no ISA flag to the build, and sgemm_packed calls it only where cpu_supports(Isa::avx2).
#include <immintrin.h>

#include "executor/kernels/sgemm_packed.hpp"

#if defined(__clang__)
#define BITPLAN_UNROLL _Pragma("unroll")
#else
#define BITPLAN_UNROLL _Pragma("GCC unroll 16")
#endif
#define BITPLAN_SGEMM_AVX2 __attribute__((target("avx2,fma")))

namespace bitplan::kernels::detail {
namespace {

constexpr int kSgemmNrAvx2 = 16;

template <int MR>
BITPLAN_SGEMM_AVX2 void sgemm_rows_avx2(const SgemmTile& t) {
  __m256 acc[MR][2];
  // C in and out through a buffer when the panel is the last, narrower one.
  alignas(32) float edge[MR][kSgemmNrAvx2];
  const bool full = t.cols == kSgemmNrAvx2;
  BITPLAN_UNROLL
  for (int r = 0; r < MR; ++r) {
    if (t.first) {
      acc[r][0] = acc[r][1] = _mm256_setzero_ps();
      continue;
    }
    const float* c = t.c + r * t.ldc;
    if (!full) {
      for (int j = 0; j < kSgemmNrAvx2; ++j) edge[r][j] = j < t.cols ? c[j] : 0.f;
      c = edge[r];
    }
    acc[r][0] = _mm256_loadu_ps(c);
    acc[r][1] = _mm256_loadu_ps(c + 8);
  }
  const float* a = t.a;
  const float* b = t.b;
  for (std::int64_t k = 0; k < t.kc; ++k, b += kSgemmNrAvx2) {
    const __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
    BITPLAN_UNROLL
    for (int r = 0; r < MR; ++r) {
      const __m256 av = _mm256_broadcast_ss(a + r * t.lda + k);
      acc[r][0] = _mm256_fmadd_ps(av, b0, acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(av, b1, acc[r][1]);
    }
  }
  if (t.last) {
    const __m256 alpha = _mm256_set1_ps(t.alpha);
    __m256 bias0 = _mm256_setzero_ps(), bias1 = _mm256_setzero_ps();
    if (t.bias) {
      alignas(32) float padded[kSgemmNrAvx2] = {};
      for (std::int64_t j = 0; j < t.cols; ++j) padded[j] = t.bias[j];
      bias0 = _mm256_load_ps(padded);
      bias1 = _mm256_load_ps(padded + 8);
    }
    BITPLAN_UNROLL
    for (int r = 0; r < MR; ++r) {
      acc[r][0] = _mm256_fmadd_ps(acc[r][0], alpha, bias0);
      acc[r][1] = _mm256_fmadd_ps(acc[r][1], alpha, bias1);
    }
  }
  BITPLAN_UNROLL
  for (int r = 0; r < MR; ++r) {
    float* c = t.c + r * t.ldc;
    if (full) {
      _mm256_storeu_ps(c, acc[r][0]);
      _mm256_storeu_ps(c + 8, acc[r][1]);
    } else {
      _mm256_store_ps(edge[r], acc[r][0]);
      _mm256_store_ps(edge[r] + 8, acc[r][1]);
      for (std::int64_t j = 0; j < t.cols; ++j) c[j] = edge[r][j];
    }
  }
}

}  // namespace

void sgemm_tile_avx2(const SgemmTile& t) {
  switch (t.m) {
    case 6:
      return sgemm_rows_avx2<6>(t);
    case 5:
      return sgemm_rows_avx2<5>(t);
    case 4:
      return sgemm_rows_avx2<4>(t);
    case 3:
      return sgemm_rows_avx2<3>(t);
    case 2:
      return sgemm_rows_avx2<2>(t);
    default:
      return sgemm_rows_avx2<1>(t);
  }
}

}  // namespace bitplan::kernels::detail
#undef BITPLAN_SGEMM_AVX2
