// The profiler's own kernels; see kernels.hpp for what each computes.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <algorithm>
#include <string>
#include <type_traits>

#include "backends/cuda/check.hpp"
#include "backends/cuda/kernels.hpp"

namespace bitplan::cuda {
namespace {

// Grid for a grid-stride loop: enough blocks to fill the GPU several times, no more.
constexpr int kThreads = 256;
unsigned grid_for(std::int64_t work_items) {
  const std::int64_t blocks = (work_items + kThreads - 1) / kThreads;
  return static_cast<unsigned>(std::clamp<std::int64_t>(blocks, 1, 132 * 32));
}

__device__ __forceinline__ std::uint32_t hash32(std::uint32_t seed, std::uint64_t i) {
  // splitmix64 finaliser: consecutive indices give unrelated values.
  std::uint64_t z = i * 0x9E3779B97F4A7C15ull + (std::uint64_t(seed) << 32 | seed);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return static_cast<std::uint32_t>((z ^ (z >> 31)) >> 16);
}

template <typename T>
__device__ __forceinline__ float to_float(T v) {
  return static_cast<float>(v);
}
template <>
__device__ __forceinline__ float to_float<__half>(__half v) {
  return __half2float(v);
}
template <>
__device__ __forceinline__ float to_float<__nv_bfloat16>(__nv_bfloat16 v) {
  return __bfloat162float(v);
}
template <>
__device__ __forceinline__ float to_float<__nv_fp8_e4m3>(__nv_fp8_e4m3 v) {
  return static_cast<float>(v);
}

template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __half from_float<__half>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}
template <>
__device__ __forceinline__ std::int8_t from_float<std::int8_t>(float v) {
  return static_cast<std::int8_t>(fminf(fmaxf(rintf(v), -128.f), 127.f));
}
template <>
__device__ __forceinline__ __nv_fp8_e4m3 from_float<__nv_fp8_e4m3>(float v) {
  return __nv_fp8_e4m3(v);  // round to nearest, saturating to the largest finite value
}

template <typename T>
__global__ void fill_kernel(T* data, std::int64_t count, std::uint32_t seed, float amplitude) {
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < count;
       i += std::int64_t(gridDim.x) * blockDim.x) {
    const float u = hash32(seed, i) * (2.0f / 65536.0f / 65536.0f) - 1.0f;  // [-1, 1)
    data[i] = from_float<T>(u * amplitude);
  }
}

__global__ void fill_bytes_kernel(std::uint8_t* data, std::int64_t bytes, std::uint32_t seed) {
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < bytes;
       i += std::int64_t(gridDim.x) * blockDim.x)
    data[i] = static_cast<std::uint8_t>(hash32(seed, i) >> 7);
}

// Eight elements per thread so both sides move in wide, coalesced accesses.
template <typename T>
struct alignas(sizeof(T) * 8) Pack8 {
  T v[8];
};

template <typename In, typename Out>
__global__ void convert_kernel(const In* in, Out* out, std::int64_t count, float factor) {
  const std::int64_t packs = count / 8;
  const std::int64_t stride = std::int64_t(gridDim.x) * blockDim.x;
  const std::int64_t first = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x;
  for (std::int64_t p = first; p < packs; p += stride) {
    const Pack8<In> a = reinterpret_cast<const Pack8<In>*>(in)[p];
    Pack8<Out> b;
#pragma unroll
    for (int j = 0; j < 8; ++j) b.v[j] = from_float<Out>(to_float(a.v[j]) * factor);
    reinterpret_cast<Pack8<Out>*>(out)[p] = b;
  }
  for (std::int64_t i = packs * 8 + first; i < count; i += stride)
    out[i] = from_float<Out>(to_float(in[i]) * factor);
}

template <typename T>
__global__ void im2col_kernel(const T* in, LayerShape s, std::int64_t oh, std::int64_t ow, T* out,
                              std::int64_t padded_k) {
  const std::int64_t rows = s.batch * oh * ow;
  const std::int64_t total = rows * padded_k;
  const std::int64_t real_k = s.c * s.r * s.s;
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < total;
       i += std::int64_t(gridDim.x) * blockDim.x) {
    const std::int64_t col = i % padded_k, row = i / padded_k;
    T value = T(0.0f);
    if (col < real_k) {
      const std::int64_t c = col % s.c, rs = col / s.c, kx = rs % s.s, ky = rs / s.s;
      const std::int64_t x = row % ow, y = (row / ow) % oh, n = row / (ow * oh);
      const std::int64_t iy = y * s.stride_h - s.pad_top + ky * s.dilation_h;
      const std::int64_t ix = x * s.stride_w - s.pad_left + kx * s.dilation_w;
      if (iy >= 0 && iy < s.h && ix >= 0 && ix < s.w)
        value = in[((n * s.h + iy) * s.w + ix) * s.c + c];
    }
    out[i] = value;
  }
}

// One thread per output element, channel fastest (coalesced reads and writes).
template <typename T>
__global__ void pad_kernel(const T* in, LayerShape s, std::int64_t padded_h, std::int64_t padded_w,
                           T* out) {
  const std::int64_t total = s.batch * padded_h * padded_w * s.c;
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < total;
       i += std::int64_t(gridDim.x) * blockDim.x) {
    const std::int64_t c = i % s.c, x = (i / s.c) % padded_w, y = (i / (s.c * padded_w)) % padded_h;
    const std::int64_t n = i / (s.c * padded_w * padded_h);
    const std::int64_t iy = y - s.pad_top, ix = x - s.pad_left;
    out[i] = (iy >= 0 && iy < s.h && ix >= 0 && ix < s.w)
                 ? in[((n * s.h + iy) * s.w + ix) * s.c + c]
                 : T(0.0f);
  }
}

// One thread per output element, channel fastest so neighbouring threads read neighbouring
// channels (coalesced); the r*s taps of a pixel stay in L1.
template <typename T, typename Acc, typename Out>
__global__ void depthwise_kernel(const T* in, const T* weights, const float* channel_scales,
                                 float input_scale, LayerShape s, std::int64_t oh, std::int64_t ow,
                                 Out* out) {
  const std::int64_t total = s.batch * oh * ow * s.c;
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < total;
       i += std::int64_t(gridDim.x) * blockDim.x) {
    const std::int64_t c = i % s.c, x = (i / s.c) % ow, y = (i / (s.c * ow)) % oh;
    const std::int64_t n = i / (s.c * ow * oh);
    Acc acc = 0;
    for (std::int64_t ky = 0; ky < s.r; ++ky) {
      const std::int64_t iy = y * s.stride_h - s.pad_top + ky * s.dilation_h;
      if (iy < 0 || iy >= s.h) continue;
      for (std::int64_t kx = 0; kx < s.s; ++kx) {
        const std::int64_t ix = x * s.stride_w - s.pad_left + kx * s.dilation_w;
        if (ix < 0 || ix >= s.w) continue;
        const T a = in[((n * s.h + iy) * s.w + ix) * s.c + c];
        const T b = weights[(c * s.r + ky) * s.s + kx];
        if constexpr (std::is_same_v<Acc, int>)
          acc += int(a) * int(b);
        else
          acc += to_float(a) * to_float(b);
      }
    }
    if (channel_scales != nullptr)
      out[i] = from_float<Out>(float(acc) * input_scale * channel_scales[c]);
    else
      out[i] = from_float<Out>(float(acc));
  }
}

// Acc is std::int32_t (cuBLASLt's int8 GEMM) or float (cuDNN's int8 convolution).
template <typename Acc>
__global__ void dequantize_kernel(const Acc* acc, float input_scale, const float* channel_scales,
                                  std::int64_t m, std::int64_t n, __half* y) {
  using Acc4 = std::conditional_t<std::is_same_v<Acc, float>, float4, int4>;
  const std::int64_t total = m * n;
  const std::int64_t stride = std::int64_t(gridDim.x) * blockDim.x;
  const std::int64_t first = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x;
  if (n % 4 == 0) {  // four at a time: 16-byte loads, 8-byte stores
    for (std::int64_t p = first; p < total / 4; p += stride) {
      const Acc4 a = reinterpret_cast<const Acc4*>(acc)[p];
      const std::int64_t col = (p * 4) % n;
      const float4 sc = *reinterpret_cast<const float4*>(channel_scales + col);
      __half2 lo = __floats2half2_rn(a.x * input_scale * sc.x, a.y * input_scale * sc.y);
      __half2 hi = __floats2half2_rn(a.z * input_scale * sc.z, a.w * input_scale * sc.w);
      reinterpret_cast<__half2*>(y)[2 * p] = lo;
      reinterpret_cast<__half2*>(y)[2 * p + 1] = hi;
    }
    return;
  }
  for (std::int64_t i = first; i < total; i += stride)
    y[i] = __float2half_rn(acc[i] * input_scale * channel_scales[i % n]);
}

__global__ void spin_kernel(std::uint64_t nanoseconds) {
  std::uint64_t start, now;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(start));
  do {
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
  } while (now - start < nanoseconds);
}

template <typename F>
void dispatch_type(ElementType t, F&& f) {
  switch (t) {
    case ElementType::f32:
      f(float{});
      return;
    case ElementType::f16:
      f(__half{});
      return;
    case ElementType::bf16:
      f(__nv_bfloat16{});
      return;
    case ElementType::s8:
      f(std::int8_t{});
      return;
    case ElementType::e4m3:
      f(__nv_fp8_e4m3{});
      return;
  }
}

// ---- The model's other ops (workloads.hpp, OpKind) ----------------------------------------

struct EltwiseInputs {
  const void* data[4];
  std::int64_t count[4];
  int inputs;
};

template <typename T>
__global__ void eltwise_kernel(EltwiseInputs in, std::int64_t outputs, T* y) {
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < outputs;
       i += std::int64_t(gridDim.x) * blockDim.x) {
    float sum = 0;
    for (int j = 0; j < in.inputs; ++j) {
      const std::int64_t n = in.count[j];
      // Full-size inputs (most of them) skip the 64-bit modulo.
      sum += to_float(static_cast<const T*>(in.data[j])[n == outputs ? i : i % n]);
    }
    y[i] = from_float<T>(sum);
  }
}

// The same with 16-byte loads and stores: V = 16 / sizeof(T) consecutive elements a thread,
// for when every input size (or 1: a scalar) and the output size are multiples of V (then the
// V elements of a broadcast input are consecutive too).
template <typename T>
__global__ void eltwise_vector_kernel(EltwiseInputs in, std::int64_t outputs, T* y) {
  constexpr int V = 16 / sizeof(T);
  const std::int64_t vectors = outputs / V;
  for (std::int64_t v = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; v < vectors;
       v += std::int64_t(gridDim.x) * blockDim.x) {
    const std::int64_t i = v * V;
    float sum[V] = {};
    for (int j = 0; j < in.inputs; ++j) {
      const std::int64_t n = in.count[j];
      if (n == 1) {  // a scalar (a Div by a constant): one value for all V
        const float value = to_float(*static_cast<const T*>(in.data[j]));
#pragma unroll
        for (int e = 0; e < V; ++e) sum[e] += value;
        continue;
      }
      const uint4 raw = *reinterpret_cast<const uint4*>(static_cast<const T*>(in.data[j]) +
                                                        (n == outputs ? i : i % n));
      const T* values = reinterpret_cast<const T*>(&raw);
#pragma unroll
      for (int e = 0; e < V; ++e) sum[e] += to_float(values[e]);
    }
    uint4 packed;
    T* out = reinterpret_cast<T*>(&packed);
#pragma unroll
    for (int e = 0; e < V; ++e) out[e] = from_float<T>(sum[e]);
    *reinterpret_cast<uint4*>(y + i) = packed;
  }
}

// One warp per row: the mean of its cols values.
template <typename T>
__global__ void reduce_rows_kernel(const T* x, std::int64_t rows, std::int64_t cols, T* y) {
  const int lane = threadIdx.x % 32;
  const std::int64_t warps = std::int64_t(gridDim.x) * (blockDim.x / 32);
  for (std::int64_t r = blockIdx.x * std::int64_t(blockDim.x / 32) + threadIdx.x / 32; r < rows;
       r += warps) {
    const T* row = x + r * cols;
    float sum = 0;
    for (std::int64_t c = lane; c < cols; c += 32) sum += to_float(row[c]);
    for (int offset = 16; offset > 0; offset /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, offset);
    if (lane == 0) y[r] = from_float<T>(sum / float(cols));
  }
}

// One warp per row: softmax, with the maximum and the sum of exponentials in one online pass
// (each new maximum rescales the running sum), then a second pass that writes.
template <typename T>
__global__ void softmax_rows_kernel(const T* x, std::int64_t rows, std::int64_t cols, T* y) {
  const int lane = threadIdx.x % 32;
  const std::int64_t warps = std::int64_t(gridDim.x) * (blockDim.x / 32);
  for (std::int64_t r = blockIdx.x * std::int64_t(blockDim.x / 32) + threadIdx.x / 32; r < rows;
       r += warps) {
    const T* row = x + r * cols;
    float peak = -INFINITY, sum = 0;
    for (std::int64_t c = lane; c < cols; c += 32) {
      const float v = to_float(row[c]);
      if (v > peak) sum *= __expf(peak - v), peak = v;
      sum += __expf(v - peak);
    }
    for (int offset = 16; offset > 0; offset /= 2) {
      const float other_peak = __shfl_xor_sync(0xffffffffu, peak, offset);
      const float other_sum = __shfl_xor_sync(0xffffffffu, sum, offset);
      const float top = fmaxf(peak, other_peak);
      sum = (sum == 0 ? 0 : sum * __expf(peak - top)) +
            (other_sum == 0 ? 0 : other_sum * __expf(other_peak - top));
      peak = top;
    }
    const float inverse = 1.0f / sum;
    for (std::int64_t c = lane; c < cols; c += 32)
      y[r * cols + c] = from_float<T>(__expf(to_float(row[c]) - peak) * inverse);
  }
}

// 16 bytes a thread, for sizes that are multiples of them.
__global__ void copy_vector_kernel(const uint4* x, std::int64_t inputs, uint4* y,
                                   std::int64_t outputs) {
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < outputs;
       i += std::int64_t(gridDim.x) * blockDim.x)
    y[i] = x[inputs == outputs ? i : i % inputs];
}

template <typename T>
__global__ void copy_kernel(const T* x, std::int64_t inputs, T* y, std::int64_t outputs) {
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < outputs;
       i += std::int64_t(gridDim.x) * blockDim.x)
    y[i] = x[inputs == outputs ? i : i % inputs];
}

// One thread per output: y[b][i][j] = sum_q x[b][i][q] * w[b][j][q] in fp32.
template <typename T>
__global__ void bmm_direct_kernel(const T* w, const T* x, T* y, std::int64_t batch, std::int64_t m,
                                  std::int64_t n, std::int64_t k) {
  const std::int64_t total = batch * m * n;
  for (std::int64_t o = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; o < total;
       o += std::int64_t(gridDim.x) * blockDim.x) {
    const std::int64_t b = o / (m * n), i = o / n % m, j = o % n;
    const T* xr = x + (b * m + i) * k;
    const T* wr = w + (b * n + j) * k;
    float sum = 0;
    for (std::int64_t q = 0; q < k; ++q) sum += to_float(xr[q]) * to_float(wr[q]);
    y[o] = from_float<T>(sum);
  }
}

void check_float(ElementType type, const char* op) {
  if (type != ElementType::f32 && type != ElementType::f16 && type != ElementType::bf16)
    throw ProfileError(std::string("running ") + op + " on " + to_string(type) +
                       ": the model's other ops run in a float type (fp32, fp16, bf16)");
}

}  // namespace

void eltwise_op(const std::vector<const void*>& inputs, const std::vector<std::int64_t>& counts,
                ElementType type, void* y, std::int64_t outputs, cudaStream_t stream) {
  check_float(type, "an eltwise op");
  if (inputs.size() != counts.size() || inputs.size() > 4)
    throw ProfileError("running an eltwise op with " + std::to_string(inputs.size()) +
                       " inputs: must be at most 4, with one count each");
  EltwiseInputs in{};
  in.inputs = static_cast<int>(inputs.size());
  for (std::size_t j = 0; j < inputs.size(); ++j) in.data[j] = inputs[j], in.count[j] = counts[j];
  dispatch_type(type, [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_floating_point_v<T> || std::is_same_v<T, __half> ||
                  std::is_same_v<T, __nv_bfloat16>) {
      constexpr std::int64_t V = 16 / sizeof(T);
      const bool vectors = outputs % V == 0 &&
                           std::all_of(counts.begin(), counts.end(),
                                       [](std::int64_t n) { return n % V == 0 || n == 1; });
      if (vectors)
        eltwise_vector_kernel<T>
            <<<grid_for(outputs / V), kThreads, 0, stream>>>(in, outputs, static_cast<T*>(y));
      else
        eltwise_kernel<T>
            <<<grid_for(outputs), kThreads, 0, stream>>>(in, outputs, static_cast<T*>(y));
    }
  });
  check_launch("launching eltwise_op");
}

void reduce_rows(const void* x, ElementType type, std::int64_t rows, std::int64_t cols, void* y,
                 bool softmax, cudaStream_t stream) {
  check_float(type, softmax ? "a softmax" : "a row reduction");
  const unsigned grid = grid_for(rows * 32);
  dispatch_type(type, [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_floating_point_v<T> || std::is_same_v<T, __half> ||
                  std::is_same_v<T, __nv_bfloat16>) {
      if (softmax)
        softmax_rows_kernel<T><<<grid, kThreads, 0, stream>>>(static_cast<const T*>(x), rows, cols,
                                                              static_cast<T*>(y));
      else
        reduce_rows_kernel<T><<<grid, kThreads, 0, stream>>>(static_cast<const T*>(x), rows, cols,
                                                             static_cast<T*>(y));
    }
  });
  check_launch(softmax ? "launching softmax_rows" : "launching reduce_rows");
}

void bmm_direct(const void* w, const void* x, ElementType type, void* y, std::int64_t batch,
                std::int64_t m, std::int64_t n, std::int64_t k, cudaStream_t stream) {
  check_float(type, "a direct batched matmul");
  dispatch_type(type, [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_floating_point_v<T> || std::is_same_v<T, __half> ||
                  std::is_same_v<T, __nv_bfloat16>)
      bmm_direct_kernel<T><<<grid_for(batch * m * n), kThreads, 0, stream>>>(
          static_cast<const T*>(w), static_cast<const T*>(x), static_cast<T*>(y), batch, m, n, k);
  });
  check_launch("launching bmm_direct");
}

void copy_op(const void* x, std::int64_t inputs, ElementType type, void* y, std::int64_t outputs,
             cudaStream_t stream) {
  check_float(type, "a copy op");
  const std::int64_t bytes = std::int64_t(element_bytes(type));
  if ((inputs * bytes) % 16 == 0 && (outputs * bytes) % 16 == 0) {
    copy_vector_kernel<<<grid_for(outputs * bytes / 16), kThreads, 0, stream>>>(
        static_cast<const uint4*>(x), inputs * bytes / 16, static_cast<uint4*>(y),
        outputs * bytes / 16);
    check_launch("launching copy_op");
    return;
  }
  dispatch_type(type, [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_floating_point_v<T> || std::is_same_v<T, __half> ||
                  std::is_same_v<T, __nv_bfloat16>)
      copy_kernel<T><<<grid_for(outputs), kThreads, 0, stream>>>(static_cast<const T*>(x), inputs,
                                                                 static_cast<T*>(y), outputs);
  });
  check_launch("launching copy_op");
}

void fill_random(void* data, ElementType type, std::int64_t count, std::uint32_t seed,
                 float amplitude, cudaStream_t stream) {
  dispatch_type(type, [&](auto tag) {
    using T = decltype(tag);
    const float amp = std::is_same_v<T, std::int8_t> ? 127.0f : amplitude;
    fill_kernel<T>
        <<<grid_for(count), kThreads, 0, stream>>>(static_cast<T*>(data), count, seed, amp);
  });
  check_launch("launching fill_random");
}

void fill_random_bytes(void* data, std::int64_t bytes, std::uint32_t seed, cudaStream_t stream) {
  fill_bytes_kernel<<<grid_for(bytes), kThreads, 0, stream>>>(static_cast<std::uint8_t*>(data),
                                                              bytes, seed);
  check_launch("launching fill_random_bytes");
}

void convert(const void* in, ElementType from, void* out, ElementType to, std::int64_t count,
             float factor, cudaStream_t stream) {
  dispatch_type(from, [&](auto in_tag) {
    dispatch_type(to, [&](auto out_tag) {
      using In = decltype(in_tag);
      using Out = decltype(out_tag);
      convert_kernel<In, Out><<<grid_for(count / 8 + 1), kThreads, 0, stream>>>(
          static_cast<const In*>(in), static_cast<Out*>(out), count, factor);
    });
  });
  check_launch("launching convert");
}

void im2col_nhwc(const void* in, std::size_t element_bytes, const LayerShape& shape, void* out,
                 std::int64_t padded_k, cudaStream_t stream) {
  const std::int64_t oh = shape.out_h(), ow = shape.out_w();
  const std::int64_t total = shape.batch * oh * ow * padded_k;
  const unsigned grid = grid_for(total);
  // Only the element size matters for a copy; zero is all-zero bits in every type used here.
  switch (element_bytes) {
    case 1:
      im2col_kernel<std::int8_t>
          <<<grid, kThreads, 0, stream>>>(static_cast<const std::int8_t*>(in), shape, oh, ow,
                                          static_cast<std::int8_t*>(out), padded_k);
      break;
    case 2:
      im2col_kernel<__half><<<grid, kThreads, 0, stream>>>(
          static_cast<const __half*>(in), shape, oh, ow, static_cast<__half*>(out), padded_k);
      break;
    case 4:
      im2col_kernel<float><<<grid, kThreads, 0, stream>>>(static_cast<const float*>(in), shape, oh,
                                                          ow, static_cast<float*>(out), padded_k);
      break;
    default:
      throw ProfileError("running im2col: element size " + std::to_string(element_bytes) +
                         ": must be 1, 2 or 4 bytes");
  }
  check_launch("launching im2col");
}

void pad_nhwc(const void* in, std::size_t element_bytes, const LayerShape& shape, void* out,
              cudaStream_t stream) {
  const std::int64_t padded_h = shape.h + shape.pad_top + shape.pad_bottom;
  const std::int64_t padded_w = shape.w + shape.pad_left + shape.pad_right;
  const unsigned grid = grid_for(shape.batch * padded_h * padded_w * shape.c);
  switch (element_bytes) {
    case 1:
      pad_kernel<std::int8_t><<<grid, kThreads, 0, stream>>>(static_cast<const std::int8_t*>(in),
                                                             shape, padded_h, padded_w,
                                                             static_cast<std::int8_t*>(out));
      break;
    case 2:
      pad_kernel<__half><<<grid, kThreads, 0, stream>>>(
          static_cast<const __half*>(in), shape, padded_h, padded_w, static_cast<__half*>(out));
      break;
    case 4:
      pad_kernel<float><<<grid, kThreads, 0, stream>>>(
          static_cast<const float*>(in), shape, padded_h, padded_w, static_cast<float*>(out));
      break;
    default:
      throw ProfileError("padding an NHWC tensor: element size " + std::to_string(element_bytes) +
                         ": must be 1, 2 or 4 bytes");
  }
  check_launch("launching pad_nhwc");
}

void depthwise_conv_nhwc(const void* in, ElementType type, const void* weights,
                         const float* channel_scales, float input_scale, const LayerShape& shape,
                         void* out, ElementType out_type, cudaStream_t stream) {
  const bool quantized = type == ElementType::s8 || type == ElementType::e4m3;
  if (quantized ? !(out_type == ElementType::f16 || out_type == type) : out_type != type)
    throw ProfileError("running a depthwise conv on " + to_string(type) + " into " +
                       to_string(out_type) +
                       ": quantized inputs write fp16 or their own codes, float inputs their own "
                       "type");
  const std::int64_t oh = shape.out_h(), ow = shape.out_w();
  const unsigned grid = grid_for(shape.batch * oh * ow * shape.c);
  dispatch_type(type, [&](auto tag) {
    using T = decltype(tag);
    const auto launch = [&](auto accumulator, auto output, const float* scales, float scale) {
      using Acc = decltype(accumulator);
      using Out = decltype(output);
      depthwise_kernel<T, Acc, Out><<<grid, kThreads, 0, stream>>>(
          static_cast<const T*>(in), static_cast<const T*>(weights), scales, scale, shape, oh, ow,
          static_cast<Out*>(out));
    };
    if constexpr (std::is_same_v<T, std::int8_t> || std::is_same_v<T, __nv_fp8_e4m3>) {
      // int8 sums exactly in int32, e4m3 in fp32. Codes for a reader of the same type: the
      // channel scales are then s_w[c] / s_y (requantization).
      using Acc = std::conditional_t<std::is_same_v<T, std::int8_t>, int, float>;
      if (out_type == type)
        launch(Acc{}, T{}, channel_scales, input_scale);
      else
        launch(Acc{}, __half{}, channel_scales, input_scale);
    } else {
      launch(float{}, T{}, nullptr, 1.0f);
    }
  });
  check_launch("launching depthwise_conv");
}

void dequantize_s32(const std::int32_t* acc, float input_scale, const float* channel_scales,
                    std::int64_t m, std::int64_t n, void* y, cudaStream_t stream) {
  dequantize_kernel<<<grid_for(m * n / 4 + 1), kThreads, 0, stream>>>(
      acc, input_scale, channel_scales, m, n, static_cast<__half*>(y));
  check_launch("launching dequantize_s32");
}

void dequantize_f32(const float* acc, float input_scale, const float* channel_scales,
                    std::int64_t m, std::int64_t n, void* y, cudaStream_t stream) {
  dequantize_kernel<<<grid_for(m * n / 4 + 1), kThreads, 0, stream>>>(
      acc, input_scale, channel_scales, m, n, static_cast<__half*>(y));
  check_launch("launching dequantize_f32");
}

void spin(double microseconds, cudaStream_t stream) {
  spin_kernel<<<1, 1, 0, stream>>>(static_cast<std::uint64_t>(microseconds * 1000.0));
  check_launch("launching spin");
}

}  // namespace bitplan::cuda
