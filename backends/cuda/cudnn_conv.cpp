#include "backends/cuda/cudnn_conv.hpp"

#include <cudnn.h>

#include <array>
#include <cstdio>

#include "backends/cuda/check.hpp"
#include "backends/cuda/kernels.hpp"

namespace bitplan::cuda {
namespace {

// Algorithms whose workspace exceeds this are passed over (PyTorch's cudnn.benchmark has
// no cap; 256 MiB keeps every layer's plan next to its rotated buffer sets on an 80 GB GPU).
constexpr std::size_t kMaxWorkspaceBytes = std::size_t{256} << 20;

const char* algorithm_name(cudnnConvolutionFwdAlgo_t algo) {
  static constexpr std::array<const char*, 8> names = {
      "IMPLICIT_GEMM", "IMPLICIT_PRECOMP_GEMM", "GEMM", "DIRECT", "FFT", "FFT_TILING",
      "WINOGRAD",      "WINOGRAD_NONFUSED"};
  const auto i = static_cast<std::size_t>(algo);
  return i < names.size() ? names[i] : "unknown";
}

// NOT_SUPPORTED and BAD_PARAM while planning mean "cuDNN has no kernel for this": the
// profile records the shape as unsupported with the reason. Anything else is a failure.
void check_cudnn(cudnnStatus_t status, const std::string& action) {
  if (status == CUDNN_STATUS_SUCCESS) return;
  const std::string text = action + ": " + cudnnGetErrorString(status);
  if (status == CUDNN_STATUS_NOT_SUPPORTED || status == CUDNN_STATUS_BAD_PARAM)
    throw Unsupported(text + ": cuDNN " + cudnn_runtime_version() +
                      " must offer a forward convolution for the shape and types");
  throw ProfileError(text + ": the cuDNN call must succeed");
}

cudnnHandle_t handle_of(const GpuContext& gpu) {
  std::shared_ptr<void>& slot = gpu.cudnn_slot();
  if (!slot) {
    cudnnHandle_t handle = nullptr;
    check_cudnn(cudnnCreate(&handle), "creating the cuDNN handle");
    slot =
        std::shared_ptr<void>(handle, [](void* h) { cudnnDestroy(static_cast<cudnnHandle_t>(h)); });
    check_cudnn(cudnnSetStream(handle, gpu.stream()), "binding the cuDNN handle to the stream");
  }
  return static_cast<cudnnHandle_t>(slot.get());
}

struct Types {
  cudnnDataType_t data, compute, output;
  cudnnMathType_t math;
  const char* text;
};

Types types_of(Precision p) {
  switch (p) {
    case Precision::fp32:
      // FMA math: true fp32, TF32 off, as the GEMM entries (CUBLAS_COMPUTE_32F).
      return {CUDNN_DATA_FLOAT, CUDNN_DATA_FLOAT, CUDNN_DATA_FLOAT, CUDNN_FMA_MATH,
              "fp32, TF32 off"};
    case Precision::fp16:
      return {CUDNN_DATA_HALF, CUDNN_DATA_FLOAT, CUDNN_DATA_HALF, CUDNN_TENSOR_OP_MATH,
              "fp16 in/out, fp32 accumulate"};
    case Precision::bf16:
      return {CUDNN_DATA_BFLOAT16, CUDNN_DATA_FLOAT, CUDNN_DATA_BFLOAT16, CUDNN_TENSOR_OP_MATH,
              "bf16 in/out, fp32 accumulate"};
    case Precision::int8:
      return {CUDNN_DATA_INT8, CUDNN_DATA_INT32, CUDNN_DATA_FLOAT, CUDNN_TENSOR_OP_MATH,
              "s8 in, int32 accumulate, fp32 out (INT8_EXT_CONFIG)"};
    default:
      break;
  }
  throw Unsupported("planning a cuDNN conv at " + to_string(p) +
                    ": cudnn_conv_declines must have declined it");
}

}  // namespace

std::optional<std::string> cudnn_conv_declines(const LayerShape& shape, Precision p) {
  if (p == Precision::fp8_e4m3 || p == Precision::fp8_e4m3_chained)
    return "cuDNN conv at " + to_string(p) +
           ": cuDNN's convolution API (cudnnConvolutionForward) has no fp8 type; fp8 "
           "convolutions need its graph API, which this backend does not use yet";
  if (p == Precision::w4a16 || p == Precision::w8a16)
    return "cuDNN conv at " + to_string(p) + ": cuDNN has no integer weight-only convolution";
  if (p == Precision::int8_chained)
    return std::string(
        "cuDNN conv at int8_chained: its legacy int8 convolution writes fp32 sums here, and "
        "requantizing them into the reader's int8 codes would be a separate pass, which is the "
        "int8 entry; a fused int8 output needs cuDNN's graph API");
  if (p == Precision::int8 && ((shape.c / shape.groups) % 4 != 0 || shape.k % 4 != 0))
    return "cuDNN int8 conv with " + std::to_string(shape.c / shape.groups) +
           " input channels per group and k=" + std::to_string(shape.k) +
           ": INT8_EXT_CONFIG needs both multiples of 4";
  return std::nullopt;
}

std::string cudnn_runtime_version() {
  const std::size_t v = cudnnGetVersion();  // major * 10000 + minor * 100 + patch (cuDNN 9)
  return std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." +
         std::to_string(v % 100);
}

struct CudnnConv::Plan {
  cudnnHandle_t handle = nullptr;
  cudnnTensorDescriptor_t x = nullptr, y = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  cudnnConvolutionFwdAlgo_t algo{};
  DeviceBuffer workspace;
  // Asymmetric padding (TF "SAME" at stride 2: one row and column after, none before):
  // cudnnSetConvolution2dDescriptor takes one pad per dimension, so the input is copied into
  // a zero-bordered buffer and cuDNN runs the unpadded conv on it.
  std::optional<LayerShape> explicit_pad;
  DeviceBuffer padded_input;
  std::size_t input_element_bytes = 0;
  cudaStream_t stream = nullptr;
  std::size_t output_bytes = 0;
  std::string description;

  ~Plan() {
    if (conv) cudnnDestroyConvolutionDescriptor(conv);
    if (w) cudnnDestroyFilterDescriptor(w);
    if (y) cudnnDestroyTensorDescriptor(y);
    if (x) cudnnDestroyTensorDescriptor(x);
  }
};

CudnnConv::CudnnConv(const GpuContext& gpu, const LayerShape& s, Precision precision)
    : plan_(std::make_unique<Plan>()) {
  if (auto why = cudnn_conv_declines(s, precision)) throw Unsupported(*why);
  const Types t = types_of(precision);
  Plan& p = *plan_;
  p.handle = handle_of(gpu);
  p.output_bytes = t.output == CUDNN_DATA_FLOAT ? 4 : 2;
  p.input_element_bytes = t.data == CUDNN_DATA_INT8 ? 1 : t.data == CUDNN_DATA_FLOAT ? 4 : 2;
  p.stream = gpu.stream();
  // The shape cuDNN is asked for: `s` itself, or its explicitly padded input with no padding.
  LayerShape c = s;
  if (s.pad_top != s.pad_bottom || s.pad_left != s.pad_right) {
    p.explicit_pad = s;
    c.h += s.pad_top + s.pad_bottom;
    c.w += s.pad_left + s.pad_right;
    c.pad_top = c.pad_bottom = c.pad_left = c.pad_right = 0;
    p.padded_input =
        DeviceBuffer(static_cast<std::size_t>(c.input_elements()) * p.input_element_bytes);
  }
  const auto i = [](std::int64_t v) { return static_cast<int>(v); };
  check_cudnn(cudnnCreateTensorDescriptor(&p.x), "creating a cuDNN tensor descriptor");
  check_cudnn(cudnnCreateTensorDescriptor(&p.y), "creating a cuDNN tensor descriptor");
  check_cudnn(cudnnCreateFilterDescriptor(&p.w), "creating a cuDNN filter descriptor");
  check_cudnn(cudnnCreateConvolutionDescriptor(&p.conv), "creating a cuDNN conv descriptor");
  const std::string key = layer_key(s);
  check_cudnn(cudnnSetTensor4dDescriptor(p.x, CUDNN_TENSOR_NHWC, t.data, i(c.batch), i(c.c), i(c.h),
                                         i(c.w)),
              "describing the input of " + key);
  check_cudnn(cudnnSetFilter4dDescriptor(p.w, t.data, CUDNN_TENSOR_NHWC, i(s.k), i(s.c / s.groups),
                                         i(s.r), i(s.s)),
              "describing the weights of " + key);
  check_cudnn(cudnnSetConvolution2dDescriptor(p.conv, i(c.pad_top), i(c.pad_left), i(s.stride_h),
                                              i(s.stride_w), i(s.dilation_h), i(s.dilation_w),
                                              CUDNN_CROSS_CORRELATION, t.compute),
              "describing the convolution " + key);
  check_cudnn(cudnnSetConvolutionGroupCount(p.conv, i(s.groups)), "setting the groups of " + key);
  check_cudnn(cudnnSetConvolutionMathType(p.conv, t.math), "setting the math type of " + key);
  int n = 0, k = 0, h = 0, w = 0;
  check_cudnn(cudnnGetConvolution2dForwardOutputDim(p.conv, p.x, p.w, &n, &k, &h, &w),
              "computing the output shape of " + key);
  if (n != s.batch || k != s.k || h != s.out_h() || w != s.out_w())
    throw ProfileError("planning the cuDNN conv " + key + ": cuDNN's output shape " +
                       std::to_string(n) + "x" + std::to_string(k) + "x" + std::to_string(h) + "x" +
                       std::to_string(w) + " must equal the key's");
  check_cudnn(cudnnSetTensor4dDescriptor(p.y, CUDNN_TENSOR_NHWC, t.output, n, k, h, w),
              "describing the output of " + key);

  // Once, here: cuDNN times every algorithm it has for the shape (on buffers it allocates)
  // and returns them fastest first; the first that ran and fits the workspace cap is kept.
  std::array<cudnnConvolutionFwdAlgoPerf_t, CUDNN_CONVOLUTION_FWD_ALGO_COUNT> found{};
  int count = 0;
  check_cudnn(cudnnFindConvolutionForwardAlgorithm(p.handle, p.x, p.w, p.conv, p.y,
                                                   int(found.size()), &count, found.data()),
              "finding a cuDNN algorithm for " + key + " at " + to_string(precision));
  const cudnnConvolutionFwdAlgoPerf_t* best = nullptr;
  for (int a = 0; a < count && !best; ++a)
    if (found[a].status == CUDNN_STATUS_SUCCESS && found[a].memory <= kMaxWorkspaceBytes)
      best = &found[a];
  if (!best)
    throw Unsupported("planning the cuDNN conv " + key + " at " + to_string(precision) +
                      ": cuDNN " + cudnn_runtime_version() + " found " + std::to_string(count) +
                      " algorithms, none of which runs within a " +
                      std::to_string(kMaxWorkspaceBytes >> 20) +
                      " MiB workspace: one must, for the shape and types");
  p.algo = best->algo;
  // The math type the timed algorithm ran with (it may differ from the one asked for), except
  // that fp32 stays on FMA math: DEFAULT_MATH would let Hopper use TF32.
  if (t.math != CUDNN_FMA_MATH)
    check_cudnn(cudnnSetConvolutionMathType(p.conv, best->mathType), "setting the math type");
  p.workspace = DeviceBuffer(best->memory);
  p.description = "cuDNN " + cudnn_runtime_version() + " cudnnConvolutionForward " +
                  algorithm_name(best->algo) + " (NHWC, " + t.text +
                  (best->mathType == CUDNN_TENSOR_OP_MATH ||
                           best->mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION
                       ? ", tensor ops"
                       : "") +
                  ", workspace " + std::to_string(best->memory) + " B" +
                  (p.explicit_pad ? ", after a zero-padding copy of the input" : "") +
                  "; cuDNN's own times:";
  // What cudnnFind measured (one run each, its own buffers): set against the profiler's
  // median, it tells a slow kernel from a slow call.
  for (int a = 0, listed = 0; a < count && listed < 3; ++a) {
    if (found[a].status != CUDNN_STATUS_SUCCESS) continue;
    char us[32];
    std::snprintf(us, sizeof us, "%.1f", double(found[a].time) * 1000.0);
    p.description +=
        std::string(listed++ ? "," : "") + " " + algorithm_name(found[a].algo) + " " + us + " us";
  }
  p.description += ")";
}

CudnnConv::~CudnnConv() = default;

void CudnnConv::run(const void* x, const void* w, void* y) const {
  const Plan& p = *plan_;
  const float alpha = 1.0f, beta = 0.0f;
  if (p.explicit_pad) {
    pad_nhwc(x, p.input_element_bytes, *p.explicit_pad, p.padded_input.get(), p.stream);
    x = p.padded_input.get();
  }
  check_cudnn(cudnnConvolutionForward(p.handle, &alpha, p.x, x, p.w, w, p.conv, p.algo,
                                      p.workspace.get(), p.workspace.bytes(), &beta, p.y, y),
              "running cudnnConvolutionForward");
}

const std::string& CudnnConv::description() const {
  return plan_->description;
}

std::size_t CudnnConv::output_element_bytes() const {
  return plan_->output_bytes;
}

}  // namespace bitplan::cuda
