// Decode-shaped W4A16 kernels (m = 1..16): the design space that issue 15's sweep measures
// (bitplan-cuda-w4a16-sweep) and that w4a16_gemm picks from by m (kDecodeChoices in
// w4a16.cu). Every variant reads the packed layout of w4_pack unchanged (kernels.hpp), so the
// same weights serve the decode kernels and the tile kernel of larger m.
//
// Variant names spell their template knobs, e.g. "mma8_w8_t1_d8_noalloc_s1":
//   mma8 / mma16   tensor-core math (mma.m16n8k16), rows 0..7 / 0..15 of the A tile used;
//   mmat8          tensor-core math with the weights as the A operand: a pair of column
//                  tiles is A's 16 rows, up to 8 rows of x are B's columns;
//   fma1 / fma4    CUDA-core math (fp32 FMA on dequantised halves) for up to 1 / 4 rows;
//   wW             W warps per block, splitting K between them (chunks interleaved);
//   tT             T column tiles of 8 (8T output columns) per block; a warp step reads one
//                  128-k chunk of each, so activations loaded once serve T tiles;
//   dD             D 16-byte weight loads in flight per lane (D / T chunk steps ahead);
//   ldg | noalloc | l2pf | cpasync   how weights are read: ld.global.nc (L1 allocating),
//                  + L1::no_allocate, + L1::no_allocate.L2::256B, or cp.async.cg into a
//                  per-lane shared-memory ring (no registers held by loads in flight);
//   sS             S blocks of a thread-block cluster split K, reduced through distributed
//                  shared memory (s1: no cluster);
//   persist        instead of sS: as many blocks as fit at once, each looping over column
//                  tiles with the activations staged in its shared memory and the load
//                  ring running on from one tile into the next.
//   bN             (optional) at least N resident blocks per SM: registers capped to fit them.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "backends/cuda/kernels.hpp"

namespace bitplan::cuda {

// One call's operands, as w4a16_gemm takes them.
struct W4DecodeArgs {
  const void* x = nullptr;  // fp16 [m][x_row_stride]
  std::int64_t x_row_stride = 0;
  const std::uint8_t* packed = nullptr;  // w4_pack layout
  const void* chunk_scales = nullptr;    // fp16, w4_pack layout
  W4Layout layout;
  std::int64_t m = 0;
  void* y = nullptr;  // fp16 [m][n]
};

struct W4DecodeResources {
  int registers = 0;      // per thread
  int local_bytes = 0;    // per thread: register spills
  int blocks_per_sm = 0;  // resident at once (registers, shared memory, threads)
};

struct W4DecodeVariant {
  std::string name;  // spells the knobs (above)
  int max_m;         // rows it computes: m in 1..max_m
  // Queues the kernel; returns the launch status instead of throwing, so a sweep can record a
  // variant that does not launch (too many resources, no cluster support) and go on.
  cudaError_t (*launch)(const W4DecodeArgs& args, cudaStream_t stream);
  // What the compiled kernel holds, for the sweep's notes.
  cudaError_t (*resources)(W4DecodeResources& resources);
  // Dynamic shared memory per block for m rows and a padded K (ring + staged activations).
  std::int64_t (*shared_bytes)(std::int64_t m, std::int64_t padded_k);
};

// Every compiled variant, in the sweep's order.
const std::vector<W4DecodeVariant>& w4_decode_variants();
// The variant of that name, or nullptr.
const W4DecodeVariant* find_w4_decode_variant(const std::string& name);

// Why `variant` cannot run `args` (m out of range; activation rows not 16-byte aligned, which
// the decode kernels load 8 halves at a time; staged activations past the shared memory
// limit), or an empty string when it can.
std::string w4_decode_declines(const W4DecodeVariant& variant, const W4DecodeArgs& args);

}  // namespace bitplan::cuda
