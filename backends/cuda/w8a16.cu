// W8A16 GEMM: int8 weights (one fp16 scale per 128 k of a column, or per column), fp16
// activations, fp16 output; tensor cores with the weights as the A operand, as the W4A16
// decode kernels' mmat8 variants (w4a16_decode.cu, where the sweep found that form fastest
// at m <= 8).
//
// Why weight-only int8: it halves fp16's weight bytes at no measurable accuracy cost on most
// layers (8-bit symmetric per-channel codes), so where a GEMM streams its weights (decoding,
// m <= 16) it should take about half of cuBLASLt fp16's time, and it keeps fp16 activations
// (no quantization pass between layers, unlike W8A8).
//
// Packing (w8_pack): columns in groups of 16 (A's 16 rows) and k in chunks of 32 (two
// mma.m16n8k16 k-steps); per (group, chunk) 512 contiguous bytes, lane (g, t)'s 16 of them
// being column 16P + g at k 32c + 8t .. 8t + 7, then column 16P + g + 8 at the same k, as
// uint8 q + 128. K is permuted inside a chunk consistently for A and B (a dot product does not
// care): k-step 0 takes k 8t + 0..3 (fragment slots 2t, 2t + 1, 2t + 8, 2t + 9), k-step 1
// takes 8t + 4..7, so a lane's B fragments (activations of row g) are one 16-byte load of
// x[g][32c + 8t .. + 7] too. Scales [16-column group][128-k group][16 columns]: a warp's
// scales of one group are one 32-byte sector.
//
// Numerics: q is exact in fp16 and x * q exact in fp32; sums are fp32 per 128-k group, the
// fp16 scale multiplies each group's sum, only the output rounds to fp16.
#include <cuda_fp16.h>

#include <algorithm>
#include <string>
#include <vector>

#include "backends/cuda/check.hpp"
#include "backends/cuda/kernels.hpp"
#include "backends/cuda/mma.cuh"

namespace bitplan::cuda {
namespace {

constexpr int kCols = 16;     // columns per packed group (A's rows)
constexpr int kChunk = 32;    // k per packed chunk: two k-steps, one 16-byte load per lane
constexpr int kScaleK = 128;  // k per scale group
constexpr int kChunksPerGroup = kScaleK / kChunk;
constexpr int kRows = 8;  // activation rows per block (B's columns)

// Bytes 2h, 2h + 1 of `word` (uint8 q + 128) -> half2 of q, exactly: prmt puts each byte under
// the 0x64 exponent byte (fp16 1024 + byte), then 1024 + 128 is subtracted.
template <int kHalf>
__device__ __forceinline__ std::uint32_t bytes_to_q(std::uint32_t word) {
  std::uint32_t biased;
  constexpr std::uint32_t selector = kHalf == 0 ? 0x4140u : 0x4342u;
  asm("prmt.b32 %0, %1, %2, %3;" : "=r"(biased) : "r"(word), "r"(0x64646464u), "n"(selector));
  const __half2 v = __hsub2(*reinterpret_cast<const __half2*>(&biased), __float2half2_rn(1152.0f));
  return *reinterpret_cast<const std::uint32_t*>(&v);
}

// 8 activations x[row][k0 .. k0 + 7] as a uint4 of half pairs; zeros outside the matrix.
template <bool kVector>
__device__ __forceinline__ uint4 load_x8(const __half* x, std::int64_t ldx, int row, int m, int k0,
                                         int k) {
  uint4 v = make_uint4(0, 0, 0, 0);
  if (row >= m || k0 >= k) return v;
  const __half* p = x + row * ldx + k0;
  if constexpr (kVector) {  // k and ldx multiples of 8: a piece is all in or all out
    v = __ldg(reinterpret_cast<const uint4*>(p));
  } else {
    __half h[8];
#pragma unroll
    for (int j = 0; j < 8; ++j) h[j] = k0 + j < k ? p[j] : __float2half(0.0f);
    v = *reinterpret_cast<const uint4*>(h);
  }
  return v;
}

// A block: kWarps warps splitting K by scale groups (warp w takes groups w, w + kWarps, ...),
// kGroups column groups of 16, 8 activation rows (blockIdx.y). A warp's step is one 32-k chunk
// of each column group; kStages steps of loads are in flight per warp as a ring.
template <int kWarps, int kGroups, int kStages, bool kVector>
__global__ void __launch_bounds__(kWarps * 32)
    w8a16_kernel(const __half* __restrict__ x, std::int64_t ldx, const uint4* __restrict__ packed,
                 const __half* __restrict__ scales, int n, int k, int scale_groups, int m,
                 __half* __restrict__ y) {
  __shared__ float partial[kWarps][kRows][kGroups * kCols];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, t = lane % 4;
  const int chunks = scale_groups * kChunksPerGroup;
  const int group0 = blockIdx.x * kGroups;  // first column group of the block
  const int column_groups = (n + kCols - 1) / kCols;
  const int row = blockIdx.y * kRows + g;  // this lane's activation row (B column)
  const int groups_per_warp = (scale_groups + kWarps - 1) / kWarps;
  const int steps = groups_per_warp * kChunksPerGroup;

  // Step i of this warp: scale group warp + (i / 4) * kWarps, chunk i % 4 of it.
  const auto chunk_of = [&](int i) {
    return (warp + (i / kChunksPerGroup) * kWarps) * kChunksPerGroup + i % kChunksPerGroup;
  };
  uint4 ring[kStages][kGroups];
  const auto issue = [&](int slot, int i) {
    const int c = chunk_of(i);
#pragma unroll
    for (int j = 0; j < kGroups; ++j) {
      const bool ok = i < steps && c < chunks && group0 + j < column_groups;
      ring[slot][j] =
          ok ? load_streamed(packed + (std::int64_t(group0 + j) * chunks + c) * 32 + lane)
             : make_uint4(0x80808080u, 0x80808080u, 0x80808080u, 0x80808080u);
    }
  };
#pragma unroll
  for (int u = 0; u < kStages; ++u) issue(u, u);

  float acc[kGroups][4] = {};
  float d[kGroups][4] = {};
  for (int i0 = 0; i0 < steps; i0 += kStages) {
#pragma unroll
    for (int u = 0; u < kStages; ++u) {
      const int i = i0 + u;
      if (i >= steps) break;
      const int c = chunk_of(i);
      const uint4 xv = load_x8<kVector>(x, ldx, row, m, c * kChunk + 8 * t, k);
      uint4 w[kGroups];
#pragma unroll
      for (int j = 0; j < kGroups; ++j) w[j] = ring[u][j];
      issue(u, i + kStages);
#pragma unroll
      for (int j = 0; j < kGroups; ++j) {
        // A: {column g, k 0-1}, {column g + 8, k 0-1}, {column g, k 2-3}, {column g + 8, k 2-3}
        // of this lane's 8 k (words x/z: columns g/g+8, k 0-3; words y/w: k 4-7).
        mma_16816(d[j],
                  make_uint4(bytes_to_q<0>(w[j].x), bytes_to_q<0>(w[j].z), bytes_to_q<1>(w[j].x),
                             bytes_to_q<1>(w[j].z)),
                  xv.x, xv.y);
        mma_16816(d[j],
                  make_uint4(bytes_to_q<0>(w[j].y), bytes_to_q<0>(w[j].w), bytes_to_q<1>(w[j].y),
                             bytes_to_q<1>(w[j].w)),
                  xv.z, xv.w);
      }
      if (i % kChunksPerGroup == kChunksPerGroup - 1) {  // the scale group's last chunk
        const int sg = c / kChunksPerGroup;
#pragma unroll
        for (int j = 0; j < kGroups; ++j) {
          float s0 = 0.0f, s1 = 0.0f;
          if (sg < scale_groups && group0 + j < column_groups) {
            const __half* s = scales + (std::int64_t(group0 + j) * scale_groups + sg) * kCols;
            s0 = __half2float(s[g]);
            s1 = __half2float(s[g + 8]);
          }
          // C: c0, c1 at (column g, rows 2t, 2t + 1), c2, c3 at (column g + 8, same rows).
          acc[j][0] = fmaf(d[j][0], s0, acc[j][0]);
          acc[j][1] = fmaf(d[j][1], s0, acc[j][1]);
          acc[j][2] = fmaf(d[j][2], s1, acc[j][2]);
          acc[j][3] = fmaf(d[j][3], s1, acc[j][3]);
#pragma unroll
          for (int e = 0; e < 4; ++e) d[j][e] = 0.0f;
        }
      }
    }
  }

#pragma unroll
  for (int j = 0; j < kGroups; ++j) {
    partial[warp][2 * t][j * kCols + g] = acc[j][0];
    partial[warp][2 * t + 1][j * kCols + g] = acc[j][1];
    partial[warp][2 * t][j * kCols + g + 8] = acc[j][2];
    partial[warp][2 * t + 1][j * kCols + g + 8] = acc[j][3];
  }
  __syncthreads();
  for (int e = threadIdx.x; e < kRows * kGroups * kCols; e += blockDim.x) {
    const int r = e / (kGroups * kCols), col = group0 * kCols + e % (kGroups * kCols);
    float sum = 0.0f;
#pragma unroll
    for (int wi = 0; wi < kWarps; ++wi) sum += (&partial[wi][0][0])[e];
    const int out_row = blockIdx.y * kRows + r;
    if (out_row < m && col < n) y[std::int64_t(out_row) * n + col] = __float2half_rn(sum);
  }
}

template <int kWarps, int kGroups, int kStages>
cudaError_t launch_w8a16(const W8A16Args& a, cudaStream_t stream) {
  const W8Layout& l = a.layout;
  const int column_groups = static_cast<int>(l.padded_n / kCols);
  const dim3 grid(static_cast<unsigned>((column_groups + kGroups - 1) / kGroups),
                  static_cast<unsigned>((a.m + kRows - 1) / kRows));
  const auto* x = static_cast<const __half*>(a.x);
  const auto* packed = reinterpret_cast<const uint4*>(a.packed);
  const auto* scales = static_cast<const __half*>(a.scales);
  auto* y = static_cast<__half*>(a.y);
  const int scale_groups = static_cast<int>(l.padded_k / kScaleK);
  const bool vector =
      l.k % 8 == 0 && a.x_row_stride % 8 == 0 && reinterpret_cast<std::uintptr_t>(a.x) % 16 == 0;
  if (vector)
    w8a16_kernel<kWarps, kGroups, kStages, true><<<grid, kWarps * 32, 0, stream>>>(
        x, a.x_row_stride, packed, scales, int(l.n), int(l.k), scale_groups, int(a.m), y);
  else
    w8a16_kernel<kWarps, kGroups, kStages, false><<<grid, kWarps * 32, 0, stream>>>(
        x, a.x_row_stride, packed, scales, int(l.n), int(l.k), scale_groups, int(a.m), y);
  return cudaGetLastError();
}

template <int kWarps, int kGroups, int kStages>
W8A16Variant variant() {
  return {"w8_w" + std::to_string(kWarps) + "_g" + std::to_string(kGroups) + "_s" +
              std::to_string(kStages),
          &launch_w8a16<kWarps, kGroups, kStages>};
}

// Inverse of the packing: one thread per (column group, chunk, lane) 16-byte unit.
__global__ void w8_dequantize_kernel(const uint4* packed, const __half* scales,
                                     std::int64_t padded_n, std::int64_t padded_k, __half* w) {
  const std::int64_t chunks = padded_k / kChunk, scale_groups = padded_k / kScaleK;
  const std::int64_t units = padded_n / kCols * chunks * 32;
  for (std::int64_t u = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; u < units;
       u += std::int64_t(gridDim.x) * blockDim.x) {
    const int lane = static_cast<int>(u % 32), g = lane / 4, t = lane % 4;
    const std::int64_t c = (u / 32) % chunks, group = u / (32 * chunks);
    const uint4 bits = packed[u];
    const std::uint32_t words[4] = {bits.x, bits.y, bits.z, bits.w};
    for (int half = 0; half < 2; ++half) {  // column g, then g + 8
      const std::int64_t col = group * kCols + g + 8 * half;
      const float scale = __half2float(
          scales[(group * scale_groups + c * kChunk / kScaleK) * kCols + g + 8 * half]);
      __half h[8];
      for (int b = 0; b < 8; ++b) {
        const std::uint32_t byte = (words[2 * half + b / 4] >> (8 * (b % 4))) & 0xFFu;
        h[b] = __float2half_rn((float(byte) - 128.0f) * scale);
      }
      *reinterpret_cast<uint4*>(w + col * padded_k + c * kChunk + 8 * t) =
          *reinterpret_cast<const uint4*>(h);
    }
  }
}

// Which variant serves which n (the first row whose min_n is <= n); every row is used by the
// GPU test. Before its first sweep: the block shapes the W4A16 sweep found fastest per n
// (kDecodeChoices in w4a16.cu: 32 columns and 4 warps for wide layers, 32 columns and 8 warps
// at n = 8192, 16 columns and 8 warps with more loads in flight below, 16 warps on narrow ones).
struct W8Choice {
  std::int64_t min_n;
  const char* variant;
};
constexpr W8Choice kW8Choices[] = {
    {16384, "w8_w4_g2_s2"}, {8192, "w8_w8_g2_s2"}, {1024, "w8_w8_g1_s4"}, {0, "w8_w16_g1_s2"}};

const W8A16Variant& variant_for(std::int64_t n) {
  static const std::vector<const W8A16Variant*> chosen = [] {
    std::vector<const W8A16Variant*> out;
    for (const W8Choice& choice : kW8Choices) {
      const W8A16Variant* v = find_w8a16_variant(choice.variant);
      if (v == nullptr)
        throw ProfileError(std::string("choosing the w8a16 kernel: variant '") + choice.variant +
                           "' is not compiled; kW8Choices (w8a16.cu) must name one of "
                           "w8a16_variants()");
      out.push_back(v);
    }
    return out;
  }();
  for (std::size_t i = 0; i < chosen.size(); ++i)
    if (n >= kW8Choices[i].min_n) return *chosen[i];
  return *chosen.back();
}

}  // namespace

W8Layout w8_layout(std::int64_t n, std::int64_t k) {
  if (n <= 0 || k <= 0)
    throw ProfileError("laying out int8 weights: n=" + std::to_string(n) +
                       ", k=" + std::to_string(k) + ": both must be positive");
  W8Layout l;
  l.n = n;
  l.k = k;
  l.padded_n = (n + kCols - 1) / kCols * kCols;
  l.padded_k = (k + kScaleK - 1) / kScaleK * kScaleK;
  l.group = k % kScaleK == 0 ? kScaleK : k;
  return l;
}

void w8_pack(const W8Layout& l, const std::vector<std::int8_t>& q,
             const std::vector<float>& group_scales, std::vector<std::uint8_t>& packed,
             std::vector<std::uint16_t>& scales) {
  const std::int64_t groups = l.k / l.group, chunks = l.padded_k / kChunk,
                     scale_groups = l.padded_k / kScaleK;
  if (std::int64_t(q.size()) != l.n * l.k || std::int64_t(group_scales.size()) != l.n * groups)
    throw ProfileError("packing int8 weights: " + std::to_string(q.size()) + " values and " +
                       std::to_string(group_scales.size()) +
                       " scales: need n*k = " + std::to_string(l.n * l.k) +
                       " and n*k/group = " + std::to_string(l.n * groups));
  packed.assign(static_cast<std::size_t>(l.packed_bytes()), 0);
  scales.assign(static_cast<std::size_t>(l.scale_count()), 0);
  for (std::int64_t col = 0; col < l.padded_n; ++col) {
    const std::int64_t group = col / kCols, g = col % kCols % 8, half = col % kCols / 8;
    for (std::int64_t sg = 0; sg < scale_groups; ++sg) {
      const float scale = col < l.n ? group_scales[col * groups + sg * kScaleK / l.group] : 0.0f;
      const __half hs = __float2half_rn(scale);
      scales[(group * scale_groups + sg) * kCols + col % kCols] =
          *reinterpret_cast<const std::uint16_t*>(&hs);
    }
    for (std::int64_t kk = 0; kk < l.padded_k; ++kk) {
      const std::int64_t c = kk / kChunk, t = kk % kChunk / 8, b = kk % 8;
      const int value = (col < l.n && kk < l.k) ? q[col * l.k + kk] : 0;
      const std::int64_t byte = ((group * chunks + c) * 32 + g * 4 + t) * 16 + half * 8 + b;
      packed[byte] = static_cast<std::uint8_t>(value + 128);
    }
  }
}

const std::vector<W8A16Variant>& w8a16_variants() {
  static const std::vector<W8A16Variant> variants = {
      variant<4, 1, 2>(), variant<4, 2, 2>(), variant<4, 2, 4>(), variant<4, 4, 2>(),
      variant<8, 1, 2>(), variant<8, 1, 4>(), variant<8, 2, 2>(), variant<16, 1, 2>(),
  };
  return variants;
}

const W8A16Variant* find_w8a16_variant(const std::string& name) {
  for (const W8A16Variant& v : w8a16_variants())
    if (v.name == name) return &v;
  return nullptr;
}

std::string w8a16_kernel_name(std::int64_t n) {
  return variant_for(n).name;
}

void w8a16_gemm(const void* x, std::int64_t x_row_stride, const std::uint8_t* packed,
                const void* scales, const W8Layout& layout, std::int64_t m, void* y,
                cudaStream_t stream) {
  if (layout.padded_n * layout.padded_k / 16 >= (std::int64_t(1) << 31) ||
      layout.n * m >= (std::int64_t(1) << 31))
    throw ProfileError("w8a16_gemm with n=" + std::to_string(layout.n) +
                       ", k=" + std::to_string(layout.k) + ", m=" + std::to_string(m) +
                       ": the kernel indexes with 32-bit integers");
  const W8A16Args args{x, x_row_stride, packed, scales, layout, m, y};
  check_cuda(variant_for(layout.n).launch(args, stream), "launching w8a16_gemm");
}

void w8_dequantize(const std::uint8_t* packed, const void* scales, const W8Layout& layout,
                   void* w_fp16, cudaStream_t stream) {
  const std::int64_t units = layout.packed_bytes() / 16;
  const unsigned grid =
      static_cast<unsigned>(std::min<std::int64_t>((units + 255) / 256, 132 * 32));
  w8_dequantize_kernel<<<grid, 256, 0, stream>>>(
      reinterpret_cast<const uint4*>(packed), static_cast<const __half*>(scales), layout.padded_n,
      layout.padded_k, static_cast<__half*>(w_fp16));
  check_launch("launching w8_dequantize");
}

}  // namespace bitplan::cuda
