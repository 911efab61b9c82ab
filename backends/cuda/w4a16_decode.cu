// Decode-shaped W4A16 kernels (m <= 16), one template whose parameters are the design knobs
// that issue 15's sweep compares (names and knobs: w4a16_decode.hpp).
//
// What they must reach: at m = 1 the GEMM reads n * k / 2 bytes of int4 weights plus the
// scales once and does ~1 FMA per weight, so it is a pure weight stream. By Little's law the
// bytes in flight must cover bandwidth x latency: 3.0 TB/s x ~0.7 us (loaded DRAM latency)
// = 2.1 MB over 132 SMs, i.e. ~16 KB per SM, or 1024 16-byte loads: 32 resident warps with 1
// load per lane, or 8 warps with 4. Every variant keeps a warp's D loads per lane in flight
// as a ring (the load for step i + D/T is issued as step i is consumed), not in batches that
// drain to zero between round trips; how often the ring itself drains is the schedule knob.
//
// What the tile kernel (w4a16.cu) spends per 16 bytes of weights at m = 1, and these avoid:
// - instruction issue. The budget: 28672 x 8192 weights are 229K warp-chunks (one warp
//   instruction's 32 lanes x 16 bytes = 512 bytes = 1024 weights); at 2.7 TB/s (45 us) the
//   GPU issues 132 SMs x 4 schedulers x 1.75 GHz x 45 us = 41.6M warp instructions, so
//   ~180 per warp-chunk at 100 % issue. The tile kernel spends ~150 (8 activation loads per
//   chunk with 64-bit index arithmetic and row/k tests, an fp16 multiply by the scale per
//   weight pair, 8 mma): close enough to the limit that issue stalls cap the stream. Here
//   the scale multiplies the fp32 partial sums once per chunk (4 FFMA instead of 16 HMUL2),
//   activations are loaded once per chunk for T column tiles, and rows that cannot exist
//   (g + 8 at mma8) are never loaded: ~75 per warp-chunk. (Both counts are read off the
//   source, not measured; the sweep measures what they are worth.)
// - L1 pollution: weights are read once, so L1::no_allocate keeps the activations (reused
//   by every warp) resident in L1; cp.async.cg bypasses L1 as well.
// - drains: a per-tile block of W warps streams its 8T columns' K (32 KB at k = 8192, only
//   1-2 ring fills per warp), then every warp waits out its last loads, the block reduces
//   and exits, and the next block starts from an empty ring. Persistent blocks keep the
//   ring running from one tile into the next, and stage the activations in shared memory
//   once per block instead of reading them through L1 at every step.
// - too few blocks: with small n the cluster split (sS) spreads one column tile over S SMs.
//
// Numerics: (q - 8) is exact in fp16 and every product x * (q - 8) is exact in fp32, sums are
// fp32 (tensor-core or FFMA), the chunk's fp16 scale multiplies the fp32 partial sum, and
// only the output rounds to fp16.
#include <cooperative_groups.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "backends/cuda/mma.cuh"
#include "backends/cuda/w4a16_decode.hpp"

namespace bitplan::cuda {
namespace {

namespace cg = cooperative_groups;

constexpr int kChunk = 128;  // k per packed chunk and per scale (w4a16.cu)
constexpr int kTileN = 8;    // columns per packed tile (w4a16.cu)

enum class Math { mma, mma_t, fma };
enum class Load { ldg, no_alloc, l2_prefetch, cp_async };
// per_tile: one block per group of T column tiles, activations read through L1.
// persistent: as many blocks as fit at once, each looping over column-tile groups; the
// activations are staged in shared memory once per block, and the ring of loads runs on
// across tiles, so a warp's stream never drains at a tile's end (per_tile blocks drain
// their D loads per lane and then wait for the next block to start).
enum class Schedule { per_tile, persistent };

constexpr int kXPad = 32;  // halves after each staged activation row: rows g start 64 B apart
                           // in the banks, so 8 lanes' 16-byte loads of 2 rows do not collide
constexpr int kMaxSharedBytes = 200 * 1024;  // staged activations + ring, per block

template <Math kMath_, int kRows_, int kWarps_, int kTiles_, int kDepth_, Load kLoad_, int kSplit_,
          Schedule kSchedule_, int kBlocksPerSm_ = 0>
struct Config {
  static constexpr Math kMath = kMath_;
  static constexpr int kRows = kRows_, kWarps = kWarps_, kTiles = kTiles_, kDepth = kDepth_;
  static constexpr Load kLoad = kLoad_;
  static constexpr int kSplit = kSplit_;
  static constexpr bool kPersistent = kSchedule_ == Schedule::persistent;
  static constexpr int kStages = kDepth / kTiles;  // chunk steps in flight per warp
  static constexpr int kCols = kTiles * kTileN;    // output columns per block
  static constexpr int kRingBytes = kLoad == Load::cp_async ? kStages * kTiles * kWarps * 512 : 0;
  // At most 128 registers per thread: at least 16 warps (512 lanes x D loads) per SM, unless
  // the variant asks for more resident blocks (bN: the compiler then keeps the registers to
  // 64K / (N x threads), so more warps hide each one's waits).
  static constexpr int kBlocksPerSm = kBlocksPerSm_;
  static constexpr int kMinBlocks = kBlocksPerSm_ > 0 ? kBlocksPerSm_
                                    : kWarps >= 16    ? 1
                                                      : 16 / kWarps;
  static_assert(kDepth % kTiles == 0, "loads in flight must be whole chunk steps");
  static_assert(kMath != Math::mma || kRows == 8 || kRows == 16,
                "mma variants use rows 0..7 (A fragment rows g) or 0..15 (g and g + 8)");
  static_assert(kMath != Math::mma_t || (kRows == 8 && kTiles % 2 == 0),
                "mma_t variants take 8 rows (the B fragment's columns) and tile pairs (16 A rows)");
  static_assert(!(kPersistent && kSplit > 1), "a cluster splits one tile group, not a loop");
};

// Dynamic shared memory of a launch: the cp.async ring, then m staged activation rows.
template <class C>
std::int64_t shared_bytes(std::int64_t m, std::int64_t padded_k) {
  return C::kRingBytes + (C::kPersistent ? m * (padded_k + kXPad) * 2 : 0);
}

template <Load kLoad>
__device__ __forceinline__ uint4 load_weights(const uint4* p) {
  uint4 v;
  if constexpr (kLoad == Load::no_alloc) {
    v = load_streamed(p);
  } else if constexpr (kLoad == Load::l2_prefetch) {
    asm("ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0, %1, %2, %3}, [%4];"
        : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
        : "l"(p));
  } else {
    v = __ldg(p);
  }
  return v;
}

// 16 bytes global -> shared, bypassing L1 and registers; `valid` false writes zeros and
// reads nothing.
__device__ __forceinline__ void cp_async_16(uint4* smem, const uint4* gmem, bool valid) {
  const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(dst), "l"(gmem),
               "r"(valid ? 16 : 0)
               : "memory");
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;" ::: "memory");
}
template <int kPending>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;" ::"n"(kPending) : "memory");
}

// The 8 int4 values of a word -> 4 half2 of q - 8, exactly; pair s holds the nibbles at bits
// 4s and 16 + 4s. 0x6400 | q is the fp16 1024 + q; a nibble left in bits 4-7 gives
// 1024 + 16q instead, which one fma maps to (1024 + 16q) / 16 - 72 = q - 8 (exact: the
// product by 1/16 is exact and q - 8 is representable), so the 4 pairs take one shift, 4 ands
// with 0x6400 or-ed in (lop3) and 4 half2 subtractions or fmas, where shifting each pair to
// bit 0 takes 3 shifts more. (Bits 12-15 would overlap the fp16 exponent: they go through
// the one shift by 8.)
struct FourPairs {
  std::uint32_t pair[4];
};
__device__ __forceinline__ std::uint32_t or_exponent(std::uint32_t bits, std::uint32_t mask) {
  return (bits & mask) | 0x64006400u;
}
__device__ __forceinline__ std::uint32_t half2_sub_1032(std::uint32_t biased) {
  const __half2 v = __hsub2(*reinterpret_cast<const __half2*>(&biased), __float2half2_rn(1032.0f));
  return *reinterpret_cast<const std::uint32_t*>(&v);
}
__device__ __forceinline__ std::uint32_t half2_div16_sub_72(std::uint32_t biased) {
  const __half2 v = __hfma2(*reinterpret_cast<const __half2*>(&biased),
                            __float2half2_rn(1.0f / 16.0f), __float2half2_rn(-72.0f));
  return *reinterpret_cast<const std::uint32_t*>(&v);
}
__device__ __forceinline__ FourPairs nibbles_minus8(std::uint32_t word) {
  const std::uint32_t high = word >> 8;
  return {{half2_sub_1032(or_exponent(word, 0x000F000Fu)),
           half2_div16_sub_72(or_exponent(word, 0x00F000F0u)),
           half2_sub_1032(or_exponent(high, 0x000F000Fu)),
           half2_div16_sub_72(or_exponent(high, 0x00F000F0u))}};
}

__device__ __forceinline__ float2 half2_bits_to_float2(std::uint32_t bits) {
  return __half22float2(*reinterpret_cast<const __half2*>(&bits));
}

// 8 activations of one row, zero past k (k is a multiple of 8, so 8 are all in or all out).
__device__ __forceinline__ uint4 load_x8(const __half* p, bool in_range) {
  return in_range ? __ldg(reinterpret_cast<const uint4*>(p)) : make_uint4(0, 0, 0, 0);
}

// Tensor-core step: one chunk of T tiles. Lane (g, t) holds, per packing order (w4a16.cu),
// the B fragments of column g for the chunk's 8 k-steps in one uint4, and loads as A the 8
// activations x[row][128c + 32p + 8t ..] of rows g and g + 8 (K permuted alike for A and B).
// The chunk's 8 mma run in two chains of 4 from zero; their fp32 sum times the scales of
// the lane's C columns (2t, 2t + 1) is added to the running sums.
template <class C>
__device__ __forceinline__ void step_mma(const uint4 (&w)[C::kTiles],
                                         const __half2 (&scales)[C::kTiles], const uint4 (&lo)[4],
                                         const uint4 (&hi)[4], float (&acc)[C::kTiles][4]) {
#pragma unroll
  for (int j = 0; j < C::kTiles; ++j) {
    float d[2][4] = {};
    const std::uint32_t words[4] = {w[j].x, w[j].y, w[j].z, w[j].w};
#pragma unroll
    for (int p = 0; p < 4; ++p) {
      const FourPairs q = nibbles_minus8(words[p]);
      // A registers: {row g, e0e1}, {row g+8, e0e1}, {row g, e2e3}, {row g+8, e2e3}.
      mma_16816(d[0], make_uint4(lo[p].x, hi[p].x, lo[p].y, hi[p].y), q.pair[0], q.pair[1]);
      mma_16816(d[1], make_uint4(lo[p].z, hi[p].z, lo[p].w, hi[p].w), q.pair[2], q.pair[3]);
    }
    const float2 s = __half22float2(scales[j]);
    acc[j][0] = fmaf(d[0][0] + d[1][0], s.x, acc[j][0]);
    acc[j][1] = fmaf(d[0][1] + d[1][1], s.y, acc[j][1]);
    if constexpr (C::kRows == 16) {
      acc[j][2] = fmaf(d[0][2] + d[1][2], s.x, acc[j][2]);
      acc[j][3] = fmaf(d[0][3] + d[1][3], s.y, acc[j][3]);
    }
  }
}

// Tensor-core step with the weights as the A operand: a pair of tiles is the 16 rows of A
// (tile j's column g is row g, tile j + 1's is row g + 8) and the activations are B, its 8
// columns the rows of x (lane (g, t) loads x row g). Both fragments hold the same k slots
// (2t, 2t + 1 and 2t + 8, 2t + 9 of a k-step) as in step_mma, so the packed words serve
// unchanged: a lane's A registers are its B fragments of tiles j and j + 1. An mma then does
// 16 weight columns x 16 k, twice the useful work of step_mma's at m <= 8, where that one
// uses 8 of A's 16 rows and needs twice the mma for the same weights. C: c0, c1 at (column
// (j, g), x rows 2t, 2t + 1), c2, c3 at (column (j + 1, g), the same rows).
template <class C>
__device__ __forceinline__ void step_mma_t(const uint4 (&w)[C::kTiles],
                                           const __half2 (&scales)[C::kTiles], const uint4 (&xg)[4],
                                           float (&acc)[C::kTiles][2]) {
#pragma unroll
  for (int j = 0; j < C::kTiles; j += 2) {
    float d[2][4] = {};
    const std::uint32_t a[4] = {w[j].x, w[j].y, w[j].z, w[j].w};
    const std::uint32_t b[4] = {w[j + 1].x, w[j + 1].y, w[j + 1].z, w[j + 1].w};
#pragma unroll
    for (int p = 0; p < 4; ++p) {
      const FourPairs qa = nibbles_minus8(a[p]), qb = nibbles_minus8(b[p]);
      mma_16816(d[0], make_uint4(qa.pair[0], qb.pair[0], qa.pair[1], qb.pair[1]), xg[p].x, xg[p].y);
      mma_16816(d[1], make_uint4(qa.pair[2], qb.pair[2], qa.pair[3], qb.pair[3]), xg[p].z, xg[p].w);
    }
    const float s0 = __low2float(scales[j]), s1 = __low2float(scales[j + 1]);
    acc[j][0] = fmaf(d[0][0] + d[1][0], s0, acc[j][0]);
    acc[j][1] = fmaf(d[0][1] + d[1][1], s0, acc[j][1]);
    acc[j + 1][0] = fmaf(d[0][2] + d[1][2], s1, acc[j + 1][0]);
    acc[j + 1][1] = fmaf(d[0][3] + d[1][3], s1, acc[j + 1][1]);
  }
}

// CUDA-core step: lane (g, t) owns column g and its 32 k of the chunk; nibble pair (q, q + 4)
// of word p is k offsets 32p + 8t + 2q and + 1, the halves of activation word q (w4_pack's
// order), so each pair meets one half2 of x. fp32 FMA per weight and row; the scale
// multiplies the chunk's sum.
template <class C>
__device__ __forceinline__ void step_fma(const uint4 (&w)[C::kTiles],
                                         const __half2 (&scales)[C::kTiles],
                                         const uint4 (&xv)[C::kRows][4],
                                         float (&acc)[C::kTiles][C::kRows]) {
#pragma unroll
  for (int j = 0; j < C::kTiles; ++j) {
    float part[C::kRows] = {};
    const std::uint32_t words[4] = {w[j].x, w[j].y, w[j].z, w[j].w};
#pragma unroll
    for (int p = 0; p < 4; ++p) {
      const FourPairs pairs = nibbles_minus8(words[p]);
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        const float2 wf = half2_bits_to_float2(pairs.pair[q]);
#pragma unroll
        for (int r = 0; r < C::kRows; ++r) {
          const std::uint32_t xw[4] = {xv[r][p].x, xv[r][p].y, xv[r][p].z, xv[r][p].w};
          const float2 xf = half2_bits_to_float2(xw[q]);
          part[r] = fmaf(xf.y, wf.y, fmaf(xf.x, wf.x, part[r]));
        }
      }
    }
    const float s = __low2float(scales[j]);
#pragma unroll
    for (int r = 0; r < C::kRows; ++r) acc[j][r] = fmaf(part[r], s, acc[j][r]);
  }
}

// Each warp walks a sequence of steps: for each column-tile group of its block (one, or a
// loop when persistent), chunks rank*W + warp + i*W*S for i < steps_per_tile. Every warp of
// the block has the same number of steps (a chunk past K loads nothing), so the per-tile
// barrier below is reached by all of them.
template <class C>
__global__ void __launch_bounds__(C::kWarps * 32, C::kMinBlocks)
    w4a16_decode_kernel(const __half* __restrict__ x, std::int64_t ldx,
                        const uint4* __restrict__ packed, const __half* __restrict__ scales, int n,
                        int k, int chunks, int m, __half* __restrict__ y) {
  // Dynamic: the cp.async ring [stage][tile][warp][lane], then the staged activations.
  extern __shared__ uint4 dynamic_shared[];
  // Warp partial sums by tile parity: one barrier per tile suffices (see flush).
  __shared__ float partial[2][C::kWarps][C::kRows][C::kCols];
  constexpr bool kMma = C::kMath == Math::mma;
  constexpr bool kMmaT = C::kMath == Math::mma_t;
  constexpr int kAccRegs = kMma ? 4 : kMmaT ? 2 : C::kRows;
  constexpr int kS = C::kStages;

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, t = lane % 4;
  const int tiles = (n + kTileN - 1) / kTileN;
  const int groups = (tiles + C::kTiles - 1) / C::kTiles;
  const int first = blockIdx.y * C::kWarps + warp, stride = C::kWarps * C::kSplit;
  const int steps_per_tile = (chunks + stride - 1) / stride;
  const int iterations = !C::kPersistent ? 1
                         : int(blockIdx.x) < groups
                             ? (groups - 1 - int(blockIdx.x)) / int(gridDim.x) + 1
                             : 0;
  const int total_steps = iterations * steps_per_tile;
  const auto group_of = [&](int iteration) { return blockIdx.x + iteration * gridDim.x; };
  // Scales [tile][chunk][8 columns] (w4_pack): mma lanes scale C columns 2t and 2t + 1 (one
  // 4-byte load), mma_t and fma lanes column g.
  const int scale_col = kMma ? 2 * t : g;
  const int k_left = k - 8 * t;  // x[.. + 8t + kk] is in range while kk < k_left

  const int x_stride = chunks * kChunk + kXPad;
  __half* xs = reinterpret_cast<__half*>(dynamic_shared + C::kRingBytes / 16);
  uint4 wring[kS][C::kTiles];
  __half2 sring[kS][C::kTiles];
  float acc[C::kTiles][kAccRegs] = {};
  int issue_iteration = 0, issue_i = 0, use_iteration = 0, use_i = 0, issued = 0;

  const auto issue = [&](int u) {  // the next step's loads into ring slot u
    const int tile0 = group_of(issue_iteration) * C::kTiles;
    const int c = first + issue_i * stride;
#pragma unroll
    for (int j = 0; j < C::kTiles; ++j) {
      const bool ok = c < chunks && tile0 + j < tiles;
      // Tile j, chunk c: 512 bytes at ((tile0 + j) * chunks + c) * 32 uint4; this lane's 16 at
      // + lane.
      const uint4* src = packed + (std::int64_t(tile0 + j) * chunks + c) * 32 + lane;
      const __half* s = scales + (std::int64_t(tile0 + j) * chunks + c) * kTileN + scale_col;
      if constexpr (C::kLoad == Load::cp_async)
        cp_async_16(&dynamic_shared[((u * C::kTiles + j) * C::kWarps + warp) * 32 + lane],
                    ok ? src : packed, ok);
      else
        wring[u][j] = ok ? load_weights<C::kLoad>(src) : make_uint4(0, 0, 0, 0);
      const __half zero = __float2half(0.0f);
      if constexpr (kMma)
        sring[u][j] = ok ? __ldg(reinterpret_cast<const __half2*>(s)) : __halves2half2(zero, zero);
      else
        sring[u][j] = __halves2half2(ok ? __ldg(s) : zero, zero);
    }
    if constexpr (C::kLoad == Load::cp_async) cp_async_commit();
    if (++issue_i == steps_per_tile) {
      issue_i = 0;
      ++issue_iteration;
    }
    ++issued;
  };
  // 8 activations of row `row` at kk + 32p (this lane's 8t added), zero where out of range.
  const auto activations = [&](int row, int kk, int p, bool chunk_ok) {
    if constexpr (C::kPersistent) {
      return row < m && chunk_ok
                 ? *reinterpret_cast<const uint4*>(xs + row * x_stride + 8 * t + kk + 32 * p)
                 : make_uint4(0, 0, 0, 0);
    } else {
      return load_x8(x + row * ldx + 8 * t + kk + 32 * p, row < m && kk + 32 * p < k_left);
    }
  };
  const auto consume = [&](int u) {
    const int c = first + use_i * stride;
    const int kk = c * kChunk;
    if constexpr (kMma || kMmaT) {
      uint4 lo[4], hi[4];
#pragma unroll
      for (int p = 0; p < 4; ++p) {
        lo[p] = activations(g, kk, p, c < chunks);
        hi[p] = C::kRows == 16 ? activations(g + 8, kk, p, c < chunks) : make_uint4(0, 0, 0, 0);
      }
      if constexpr (C::kLoad == Load::cp_async) {
        cp_async_wait<kS - 1>();
#pragma unroll
        for (int j = 0; j < C::kTiles; ++j)
          wring[u][j] = dynamic_shared[((u * C::kTiles + j) * C::kWarps + warp) * 32 + lane];
      }
      if constexpr (kMmaT)
        step_mma_t<C>(wring[u], sring[u], lo, acc);
      else
        step_mma<C>(wring[u], sring[u], lo, hi, acc);
    } else {
      uint4 xv[C::kRows][4];
#pragma unroll
      for (int r = 0; r < C::kRows; ++r)
#pragma unroll
        for (int p = 0; p < 4; ++p) xv[r][p] = activations(r, kk, p, c < chunks);
      if constexpr (C::kLoad == Load::cp_async) {
        cp_async_wait<kS - 1>();
#pragma unroll
        for (int j = 0; j < C::kTiles; ++j)
          wring[u][j] = dynamic_shared[((u * C::kTiles + j) * C::kWarps + warp) * 32 + lane];
      }
      step_fma<C>(wring[u], sring[u], xv, acc);
    }
  };
  const auto store = [&](int group, int e, float v) {
    const int row = e / C::kCols, col = group * C::kCols + e % C::kCols;
    if (row < m && col < n) y[std::int64_t(row) * n + col] = __float2half_rn(v);
  };
  // After a tile group's last step: warp sums -> partial[parity], one barrier, then each
  // thread adds its outputs over the warps and stores them. partial[parity] is written
  // again two tiles later, after the next tile's barrier, which every thread reaches only
  // once done reading it here.
  const auto flush = [&](int iteration) {
    auto& part = partial[iteration & 1];
    if constexpr (kMma) {
      // C fragment: c0, c1 at (row g, columns 2t, 2t + 1), c2, c3 at (row g + 8, same).
#pragma unroll
      for (int j = 0; j < C::kTiles; ++j) {
        const int col = j * kTileN + 2 * t;
        part[warp][g][col] = acc[j][0];
        part[warp][g][col + 1] = acc[j][1];
        if constexpr (C::kRows == 16) {
          part[warp][g + 8][col] = acc[j][2];
          part[warp][g + 8][col + 1] = acc[j][3];
        }
      }
    } else if constexpr (kMmaT) {
#pragma unroll
      for (int j = 0; j < C::kTiles; ++j) {
        part[warp][2 * t][j * kTileN + g] = acc[j][0];
        part[warp][2 * t + 1][j * kTileN + g] = acc[j][1];
      }
    } else {
#pragma unroll
      for (int j = 0; j < C::kTiles; ++j)
#pragma unroll
        for (int r = 0; r < C::kRows; ++r) {
          float v = acc[j][r];  // the 4 lanes t of column g hold disjoint k
          v += __shfl_xor_sync(0xFFFFFFFFu, v, 1);
          v += __shfl_xor_sync(0xFFFFFFFFu, v, 2);
          if (t == 0) part[warp][r][j * kTileN + g] = v;
        }
    }
#pragma unroll
    for (int j = 0; j < C::kTiles; ++j)
#pragma unroll
      for (int a = 0; a < kAccRegs; ++a) acc[j][a] = 0.0f;
    __syncthreads();
    constexpr int kOut = C::kRows * C::kCols;
    float* total = &part[0][0][0];  // element e is read and written by one thread only
    for (int e = threadIdx.x; e < kOut; e += blockDim.x) {
      float sum = 0.0f;
#pragma unroll
      for (int wi = 0; wi < C::kWarps; ++wi) sum += (&part[wi][0][0])[e];
      if constexpr (C::kSplit > 1)
        total[e] = sum;
      else
        store(group_of(iteration), e, sum);
    }
    if constexpr (C::kSplit > 1) {
      // The cluster's blocks (one per K slice, ranks along y) meet; rank 0 adds the others'
      // totals through distributed shared memory, and the second sync keeps them resident
      // until it has read them.
      cg::cluster_group cluster = cg::this_cluster();
      cluster.sync();
      if (cluster.block_rank() == 0) {
        for (int e = threadIdx.x; e < kOut; e += blockDim.x) {
          float sum = 0.0f;
#pragma unroll
          for (int r = 0; r < C::kSplit; ++r) sum += cluster.map_shared_rank(total, r)[e];
          store(group_of(iteration), e, sum);
        }
      }
      cluster.sync();
    }
  };

  // The ring: kS steps in flight; consuming a step frees its slot for the step kS later,
  // which may belong to the next tile group. The cp.async variant commits one group per
  // slot refill (empty past the last step) so that "all but kS - 1 groups done" always means
  // the step being consumed has landed.
#pragma unroll
  for (int u = 0; u < kS; ++u) {
    if (issued < total_steps) {
      issue(u);
    } else if constexpr (C::kLoad == Load::cp_async) {
      cp_async_commit();
    }
  }
  if constexpr (C::kPersistent) {
    // Rows 0..m-1, zero from k to the padded K, so the steps need no K test. Staged after the
    // ring's first loads are issued, so those are in flight meanwhile; 4 loads per thread
    // before any store, so the copy takes one L2 round trip per 4 x 16 bytes x threads.
    const int pieces = chunks * kChunk / 8, count = m * pieces;
    for (int e0 = threadIdx.x; e0 < count; e0 += 4 * blockDim.x) {
      uint4 v[4];
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        const int e = e0 + u * blockDim.x, k0 = (e % pieces) * 8;
        v[u] = load_x8(x + (e / pieces) * ldx + k0, e < count && k0 < k);
      }
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        const int e = e0 + u * blockDim.x;
        if (e < count)
          *reinterpret_cast<uint4*>(xs + (e / pieces) * x_stride + (e % pieces) * 8) = v[u];
      }
    }
    __syncthreads();
  }

  for (int f0 = 0; f0 < total_steps; f0 += kS) {
#pragma unroll
    for (int u = 0; u < kS; ++u) {
      if (f0 + u < total_steps) {
        consume(u);
        if (issued < total_steps) {
          issue(u);
        } else if constexpr (C::kLoad == Load::cp_async) {
          cp_async_commit();
        }
        if (++use_i == steps_per_tile) {
          flush(use_iteration++);
          use_i = 0;
        }
      }
    }
  }
}

// Allows the kernel up to kMaxSharedBytes of dynamic shared memory, once per process (the
// limit only permits; each launch still asks for what it needs).
template <class C>
cudaError_t allow_shared_memory() {
  static const cudaError_t status =
      C::kPersistent || C::kRingBytes > 48 * 1024
          ? cudaFuncSetAttribute(w4a16_decode_kernel<C>,
                                 cudaFuncAttributeMaxDynamicSharedMemorySize, kMaxSharedBytes)
          : cudaSuccess;
  return status;
}

// Persistent grids: as many blocks as are resident at once, at most one per tile group,
// spread so that every block gets the same number of groups (give or take one). The
// resident count is queried once per shared memory size, so that a launch costs the host a
// lookup rather than three runtime queries (one device per process, as in the profiler).
template <class C>
cudaError_t persistent_blocks(int groups, std::int64_t shared, unsigned& blocks) {
  static std::mutex mutex;
  static std::map<std::int64_t, int> resident_by_shared;
  const std::lock_guard<std::mutex> lock(mutex);
  auto found = resident_by_shared.find(shared);
  if (found == resident_by_shared.end()) {
    int device = 0, sms = 0, per_sm = 0;
    cudaError_t status = cudaGetDevice(&device);
    if (status == cudaSuccess)
      status = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
    if (status == cudaSuccess)
      status = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, w4a16_decode_kernel<C>,
                                                             C::kWarps * 32, std::size_t(shared));
    if (status != cudaSuccess) return status;
    found = resident_by_shared.emplace(shared, std::max(1, per_sm) * sms).first;
  }
  const int waves = (groups + found->second - 1) / found->second;
  blocks = static_cast<unsigned>((groups + waves - 1) / waves);
  return cudaSuccess;
}

template <class C>
cudaError_t launch_decode(const W4DecodeArgs& a, cudaStream_t stream) {
  const W4Layout& l = a.layout;
  const int groups = static_cast<int>((l.padded_n / kTileN + C::kTiles - 1) / C::kTiles);
  const std::int64_t shared = shared_bytes<C>(a.m, l.padded_k);
  if (const cudaError_t status = allow_shared_memory<C>(); status != cudaSuccess) return status;
  unsigned blocks = static_cast<unsigned>(groups);
  if constexpr (C::kPersistent) {
    const cudaError_t status = persistent_blocks<C>(groups, shared, blocks);
    if (status != cudaSuccess) return status;
  }
  cudaLaunchConfig_t config = {};
  config.gridDim = dim3(blocks, C::kSplit);
  config.blockDim = dim3(C::kWarps * 32);
  config.dynamicSmemBytes = static_cast<std::size_t>(shared);
  config.stream = stream;
  cudaLaunchAttribute cluster[1] = {};
  if (C::kSplit > 1) {
    cluster[0].id = cudaLaunchAttributeClusterDimension;
    cluster[0].val.clusterDim.x = 1;
    cluster[0].val.clusterDim.y = C::kSplit;
    cluster[0].val.clusterDim.z = 1;
    config.attrs = cluster;
    config.numAttrs = 1;
  }
  return cudaLaunchKernelEx(&config, w4a16_decode_kernel<C>, static_cast<const __half*>(a.x),
                            a.x_row_stride, reinterpret_cast<const uint4*>(a.packed),
                            static_cast<const __half*>(a.chunk_scales), static_cast<int>(l.n),
                            static_cast<int>(l.k), static_cast<int>(l.padded_k / kChunk),
                            static_cast<int>(a.m), static_cast<__half*>(a.y));
}

// Resources at m = 1, k = 4096 (the staged activations of persistent variants grow with both).
template <class C>
cudaError_t resources_of(W4DecodeResources& r) {
  cudaFuncAttributes a{};
  cudaError_t status = cudaFuncGetAttributes(&a, w4a16_decode_kernel<C>);
  if (status == cudaSuccess) status = allow_shared_memory<C>();
  if (status != cudaSuccess) return status;
  r.registers = a.numRegs;
  r.local_bytes = static_cast<int>(a.localSizeBytes);
  return cudaOccupancyMaxActiveBlocksPerMultiprocessor(
      &r.blocks_per_sm, w4a16_decode_kernel<C>, C::kWarps * 32,
      static_cast<std::size_t>(shared_bytes<C>(1, 4096)));
}

template <class C>
W4DecodeVariant variant() {
  static const char* const loads[] = {"ldg", "noalloc", "l2pf", "cpasync"};
  static const char* const maths[] = {"mma", "mmat", "fma"};
  const std::string name = std::string(maths[static_cast<int>(C::kMath)]) +
                           std::to_string(C::kRows) + "_w" + std::to_string(C::kWarps) + "_t" +
                           std::to_string(C::kTiles) + "_d" + std::to_string(C::kDepth) + "_" +
                           loads[static_cast<int>(C::kLoad)] +
                           (C::kPersistent ? "_persist" : "_s" + std::to_string(C::kSplit)) +
                           (C::kBlocksPerSm > 0 ? "_b" + std::to_string(C::kBlocksPerSm) : "");
  return {name, C::kRows, &launch_decode<C>, &resources_of<C>, &shared_bytes<C>};
}

template <int kWarps, int kTiles, int kDepth, Load kLoad, int kSplit = 1>
using Mma8 = Config<Math::mma, 8, kWarps, kTiles, kDepth, kLoad, kSplit, Schedule::per_tile>;
template <int kWarps, int kTiles, int kDepth, Load kLoad, int kSplit = 1>
using Mma16 = Config<Math::mma, 16, kWarps, kTiles, kDepth, kLoad, kSplit, Schedule::per_tile>;
template <int kWarps, int kTiles, int kDepth, Load kLoad, int kBlocksPerSm = 0>
using MmaT8 =
    Config<Math::mma_t, 8, kWarps, kTiles, kDepth, kLoad, 1, Schedule::per_tile, kBlocksPerSm>;
template <int kRows, int kWarps, int kTiles, int kDepth, Load kLoad>
using Fma = Config<Math::fma, kRows, kWarps, kTiles, kDepth, kLoad, 1, Schedule::per_tile>;
template <Math kMath, int kRows, int kWarps, int kTiles, int kDepth, Load kLoad>
using Persistent = Config<kMath, kRows, kWarps, kTiles, kDepth, kLoad, 1, Schedule::persistent>;

}  // namespace

const std::vector<W4DecodeVariant>& w4_decode_variants() {
  using L = Load;
  static const std::vector<W4DecodeVariant> variants = {
      // Loads in flight per lane (2 / 4 / 8) and the weight stream's cache hints.
      variant<Mma8<8, 1, 2, L::no_alloc>>(),
      variant<Mma8<8, 1, 4, L::ldg>>(),
      variant<Mma8<8, 1, 4, L::no_alloc>>(),
      variant<Mma8<8, 1, 8, L::ldg>>(),
      variant<Mma8<8, 1, 8, L::no_alloc>>(),
      variant<Mma8<8, 1, 8, L::l2_prefetch>>(),
      // Block shape: warps splitting K, column tiles sharing one activation load.
      variant<Mma8<4, 1, 8, L::no_alloc>>(),
      variant<Mma8<16, 1, 4, L::no_alloc>>(),
      variant<Mma8<8, 2, 8, L::no_alloc>>(),
      variant<Mma8<4, 4, 8, L::no_alloc>>(),
      // Loads in flight held in shared memory instead of registers: deeper rings.
      variant<Mma8<8, 1, 8, L::cp_async>>(),
      variant<Mma8<8, 1, 16, L::cp_async>>(),
      variant<Mma8<4, 2, 16, L::cp_async>>(),
      variant<Mma8<4, 1, 16, L::cp_async>>(),
      // Split-K over a cluster's SMs (small n: fewer column tiles than SMs).
      variant<Mma8<8, 1, 8, L::no_alloc, 2>>(),
      variant<Mma8<8, 1, 8, L::no_alloc, 4>>(),
      variant<Mma8<4, 1, 8, L::no_alloc, 4>>(),
      // Up to 16 rows (A fragment rows g and g + 8).
      variant<Mma16<8, 1, 4, L::no_alloc>>(),
      variant<Mma16<8, 1, 8, L::no_alloc>>(),
      variant<Mma16<4, 2, 8, L::no_alloc>>(),
      variant<Mma16<8, 1, 8, L::cp_async>>(),
      variant<Mma16<8, 1, 8, L::no_alloc, 2>>(),
      // CUDA cores instead of tensor cores.
      variant<Fma<1, 8, 1, 8, L::no_alloc>>(),
      variant<Fma<1, 8, 2, 8, L::no_alloc>>(),
      variant<Fma<1, 4, 4, 8, L::no_alloc>>(),
      variant<Fma<1, 8, 1, 8, L::cp_async>>(),
      variant<Fma<4, 8, 1, 8, L::no_alloc>>(),
      variant<Fma<4, 8, 2, 8, L::no_alloc>>(),
      variant<Fma<1, 4, 4, 16, L::no_alloc>>(),
      variant<Fma<1, 4, 8, 16, L::no_alloc>>(),
      variant<Fma<1, 8, 4, 8, L::no_alloc>>(),
      // Tensor cores with the weights as A (16 columns x 16 k per mma, up to 8 rows).
      variant<MmaT8<4, 4, 8, L::no_alloc>>(),
      variant<MmaT8<4, 2, 8, L::no_alloc>>(),
      variant<MmaT8<8, 2, 8, L::no_alloc>>(),
      variant<MmaT8<4, 4, 16, L::no_alloc>>(),
      variant<MmaT8<4, 8, 16, L::no_alloc>>(),
      variant<MmaT8<8, 4, 8, L::no_alloc>>(),
      variant<MmaT8<2, 8, 16, L::no_alloc>>(),
      variant<MmaT8<8, 2, 4, L::no_alloc>>(),
      // ... with more resident blocks per SM (fewer registers each).
      variant<MmaT8<4, 4, 8, L::no_alloc, 5>>(),
      variant<MmaT8<4, 4, 8, L::no_alloc, 6>>(),
      variant<MmaT8<4, 2, 8, L::no_alloc, 6>>(),
      variant<MmaT8<4, 2, 8, L::no_alloc, 8>>(),
      variant<MmaT8<8, 4, 8, L::no_alloc, 3>>(),
      variant<MmaT8<4, 2, 4, L::no_alloc, 8>>(),
      // Persistent blocks, activations in shared memory, the ring running across tiles.
      variant<Persistent<Math::mma, 8, 8, 1, 8, L::no_alloc>>(),
      variant<Persistent<Math::mma, 8, 4, 1, 8, L::no_alloc>>(),
      variant<Persistent<Math::mma, 8, 8, 1, 4, L::no_alloc>>(),
      variant<Persistent<Math::mma, 8, 8, 2, 8, L::no_alloc>>(),
      variant<Persistent<Math::mma, 8, 8, 1, 8, L::ldg>>(),
      variant<Persistent<Math::mma, 8, 16, 1, 4, L::no_alloc>>(),
      variant<Persistent<Math::mma, 8, 8, 1, 16, L::cp_async>>(),
      variant<Persistent<Math::mma, 8, 4, 1, 16, L::cp_async>>(),
      variant<Persistent<Math::mma, 16, 8, 1, 8, L::no_alloc>>(),
      variant<Persistent<Math::fma, 1, 8, 1, 8, L::no_alloc>>(),
      variant<Persistent<Math::fma, 4, 8, 1, 8, L::no_alloc>>(),
  };
  return variants;
}

const W4DecodeVariant* find_w4_decode_variant(const std::string& name) {
  for (const W4DecodeVariant& v : w4_decode_variants())
    if (v.name == name) return &v;
  return nullptr;
}

std::string w4_decode_declines(const W4DecodeVariant& variant, const W4DecodeArgs& args) {
  if (args.m < 1 || args.m > variant.max_m)
    return variant.name + " with m=" + std::to_string(args.m) + ": it computes m in 1.." +
           std::to_string(variant.max_m);
  const bool aligned = args.layout.k % 8 == 0 && args.x_row_stride % 8 == 0 &&
                       reinterpret_cast<std::uintptr_t>(args.x) % 16 == 0;
  if (!aligned)
    return variant.name + " with k=" + std::to_string(args.layout.k) + ", activation row stride " +
           std::to_string(args.x_row_stride) +
           ": it loads 8 activations at a time, so k and the stride must be multiples of 8 and "
           "the activations 16-byte aligned";
  if (const std::int64_t shared = variant.shared_bytes(args.m, args.layout.padded_k);
      shared > kMaxSharedBytes)
    return variant.name + " with m=" + std::to_string(args.m) +
           ", k=" + std::to_string(args.layout.k) + ": it stages the activations in " +
           std::to_string(shared) + " bytes of shared memory, more than its limit " +
           std::to_string(kMaxSharedBytes);
  if (args.layout.padded_n * args.layout.padded_k / 32 >= (std::int64_t(1) << 31) ||
      args.layout.n * args.m >= (std::int64_t(1) << 31))
    return variant.name + " with n=" + std::to_string(args.layout.n) +
           ", k=" + std::to_string(args.layout.k) + ": it indexes with 32-bit integers";
  return {};
}

}  // namespace bitplan::cuda
