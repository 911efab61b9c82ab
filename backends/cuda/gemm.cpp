#include "backends/cuda/gemm.hpp"

#include <optional>

#include "backends/cuda/check.hpp"

namespace bitplan::cuda {
namespace {

struct LtTypes {
  cudaDataType_t ab, cd, scale;
  cublasComputeType_t compute;
  // C's type where it differs from D's (fp8 outputs take a 16-bit C), else cd.
  std::optional<cudaDataType_t> c = std::nullopt;
};

LtTypes lt_types(Precision p) {
  switch (p) {
    case Precision::fp32:
      return {CUDA_R_32F, CUDA_R_32F, CUDA_R_32F, CUBLAS_COMPUTE_32F};
    case Precision::fp16:
      return {CUDA_R_16F, CUDA_R_16F, CUDA_R_32F, CUBLAS_COMPUTE_32F};
    case Precision::bf16:
      return {CUDA_R_16BF, CUDA_R_16BF, CUDA_R_32F, CUBLAS_COMPUTE_32F};
    case Precision::int8:
      return {CUDA_R_8I, CUDA_R_32I, CUDA_R_32I, CUBLAS_COMPUTE_32I};
    case Precision::int8_chained:
      // cuBLASLt's IMMA kernels with an int8 D take float scales, and alpha as a device
      // vector of one value per row of D (per output channel): the requantization epilogue.
      return {CUDA_R_8I, CUDA_R_8I, CUDA_R_32F, CUBLAS_COMPUTE_32I};
    case Precision::fp8_e4m3:
      return {CUDA_R_8F_E4M3, CUDA_R_16F, CUDA_R_32F, CUBLAS_COMPUTE_32F};
    case Precision::fp8_e4m3_chained:
      // e4m3 D scaled by the D scale (1 / s_y); cuBLASLt wants C in a 16-bit type then.
      return {CUDA_R_8F_E4M3, CUDA_R_8F_E4M3, CUDA_R_32F, CUBLAS_COMPUTE_32F, CUDA_R_16F};
    case Precision::w4a16:
    case Precision::w8a16:
      break;
  }
  throw ProfileError("creating a cuBLASLt GEMM: precision " + to_string(p) +
                     ": a weight-only precision runs on bitplan's own kernel");
}

std::string shape_text(std::int64_t m, std::int64_t n, std::int64_t k) {
  return "m=" + std::to_string(m) + " n=" + std::to_string(n) + " k=" + std::to_string(k);
}

}  // namespace

std::string cublaslt_version() {
  const std::size_t v = cublasLtGetVersion();  // major*10000 + minor*100 + patch
  return std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." +
         std::to_string(v % 100);
}

LtGemm::LtGemm(cublasLtHandle_t handle, Precision precision, std::int64_t m, std::int64_t n,
               std::int64_t k, std::int64_t ldw, std::int64_t ldx, const float* fp8_scale_w,
               const float* fp8_scale_x, const float* output_scale, std::int64_t batch,
               int algorithm)
    : handle_(handle), precision_(precision), output_scale_(output_scale) {
  const LtTypes types = lt_types(precision);
  const std::string what = to_string(precision) + " GEMM " + shape_text(m, n, k) +
                           (batch > 1 ? " batch " + std::to_string(batch) : "");
  // The documented layout rules of the integer and fp8 tensor-core kernels, checked first so
  // the profile says which rule a shape breaks.
  const bool integer = precision == Precision::int8 || precision == Precision::int8_chained;
  if (integer && (k % 4 != 0 || n % 4 != 0 || ldw % 4 != 0 || ldx % 4 != 0))
    throw Unsupported("cuBLASLt int8 " + shape_text(m, n, k) +
                      ": needs k and n multiples of 4 (IMMA kernels, TN layout)");
  if (precision == Precision::fp8_e4m3_chained && n % 16 != 0)
    throw Unsupported("cuBLASLt fp8 with an e4m3 output " + shape_text(m, n, k) +
                      ": needs n a multiple of 16 (16-byte aligned output rows)");
  const bool chained =
      precision == Precision::int8_chained || precision == Precision::fp8_e4m3_chained;
  if (chained && output_scale == nullptr)
    throw ProfileError("creating the " + what +
                       ": needs the output scales its epilogue applies (output_scale)");
  const bool fp8 = precision == Precision::fp8_e4m3 || precision == Precision::fp8_e4m3_chained;
  if (fp8 && (k % 16 != 0 || n % 8 != 0 || ldw % 16 != 0 || ldx % 16 != 0))
    throw Unsupported("cuBLASLt fp8 " + shape_text(m, n, k) +
                      ": needs k a multiple of 16 and n a multiple of 8 (16-byte aligned rows)");
  try {
    check_cublas(cublasLtMatmulDescCreate(&op_, types.compute, types.scale),
                 "creating a cuBLASLt matmul descriptor");
    const cublasOperation_t transpose = CUBLAS_OP_T, keep = CUBLAS_OP_N;
    check_cublas(cublasLtMatmulDescSetAttribute(op_, CUBLASLT_MATMUL_DESC_TRANSA, &transpose,
                                                sizeof(transpose)),
                 "setting TRANSA");
    check_cublas(
        cublasLtMatmulDescSetAttribute(op_, CUBLASLT_MATMUL_DESC_TRANSB, &keep, sizeof(keep)),
        "setting TRANSB");
    if (precision == Precision::int8_chained) {
      // (..._BETA_ZERO has no int8-out algorithm on an H100 with cuBLASLt 13; beta = 0 from
      // the host does.)
      const cublasLtPointerMode_t mode = CUBLASLT_POINTER_MODE_ALPHA_DEVICE_VECTOR_BETA_HOST;
      check_cublas(
          cublasLtMatmulDescSetAttribute(op_, CUBLASLT_MATMUL_DESC_POINTER_MODE, &mode, sizeof(mode)),
          "setting the per-channel alpha vector");
    }
    if (precision == Precision::fp8_e4m3_chained)
      check_cublas(cublasLtMatmulDescSetAttribute(op_, CUBLASLT_MATMUL_DESC_D_SCALE_POINTER,
                                                  &output_scale, sizeof(output_scale)),
                   "setting the fp8 output scale");
    if (fp8) {
      check_cublas(cublasLtMatmulDescSetAttribute(op_, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER,
                                                  &fp8_scale_w, sizeof(fp8_scale_w)),
                   "setting the fp8 weight scale");
      check_cublas(cublasLtMatmulDescSetAttribute(op_, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER,
                                                  &fp8_scale_x, sizeof(fp8_scale_x)),
                   "setting the fp8 activation scale");
      // Inference GEMMs (TensorRT-LLM, Transformer Engine's forward pass) use fast
      // accumulation; it is what a deployment would run.
      const std::int8_t fast_accumulate = 1;
      check_cublas(cublasLtMatmulDescSetAttribute(op_, CUBLASLT_MATMUL_DESC_FAST_ACCUM,
                                                  &fast_accumulate, sizeof(fast_accumulate)),
                   "setting fp8 fast accumulation");
    }
    check_cublas(cublasLtMatrixLayoutCreate(&a_, types.ab, k, n, ldw), "creating layout A");
    check_cublas(cublasLtMatrixLayoutCreate(&b_, types.ab, k, m, ldx), "creating layout B");
    check_cublas(cublasLtMatrixLayoutCreate(&d_, types.cd, n, m, n), "creating layout D");
    if (types.c)
      check_cublas(cublasLtMatrixLayoutCreate(&c_, *types.c, n, m, n), "creating layout C");
    if (batch > 1) {
      const int count = static_cast<int>(batch);
      const auto batched = [&](cublasLtMatrixLayout_t layout, std::int64_t stride) {
        check_cublas(cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT,
                                                      &count, sizeof(count)),
                     "setting the batch count");
        check_cublas(
            cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
                                             &stride, sizeof(stride)),
            "setting the batch stride");
      };
      batched(a_, n * ldw);
      batched(b_, m * ldx);
      batched(d_, m * n);
      if (c_) batched(c_, m * n);
    }

    cublasLtMatmulPreference_t preference = nullptr;
    check_cublas(cublasLtMatmulPreferenceCreate(&preference), "creating a matmul preference");
    const std::size_t workspace = kWorkspaceBytes;
    cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                         &workspace, sizeof(workspace));
    cublasLtMatmulHeuristicResult_t results[kMaxAlgorithms] = {};
    int found = 0;
    const cublasStatus_t status = cublasLtMatmulAlgoGetHeuristic(
        handle_, op_, a_, b_, c_ ? c_ : d_, d_, preference, kMaxAlgorithms, results, &found);
    cublasLtMatmulPreferenceDestroy(preference);
    if (status != CUBLAS_STATUS_SUCCESS || found == 0)
      throw Unsupported("cuBLASLt has no algorithm for " + what + " (heuristic status " +
                        std::to_string(static_cast<int>(status)) + ")");
    if (algorithm < 0 || algorithm >= found)
      throw Unsupported("cuBLASLt's heuristic offers " + std::to_string(found) +
                        " algorithms for " + what + ": rank " + std::to_string(algorithm) +
                        " must be below that");
    algo_ = results[algorithm].algo;
    description_ = "cublasLt heuristic #" + std::to_string(algorithm);
  } catch (...) {
    release();
    throw;
  }
}

LtGemm::~LtGemm() {
  release();
}

void LtGemm::release() {
  if (c_) cublasLtMatrixLayoutDestroy(c_);
  if (d_) cublasLtMatrixLayoutDestroy(d_);
  if (b_) cublasLtMatrixLayoutDestroy(b_);
  if (a_) cublasLtMatrixLayoutDestroy(a_);
  if (op_) cublasLtMatmulDescDestroy(op_);
  d_ = c_ = b_ = a_ = nullptr;
  op_ = nullptr;
}

void LtGemm::run(const void* w, const void* x, void* y, void* workspace,
                 std::size_t workspace_bytes, cudaStream_t stream, const void* c) const {
  const float one = 1.0f, zero = 0.0f;
  const std::int32_t one_i = 1, zero_i = 0;
  const bool integer_scales = precision_ == Precision::int8;
  if (c_ && c == nullptr)
    throw ProfileError("running the " + to_string(precision_) +
                       " GEMM: an fp8 output needs a 16-bit C buffer (beta is 0: never read)");
  const void* alpha = precision_ == Precision::int8_chained ? static_cast<const void*>(output_scale_)
                      : integer_scales                      ? static_cast<const void*>(&one_i)
                                                            : &one;
  const cublasStatus_t status =
      cublasLtMatmul(handle_, op_, alpha, w, a_, x, b_,
                     integer_scales ? static_cast<const void*>(&zero_i) : &zero, c_ ? c : y,
                     c_ ? c_ : d_, y, d_, &algo_, workspace, workspace_bytes, stream);
  // The heuristic can offer an algorithm that the call then refuses; that is a property of
  // the shape and precision, recorded as such, not a failure of the profiler.
  if (status == CUBLAS_STATUS_NOT_SUPPORTED)
    throw Unsupported("cublasLtMatmul " + to_string(precision_) + ": " + description_ +
                      " returned CUBLAS_STATUS_NOT_SUPPORTED at run time");
  check_cublas(status, "running cublasLtMatmul");
}

}  // namespace bitplan::cuda
