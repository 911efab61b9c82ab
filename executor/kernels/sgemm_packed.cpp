#include "executor/kernels/sgemm_packed.hpp"

#include <algorithm>
#include <cmath>
#include <new>

#include "core/error.hpp"
#include "core/parallel.hpp"

namespace bitplan::kernels {

namespace {

constexpr std::size_t kSgemmAlign = 64;

// Rows and k values per block (sgemm_packed.hpp): a panel's k-block of NR·KC floats is 16 KiB
// for AVX2 (32 KiB for AVX-512) of the 32-48 KiB L1; the A rows of a block, MB·KC floats,
// 72-96 KiB of L2.
constexpr std::int64_t kMaxKc = 256;
constexpr std::int64_t kMaxMb = 192;
// Panels per task at most: a task's B (NB·NR·KC floats) stays within L2 next to its A rows.
constexpr std::int64_t kMaxNbPanels = 8;

using SgemmTileFn = void (*)(const detail::SgemmTile&);

SgemmTileFn sgemm_tile_kernel(Isa isa) {
  switch (isa) {
    case Isa::avx512:
    case Isa::avx512_vnni:
      return detail::sgemm_tile_avx512;
    case Isa::avx2:
      return detail::sgemm_tile_avx2;
    case Isa::scalar:
      break;
  }
  return detail::sgemm_tile_scalar;
}

std::int64_t sgemm_ceil_div(std::int64_t a, std::int64_t b) {
  return (a + b - 1) / b;
}

}  // namespace

void PackedSgemmB::Free::operator()(float* p) const {
  ::operator delete[](p, std::align_val_t(kSgemmAlign));
}

std::int64_t sgemm_panel_width(Isa isa) {
  return isa >= Isa::avx512 ? 32 : 16;
}

std::int64_t sgemm_rows_per_tile(Isa isa) {
  return isa >= Isa::avx512 ? 12 : 6;
}

PackedSgemmB pack_sgemm_b(const SgemmSource& src, Isa isa) {
  if (src.k < 1 || src.n < 1)
    fail_input("packing an fp32 GEMM's B: K {} and N {} must be positive", src.k, src.n);
  PackedSgemmB p;
  p.isa = isa;
  p.k = src.k;
  p.n = src.n;
  p.nr = sgemm_panel_width(isa);
  p.panels = sgemm_ceil_div(p.n, p.nr);
  const std::size_t count = static_cast<std::size_t>(p.panels * p.k * p.nr);
  p.data.reset(
      static_cast<float*>(::operator new[](count * sizeof(float), std::align_val_t(kSgemmAlign))));
  for (std::int64_t panel = 0; panel < p.panels; ++panel) {
    float* dst = p.data.get() + panel * p.k * p.nr;
    for (std::int64_t k = 0; k < p.k; ++k)
      for (std::int64_t j = 0; j < p.nr; ++j) {
        const std::int64_t n = panel * p.nr + j;
        dst[k * p.nr + j] = n < p.n ? src.data[k * src.stride_k + n * src.stride_n] : 0.f;
      }
  }
  return p;
}

namespace detail {

// The definition every path follows: per output, sums over k in order with one fused
// multiply-add each, then alpha · sum + bias as one more.
void sgemm_tile_scalar(const SgemmTile& t) {
  constexpr std::int64_t nr = 16;
  for (std::int64_t r = 0; r < t.m; ++r) {
    float acc[nr];
    float* c = t.c + r * t.ldc;
    for (std::int64_t j = 0; j < nr; ++j) acc[j] = t.first || j >= t.cols ? 0.f : c[j];
    const float* a = t.a + r * t.lda;
    for (std::int64_t k = 0; k < t.kc; ++k)
      for (std::int64_t j = 0; j < nr; ++j) acc[j] = std::fma(a[k], t.b[k * nr + j], acc[j]);
    for (std::int64_t j = 0; j < t.cols; ++j)
      c[j] = t.last ? std::fma(acc[j], t.alpha, t.bias ? t.bias[j] : 0.f) : acc[j];
  }
}

}  // namespace detail

void sgemm_packed(const PackedSgemmB& p, const float* a, std::int64_t m, std::int64_t lda, float* c,
                  std::int64_t ldc, float alpha, const float* bias) {
  BITPLAN_ASSERT(cpu_supports(p.isa));
  BITPLAN_ASSERT(p.isa != Isa::scalar || p.nr == 16);
  if (m <= 0) return;
  const SgemmTileFn tile = sgemm_tile_kernel(p.isa);
  const std::int64_t mr = sgemm_rows_per_tile(p.isa);
  // Balanced blocks: as few k-blocks as KC allows, of equal size; row blocks likewise, in
  // whole MR-row tiles.
  const std::int64_t kblocks = sgemm_ceil_div(p.k, kMaxKc);
  const std::int64_t kc = sgemm_ceil_div(p.k, kblocks);
  const std::int64_t mblocks = sgemm_ceil_div(m, kMaxMb);
  const std::int64_t mb = sgemm_ceil_div(sgemm_ceil_div(m, mblocks), mr) * mr;
  const std::int64_t row_blocks = sgemm_ceil_div(m, mb);
  // Column blocks: at most kMaxNbPanels panels each, enough for every thread to get a few
  // tasks, and a task count that the threads divide, each block's panels within one of the
  // others' (36 panels in 8 blocks: 4 or 5 each, so 2 threads get 18 each, not 20 and 16).
  const std::int64_t threads = std::max(1, num_threads());
  std::int64_t nblocks =
      std::max(sgemm_ceil_div(p.panels, kMaxNbPanels), sgemm_ceil_div(4 * threads, row_blocks));
  while (nblocks < p.panels && (row_blocks * nblocks) % threads != 0) ++nblocks;
  nblocks = std::min(nblocks, p.panels);
  auto run_block = [&](std::int64_t task) {
    const std::int64_t r0 = (task / nblocks) * mb, block = task % nblocks;
    const std::int64_t r1 = std::min(m, r0 + mb);
    const std::int64_t p0 = block * p.panels / nblocks, p1 = (block + 1) * p.panels / nblocks;
    for (std::int64_t k0 = 0; k0 < p.k; k0 += kc) {
      const std::int64_t kn = std::min(kc, p.k - k0);
      for (std::int64_t panel = p0; panel < p1; ++panel) {
        const std::int64_t n0 = panel * p.nr;
        detail::SgemmTile t{};
        t.lda = lda;
        t.b = p.panel(panel) + k0 * p.nr;
        t.kc = kn;
        t.ldc = ldc;
        t.cols = std::min(p.nr, p.n - n0);
        t.first = k0 == 0;
        t.last = k0 + kn == p.k;
        t.alpha = alpha;
        t.bias = bias ? bias + n0 : nullptr;
        // The block's rows in tiles of nearly equal height (62 rows: 7 x 6 + 4 x 5, not
        // 10 x 6 + 2): a tile of few rows has too few independent sums to hide the FMA latency.
        const std::int64_t rows = r1 - r0, tiles = sgemm_ceil_div(rows, mr);
        for (std::int64_t i = 0, r = r0; i < tiles; ++i) {
          t.m = rows / tiles + (i < rows % tiles ? 1 : 0);
          t.a = a + r * lda + k0;
          t.c = c + r * ldc + n0;
          tile(t);
          r += t.m;
        }
      }
    }
  };
  // Flop count per task decides whether threading pays: below ~1M multiply-adds in all, the
  // caller's thread does it.
  const std::int64_t tasks = row_blocks * nblocks;
  const std::int64_t macs_per_task =
      std::max<std::int64_t>(1, mb * sgemm_ceil_div(p.panels, nblocks) * p.nr * p.k);
  const std::int64_t grain = std::max<std::int64_t>(1, (std::int64_t{1} << 18) / macs_per_task);
  parallel_for_openmp(tasks, grain, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t task = begin; task < end; ++task) run_block(task);
  });
}

void sgemm_reference(const SgemmSource& b, const float* a, std::int64_t m, std::int64_t lda,
                     float* c, std::int64_t ldc, float alpha, const float* bias) {
  for (std::int64_t r = 0; r < m; ++r)
    for (std::int64_t n = 0; n < b.n; ++n) {
      double sum = 0;
      for (std::int64_t k = 0; k < b.k; ++k)
        sum += static_cast<double>(a[r * lda + k]) * b.data[k * b.stride_k + n * b.stride_n];
      c[r * ldc + n] = static_cast<float>(alpha * sum + (bias ? bias[n] : 0.0));
    }
}

}  // namespace bitplan::kernels
