// cuBLASLt GEMMs in the profiler's convention: Y[m][n] = X[m][k] * W, with the weights
// stored K-major as W^T [n][k] (like an ONNX/PyTorch Linear weight) and X, Y row-major.
// In cuBLASLt's column-major terms that is D(n x m) = op_T(A: k x n) * B(k x m), the "TN"
// layout that the int8 and fp8 tensor-core kernels require.
#pragma once

#include <cublasLt.h>

#include <cstdint>
#include <string>

#include "backends/cuda/precision.hpp"

namespace bitplan::cuda {

class LtGemm {
 public:
  // precision: fp32 (true fp32, CUBLAS_COMPUTE_32F: no TF32), fp16/bf16 (fp32 accumulate),
  // int8 (s8 x s8 -> s32; the caller dequantises), int8_chained (s8 x s8 -> s8 codes:
  // y[m][c] = sat(round(output_scale[c] * sum)), output_scale a device vector of n floats,
  // s_x s_w[c] / s_y, read at every run), fp8_e4m3 (e4m3 x e4m3 -> fp16 with per-tensor
  // scales from device pointers, fp32 accumulate), fp8_e4m3_chained (the same -> e4m3 codes
  // times output_scale, one device float 1 / s_y). Throws Unsupported with the rule when
  // cuBLASLt has no algorithm for the shape. `batch` > 1: that many products of densely
  // packed operands one after another (W n * ldw, X m * ldx, Y m * n elements apart), as
  // attention's activation products run. `algorithm`: the rank, among the first
  // kMaxAlgorithms of cuBLASLt's heuristic, of the algorithm to run (0: its first choice);
  // Unsupported when it offers fewer.
  LtGemm(cublasLtHandle_t handle, Precision precision, std::int64_t m, std::int64_t n,
         std::int64_t k, std::int64_t ldw, std::int64_t ldx, const float* fp8_scale_w = nullptr,
         const float* fp8_scale_x = nullptr, const float* output_scale = nullptr,
         std::int64_t batch = 1, int algorithm = 0);
  ~LtGemm();
  LtGemm(const LtGemm&) = delete;
  LtGemm& operator=(const LtGemm&) = delete;

  // y is int32 for int8, int8 for int8_chained, e4m3 for fp8_e4m3_chained, fp16 for fp8 and
  // w4a16-dequantised fp16, else the input type. c: fp8_e4m3_chained's C, m x n fp16 that
  // cuBLASLt requires beside an fp8 D and never reads (beta = 0); unused otherwise.
  void run(const void* w, const void* x, void* y, void* workspace, std::size_t workspace_bytes,
           cudaStream_t stream, const void* c = nullptr) const;
  const std::string& description() const { return description_; }

  static constexpr std::size_t kWorkspaceBytes = 32u << 20;
  static constexpr int kMaxAlgorithms = 8;

 private:
  void release();

  cublasLtHandle_t handle_;
  Precision precision_;
  const float* output_scale_ = nullptr;
  cublasLtMatmulDesc_t op_ = nullptr;
  // c_ only where C's type differs from D's (d_).
  cublasLtMatrixLayout_t a_ = nullptr, b_ = nullptr, c_ = nullptr, d_ = nullptr;
  cublasLtMatmulAlgo_t algo_{};
  std::string description_;
};

// "13.0.2" from cublasLtGetVersion().
std::string cublaslt_version();

}  // namespace bitplan::cuda
