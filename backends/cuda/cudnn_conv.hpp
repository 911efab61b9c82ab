// cuDNN convolutions for the CUDA profiler: one planned cudnnConvolutionForward call per
// (conv shape, precision), NHWC activations and KRSC weights (tensor cores for fp16, bf16
// and int8). Built from cudnn_conv.cpp when CMake finds cuDNN (backends/cuda/cudnn.cmake),
// else from cudnn_absent.cpp, which declines every shape and says how to build with it.
// No cuDNN header here, so the rest of the backend is the same in both builds.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "backends/cuda/precision.hpp"
#include "backends/cuda/runtime.hpp"
#include "backends/cuda/workloads.hpp"

namespace bitplan::cuda {

// Why cuDNN does not run the conv `shape` at precision `p` (action, value, rule), from the
// rules known before asking cuDNN; nullopt when it may. cuDNN itself can still refuse a
// shape when the plan is made (CudnnConv throws Unsupported then).
std::optional<std::string> cudnn_conv_declines(const LayerShape& shape, Precision p);

// The cuDNN library version loaded at run time ("9.19.0"); empty without cuDNN.
std::string cudnn_runtime_version();

// A planned convolution: descriptors set and the fastest algorithm found
// (cudnnFindConvolutionForwardAlgorithm, which times each candidate once) when constructed;
// run() only launches. Element types: fp32, fp16, bf16 in and out (fp32 accumulate; fp32 with
// TF32 off like the GEMM entries); int8: s8 input and weights, int32 accumulate, written as
// fp32 (cuDNN's INT8_EXT_CONFIG), which the caller scales per channel into fp16.
class CudnnConv {
 public:
  CudnnConv(const GpuContext& gpu, const LayerShape& shape, Precision precision);
  ~CudnnConv();
  CudnnConv(const CudnnConv&) = delete;
  CudnnConv& operator=(const CudnnConv&) = delete;

  // y = conv(x, w) on the context's stream (the handle is bound to it once);
  // x NHWC [n][h][w][c], w [k][r][s][c/groups], y NHWC [n][oh][ow][k].
  void run(const void* x, const void* w, void* y) const;
  // "cuDNN 9.19.0 cudnnConvolutionForward IMPLICIT_PRECOMP_GEMM (NHWC, ...)".
  const std::string& description() const;
  // The bytes run() writes to y per element (4 for int8's fp32 sums).
  std::size_t output_element_bytes() const;

 private:
  struct Plan;
  std::unique_ptr<Plan> plan_;
};

}  // namespace bitplan::cuda
