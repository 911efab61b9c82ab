// Device helpers shared by the weight-only decode kernels (w4a16_decode.cu, w8a16.cu).
#pragma once

#include <cstdint>

namespace bitplan::cuda {

// d += A * B on the tensor cores: mma.m16n8k16, fp16 A (16 x 16, row-major fragments) and B
// (16 x 8, column-major), fp32 accumulators. Fragment ownership per lane (g = lane / 4,
// t = lane % 4): A a0a1 (row g, k 2t..2t+1), a2a3 (row g + 8, same k), a4a5 (row g, k 2t+8..),
// a6a7 (row g + 8, k 2t+8..); B b0b1 (k 2t.., column g), b2b3 (k 2t+8.., column g); C c0c1
// (row g, columns 2t, 2t + 1), c2c3 (row g + 8, same columns).
__device__ __forceinline__ void mma_16816(float (&d)[4], const uint4& a, std::uint32_t b0,
                                          std::uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a.x), "r"(a.y), "r"(a.z), "r"(a.w), "r"(b0), "r"(b1));
}

// A 16-byte load of data read once (packed weights): ld.global.nc with L1::no_allocate, so L1
// keeps what is reused (the activations).
__device__ __forceinline__ uint4 load_streamed(const uint4* p) {
  uint4 v;
  asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
      : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
      : "l"(p));
  return v;
}

}  // namespace bitplan::cuda
