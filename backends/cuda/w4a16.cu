// W4A16 GEMM: int4 weights (group-wise fp16 scales), fp16 activations, tensor cores. The
// tile kernel here serves m above kDecodeChoices (below); smaller m runs a decode kernel of
// w4a16_decode.cu on the same packed weights.
//
// Why this shape: for the small m of decoding (m <= 16) the GEMM is bound by reading the
// packed weights, so each weight byte must be read once, in wide coalesced loads, with
// enough loads in flight. A block owns 8 output columns (the n of one mma.m16n8k16) and its
// 8 warps split K between them (reduced through shared memory at the end), so even
// n = 4096 gives 512 blocks of 8 warps. Each lane loads 16 bytes per 128-k chunk - exactly
// its B fragments for 8 mma k-steps, thanks to the packing order - and turns nibbles into
// fp16 with the 0x6400 exponent trick (1024 + q), then (1024 + q - 1032) * scale.
//
// K order inside a chunk is permuted consistently for A and B (a dot product does not care),
// so lane t's A fragments for k-steps 2p and 2p+1 are 8 consecutive activations
// x[row][128c + 32p + 8t .. +7]: one 16-byte load per row instead of four 4-byte loads.
#include <cuda_fp16.h>

#include <algorithm>
#include <string>
#include <vector>

#include "backends/cuda/check.hpp"
#include "backends/cuda/kernels.hpp"
#include "backends/cuda/w4a16_decode.hpp"

namespace bitplan::cuda {
namespace {

constexpr int kChunk = 128;  // k per chunk: one 16-byte load per lane, one scale group
constexpr int kWarps = 8;    // warps per block, splitting K
constexpr int kTileN = 8;    // output columns per block (mma n)

__device__ __forceinline__ void mma_16816(float (&d)[4], const uint4& a, std::uint32_t b0,
                                          std::uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a.x), "r"(a.y), "r"(a.z), "r"(a.w), "r"(b0), "r"(b1));
}

// Two int4 values (bits 0-3 and 16-19 of `bits`) -> half2 of (q - 8) * scale.
__device__ __forceinline__ std::uint32_t dequant_pair(std::uint32_t bits, __half2 scale) {
  const std::uint32_t biased = (bits & 0x000F000Fu) | 0x64006400u;  // 1024 + q, exactly
  __half2 v = *reinterpret_cast<const __half2*>(&biased);
  v = __hmul2(__hsub2(v, __float2half2_rn(1032.0f)), scale);
  return *reinterpret_cast<std::uint32_t*>(&v);
}

// 8 activations x[row][k0 .. k0+7] as a uint4 of half pairs; zeros outside [0, m) x [0, k).
template <bool kVector>
__device__ __forceinline__ uint4 load_x8(const __half* x, std::int64_t ldx, std::int64_t row,
                                         std::int64_t m, std::int64_t k0, std::int64_t k) {
  uint4 v = make_uint4(0, 0, 0, 0);
  if (row >= m) return v;
  const __half* p = x + row * ldx + k0;
  if constexpr (kVector) {  // k and ldx multiples of 8: a chunk is all in or all out
    if (k0 < k) v = __ldg(reinterpret_cast<const uint4*>(p));
  } else {
    __half h[8];
#pragma unroll
    for (int j = 0; j < 8; ++j) h[j] = (k0 + j < k) ? p[j] : __float2half(0.0f);
    v = *reinterpret_cast<uint4*>(h);
  }
  return v;
}

// Four blocks per SM for the decode-size kernel (64 registers): n = 4096 is then one wave.
template <int kMTiles, bool kVector>
__global__ void __launch_bounds__(kWarps * 32, kMTiles == 1 ? 4 : 1)
    w4a16_kernel(const __half* __restrict__ x, std::int64_t ldx, const uint4* __restrict__ packed,
                 const __half* __restrict__ chunk_scales, std::int64_t n, std::int64_t k,
                 std::int64_t padded_k, std::int64_t m, __half* __restrict__ y) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, t = lane % 4;  // mma "group" (row / column) and thread-in-group
  const std::int64_t chunks = padded_k / kChunk;
  const std::int64_t row0 = std::int64_t(blockIdx.y) * 16 * kMTiles;
  // 16-byte units; a (column tile, chunk) is 512 contiguous bytes, so one warp-wide load
  // reads one contiguous 512-byte piece and a block's 8 warps read 4 KB in a row.
  const uint4* wrow = packed + std::int64_t(blockIdx.x) * chunks * 32 + g * 4 + t;
  // Scales [tile][chunk][8 columns]: a warp's scales of one chunk are one 16-byte sector; this
  // lane's are those of its B column g.
  const __half* srow = chunk_scales + std::int64_t(blockIdx.x) * chunks * kTileN + g;

  // A warp takes kBatch chunks at a time and issues all their weight loads before using
  // any: at decode sizes each warp has only a few chunks, so one DRAM round trip per batch
  // (not per chunk) is what keeps the weight stream busy. Two accumulator sets halve the
  // chain of dependent mma instructions.
  constexpr int kBatch = kMTiles >= 4 ? 2 : 4;
  float acc[2][kMTiles][4] = {};
  for (std::int64_t c0 = warp; c0 < chunks; c0 += std::int64_t(kWarps) * kBatch) {
    uint4 wbits[kBatch];
    __half scales[kBatch];
#pragma unroll
    for (int u = 0; u < kBatch; ++u) {
      const std::int64_t c = c0 + std::int64_t(u) * kWarps;
      wbits[u] = c < chunks ? __ldg(wrow + c * 32) : make_uint4(0, 0, 0, 0);
      scales[u] = c < chunks ? srow[c * kTileN] : __float2half(0.0f);
    }
#pragma unroll
    for (int u = 0; u < kBatch; ++u) {
      const std::int64_t c = c0 + std::int64_t(u) * kWarps;
      if (c >= chunks) break;
      const __half2 scale = __half2half2(scales[u]);
      std::uint32_t b[8][2];  // B fragments of the chunk's 8 k-steps
      const std::uint32_t words[4] = {wbits[u].x, wbits[u].y, wbits[u].z, wbits[u].w};
#pragma unroll
      for (int p = 0; p < 4; ++p) {
        b[2 * p][0] = dequant_pair(words[p], scale);
        b[2 * p][1] = dequant_pair(words[p] >> 4, scale);
        b[2 * p + 1][0] = dequant_pair(words[p] >> 8, scale);
        b[2 * p + 1][1] = dequant_pair(words[p] >> 12, scale);
      }
#pragma unroll
      for (int mt = 0; mt < kMTiles; ++mt) {
        const std::int64_t r_lo = row0 + mt * 16 + g, r_hi = r_lo + 8;
#pragma unroll
        for (int p = 0; p < 4; ++p) {
          const std::int64_t k0 = c * kChunk + 32 * p + 8 * t;
          const uint4 lo = load_x8<kVector>(x, ldx, r_lo, m, k0, k);
          const uint4 hi = load_x8<kVector>(x, ldx, r_hi, m, k0, k);
          // A registers: {row g, e0e1}, {row g+8, e0e1}, {row g, e2e3}, {row g+8, e2e3}.
          mma_16816(acc[u % 2][mt], make_uint4(lo.x, hi.x, lo.y, hi.y), b[2 * p][0], b[2 * p][1]);
          mma_16816(acc[u % 2][mt], make_uint4(lo.z, hi.z, lo.w, hi.w), b[2 * p + 1][0],
                    b[2 * p + 1][1]);
        }
      }
    }
  }

  // Sum the warps' partial K sums; then each thread writes some of the block's outputs.
  __shared__ float partial[kWarps][kMTiles * 4][32];
#pragma unroll
  for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
    for (int j = 0; j < 4; ++j) partial[warp][mt * 4 + j][lane] = acc[0][mt][j] + acc[1][mt][j];
  __syncthreads();
  for (int i = threadIdx.x; i < kMTiles * 4 * 32; i += blockDim.x) {
    const int reg = i / 32, l = i % 32, mt = reg / 4, j = reg % 4;
    float sum = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) sum += partial[w][reg][l];
    // C fragment: c0,c1 at (row g, cols 2t, 2t+1), c2,c3 at (row g+8, same cols).
    const std::int64_t row = row0 + mt * 16 + l / 4 + (j >= 2 ? 8 : 0);
    const std::int64_t out_col = std::int64_t(blockIdx.x) * kTileN + 2 * (l % 4) + (j % 2);
    if (row < m && out_col < n) y[row * n + out_col] = __float2half_rn(sum);
  }
}

template <int kMTiles>
void launch_w4a16(const __half* x, std::int64_t ldx, const std::uint8_t* packed,
                  const __half* scales, const W4Layout& l, std::int64_t m, __half* y,
                  cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(l.padded_n / kTileN),
                  static_cast<unsigned>((m + 16 * kMTiles - 1) / (16 * kMTiles)));
  const bool vector = l.k % 8 == 0 && ldx % 8 == 0 && reinterpret_cast<std::uintptr_t>(x) % 16 == 0;
  if (vector)
    w4a16_kernel<kMTiles, true><<<grid, kWarps * 32, 0, stream>>>(
        x, ldx, reinterpret_cast<const uint4*>(packed), scales, l.n, l.k, l.padded_k, m, y);
  else
    w4a16_kernel<kMTiles, false><<<grid, kWarps * 32, 0, stream>>>(
        x, ldx, reinterpret_cast<const uint4*>(packed), scales, l.n, l.k, l.padded_k, m, y);
}

// Inverse of the packing: one thread per (column, chunk, lane t) 16-byte unit.
__global__ void w4_dequantize_kernel(const uint4* packed, const __half* chunk_scales,
                                     std::int64_t padded_n, std::int64_t padded_k, __half* w) {
  const std::int64_t chunks = padded_k / kChunk;
  const std::int64_t units = padded_n * chunks * 4;
  for (std::int64_t u = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; u < units;
       u += std::int64_t(gridDim.x) * blockDim.x) {
    const std::int64_t t = u % 4, c = (u / 4) % chunks, col = u / (4 * chunks);
    const uint4 bits = packed[((col / kTileN) * chunks + c) * 32 + (col % kTileN) * 4 + t];
    const __half2 scale =
        __half2half2(chunk_scales[((col / kTileN) * chunks + c) * kTileN + col % kTileN]);
    const std::uint32_t words[4] = {bits.x, bits.y, bits.z, bits.w};
    __half* out = w + col * padded_k + c * kChunk + 8 * t;
#pragma unroll
    for (int p = 0; p < 4; ++p) {
      // Nibble i of word p holds k offset 32p + 8t + 4*((i&3)>>1) + (i>>2) + 2*(i&1).
      __half h[8];
#pragma unroll
      for (int shift = 0; shift < 4; ++shift) {
        const std::uint32_t pair = dequant_pair(words[p] >> (4 * shift), scale);
        const __half2 v = *reinterpret_cast<const __half2*>(&pair);
        // shift s = nibbles s (low) and s+4 (high): offsets 4*(s>>1) + 2*(s&1) + {0, 1}.
        const int base = 4 * (shift >> 1) + 2 * (shift & 1);
        h[base] = __low2half(v);
        h[base + 1] = __high2half(v);
      }
      *reinterpret_cast<uint4*>(out + 32 * p) = *reinterpret_cast<uint4*>(h);
    }
  }
}

}  // namespace

W4Layout w4_layout(std::int64_t n, std::int64_t k) {
  if (n <= 0 || k <= 0)
    throw ProfileError("laying out int4 weights: n=" + std::to_string(n) +
                       ", k=" + std::to_string(k) + ": both must be positive");
  W4Layout l;
  l.n = n;
  l.k = k;
  l.padded_n = (n + kTileN - 1) / kTileN * kTileN;
  l.padded_k = (k + kChunk - 1) / kChunk * kChunk;
  l.group = k % kChunk == 0 ? kChunk : k;
  return l;
}

void w4_pack(const W4Layout& l, const std::vector<std::uint8_t>& q,
             const std::vector<float>& group_scales, std::vector<std::uint8_t>& packed,
             std::vector<std::uint16_t>& chunk_scales) {
  const std::int64_t groups = l.k / l.group, chunks = l.padded_k / kChunk;
  if (std::int64_t(q.size()) != l.n * l.k || std::int64_t(group_scales.size()) != l.n * groups)
    throw ProfileError("packing int4 weights: " + std::to_string(q.size()) + " values and " +
                       std::to_string(group_scales.size()) +
                       " scales: need n*k = " + std::to_string(l.n * l.k) +
                       " and n*k/group = " + std::to_string(l.n * groups));
  packed.assign(static_cast<std::size_t>(l.packed_bytes()), 0);
  chunk_scales.assign(static_cast<std::size_t>(l.scale_count()), 0);
  for (std::int64_t col = 0; col < l.padded_n; ++col) {
    for (std::int64_t c = 0; c < chunks; ++c) {
      const float scale = col < l.n ? group_scales[col * groups + c * kChunk / l.group] : 0.0f;
      const __half hs = __float2half_rn(scale);
      chunk_scales[((col / kTileN) * chunks + c) * kTileN + col % kTileN] =
          *reinterpret_cast<const std::uint16_t*>(&hs);
      for (int t = 0; t < 4; ++t)
        for (int p = 0; p < 4; ++p)
          for (int i = 0; i < 8; ++i) {
            const std::int64_t kk =
                c * kChunk + 32 * p + 8 * t + 4 * ((i & 3) >> 1) + (i >> 2) + 2 * (i & 1);
            const std::uint8_t value = (col < l.n && kk < l.k) ? (q[col * l.k + kk] & 0xF) : 8;
            const std::int64_t byte =
                ((col / kTileN) * chunks + c) * 512 + (col % kTileN) * 64 + t * 16 + p * 4 + i / 2;
            packed[byte] |= static_cast<std::uint8_t>(value << (4 * (i % 2)));
          }
    }
  }
}

namespace {

// Which kernel serves which (m, n) (issue 15). Rows are tried in order: the first whose
// max_m is >= m and whose min_n is <= n names the decode variant (w4a16_decode.hpp;
// bitplan-cuda-w4a16-sweep lists them all and times them against this table's current
// choice); an m above the last row, or a call the variant declines (activations not 16-byte
// aligned rows), runs the tile kernel above. Edit only this table after a sweep: its names are
// checked when first used (a name that is not compiled throws, and the GPU test uses every
// row).
struct DecodeChoice {
  std::int64_t max_m;
  std::int64_t min_n;
  const char* variant;
};
// From the third sweep on an H100 (2026-12-08, docs/cuda_backend.md), n swept at 576, 1536,
// 4096, 8192, 28672 and 49152; the thresholds between them are guesses. m <= 8: tensor cores
// with the weights as the A operand (mmat8: 16 weight columns x 16 k per mma). Wide layers:
// 4 warps over K and 4 column tiles per block (48.96 us at 28672 x 8192, m = 1: 82 % of the
// copy bandwidth, 3.18x cuBLASLt fp16); n = 8192: 8 warps, 4 tiles (18.69 us at 8192 x 8192);
// 1024..8191: 8 warps, 2 tiles, 4 loads in flight per lane (9.41 us at 4096 x 4096); narrower
// (576) the B-operand mma kernel with 16 warps over K (5.50 against 5.86 us). m = 9..16: mma on
// 16 rows, 4 warps and 2 tiles from n = 4096 (69.5 us at m = 16 on 28672 x 8192), 8 warps and 1
// tile below (5.79 against 6.34 us at 1536 x 576).
constexpr DecodeChoice kDecodeChoices[] = {
    {8, 16384, "mmat8_w4_t4_d8_noalloc_s1"}, {8, 8192, "mmat8_w8_t4_d8_noalloc_s1"},
    {8, 1024, "mmat8_w8_t2_d4_noalloc_s1"},  {8, 0, "mma8_w16_t1_d4_noalloc_s1"},
    {16, 4096, "mma16_w4_t2_d8_noalloc_s1"}, {16, 0, "mma16_w8_t1_d4_noalloc_s1"},
};

// kDecodeChoices' variants, looked up once (by name, so a wrong name fails loudly here).
std::vector<const W4DecodeVariant*> resolve_decode_choices() {
  std::vector<const W4DecodeVariant*> variants;
  for (const DecodeChoice& choice : kDecodeChoices) {
    const W4DecodeVariant* variant = find_w4_decode_variant(choice.variant);
    if (variant == nullptr || variant->max_m < choice.max_m)
      throw ProfileError(std::string("choosing the w4a16 kernel for m <= ") +
                         std::to_string(choice.max_m) + ": decode variant '" + choice.variant +
                         "': " + (variant ? "computes fewer rows" : "is not compiled") +
                         "; kDecodeChoices (w4a16.cu) must name one of w4_decode_variants()");
    variants.push_back(variant);
  }
  return variants;
}

// The decode variant that serves (m, n), or nullptr for the tile kernel.
const W4DecodeVariant* decode_variant_for(std::int64_t m, std::int64_t n) {
  static const std::vector<const W4DecodeVariant*> variants = resolve_decode_choices();
  for (std::size_t i = 0; i < variants.size(); ++i)
    if (m <= kDecodeChoices[i].max_m && n >= kDecodeChoices[i].min_n) return variants[i];
  return nullptr;
}

}  // namespace

std::string w4a16_kernel_name(std::int64_t m, std::int64_t n) {
  if (const W4DecodeVariant* variant = decode_variant_for(m, n)) return "decode " + variant->name;
  const int rows = m <= 16 ? 16 : m <= 32 ? 32 : 64;  // launch_w4a16<rows / 16>
  return "tile (mma.m16n8k16, " + std::to_string(rows) + " rows per block)";
}

void w4a16_gemm(const void* x, std::int64_t x_row_stride, const std::uint8_t* packed,
                const void* chunk_scales, const W4Layout& layout, std::int64_t m, void* y,
                cudaStream_t stream) {
  if (const W4DecodeVariant* variant = decode_variant_for(m, layout.n)) {
    const W4DecodeArgs args{x, x_row_stride, packed, chunk_scales, layout, m, y};
    if (w4_decode_declines(*variant, args).empty()) {
      check_cuda(variant->launch(args, stream), "launching w4a16_gemm's decode kernel");
      return;
    }
  }
  w4a16_gemm_tiles(x, x_row_stride, packed, chunk_scales, layout, m, y, stream);
}

void w4a16_gemm_tiles(const void* x, std::int64_t x_row_stride, const std::uint8_t* packed,
                      const void* chunk_scales, const W4Layout& layout, std::int64_t m, void* y,
                      cudaStream_t stream) {
  const auto* xh = static_cast<const __half*>(x);
  const auto* sh = static_cast<const __half*>(chunk_scales);
  auto* yh = static_cast<__half*>(y);
  // More row tiles per block reuse each dequantised weight fragment across more rows.
  if (m <= 16)
    launch_w4a16<1>(xh, x_row_stride, packed, sh, layout, m, yh, stream);
  else if (m <= 32)
    launch_w4a16<2>(xh, x_row_stride, packed, sh, layout, m, yh, stream);
  else
    launch_w4a16<4>(xh, x_row_stride, packed, sh, layout, m, yh, stream);
  check_launch("launching w4a16_gemm");
}

void w4_dequantize(const std::uint8_t* packed, const void* chunk_scales, const W4Layout& layout,
                   void* w_fp16, cudaStream_t stream) {
  const std::int64_t units = layout.padded_n * (layout.padded_k / kChunk) * 4;
  const unsigned grid =
      static_cast<unsigned>(std::min<std::int64_t>((units + 255) / 256, 132 * 32));
  w4_dequantize_kernel<<<grid, 256, 0, stream>>>(
      reinterpret_cast<const uint4*>(packed), static_cast<const __half*>(chunk_scales),
      layout.padded_n, layout.padded_k, static_cast<__half*>(w_fp16));
  check_launch("launching w4_dequantize");
}

}  // namespace bitplan::cuda
