// One layer (a workload key) at one precision, ready to run on the GPU: its buffers filled
// with random data, its kernels chosen. Construction throws Unsupported with the reason
// when the backend has no way to run the combination; it never falls back silently.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "backends/cuda/precision.hpp"
#include "backends/cuda/runtime.hpp"
#include "backends/cuda/workloads.hpp"

namespace bitplan::cuda {

class LayerRun {
 public:
  virtual ~LayerRun() = default;
  // Runs the layer's kernels on buffer set `set % sets()` (sets rotate so that the inputs
  // and weights of consecutive runs are not in L2 already).
  virtual void run(int set) = 0;
  int sets() const { return sets_; }
  const std::string& implementation() const { return implementation_; }
  std::int64_t bytes_per_set() const { return bytes_per_set_; }

 protected:
  int sets_ = 1;
  std::string implementation_;
  std::int64_t bytes_per_set_ = 0;
};

// How a weight-only layer (w4a16, w8a16) runs: bitplan's kernel on the packed weights, or
// the weights dequantised to fp16 and a cuBLASLt fp16 GEMM (the larger-m option).
enum class WeightOnlyPath { own_kernel, dequantize_then_cublaslt };

struct LayerRunOptions {
  // Buffer sets are added until they exceed this many bytes together (>= 2 x L2 on the
  // profile; 0 for a single set, as the chain validation uses).
  std::int64_t rotate_bytes = 0;
  int max_sets = 32;
  WeightOnlyPath weight_only_path = WeightOnlyPath::own_kernel;
  // A conv runs on the conv_kernels() entry of this name; empty: on the first entry that
  // neither declines it nor fails to plan it.
  std::string conv_kernel;
  // The rank of the cuBLASLt algorithm a GEMM runs among its heuristic's offers (LtGemm).
  int gemm_algorithm = 0;
};

// Runs a gemm layer on cuBLASLt (or the W4A16 kernel), a conv layer on a conv_kernels()
// entry. Throws Unsupported with every entry's reason when none runs the layer.
std::unique_ptr<LayerRun> make_layer_run(const GpuContext& gpu, const LayerShape& shape,
                                         Precision precision, const LayerRunOptions& options);

// The backend's convolution kernels, in the order make_layer_run tries them (oneDNN's
// cpu_convolution_list.cpp is the model): cuDNN, then bitplan's depthwise kernel, then
// bitplan's im2col + cuBLASLt GEMM. The profiler times every entry that runs a shape and
// keeps the fastest (profiler.cpp), so the order only decides where nothing is timed.
struct ConvKernel {
  std::string_view name;  // "cudnn", "bitplan_depthwise", "bitplan_im2col_gemm"
  // Why the kernel does not run `shape` at `precision` (action, value, rule), or nullopt.
  // Planning can still refuse a shape (cuDNN finds no algorithm, cuBLASLt's alignment
  // rules): make then throws Unsupported.
  std::optional<std::string> (*declines)(const LayerShape& shape, Precision precision);
  std::unique_ptr<LayerRun> (*make)(const GpuContext& gpu, const LayerShape& shape,
                                    Precision precision, const LayerRunOptions& options);
};
std::span<const ConvKernel> conv_kernels();

// Whether the profile and the chains time several of cuBLASLt's algorithms for a GEMM at p
// and keep the fastest: int8, whose first heuristic choice was measured up to 1.9x slower
// than another on an H100 (docs/cuda_backend.md).
bool times_gemm_algorithms(Precision p);

// A conversion of `elements` activations between two element types (scale applied).
std::unique_ptr<LayerRun> make_conversion_run(const GpuContext& gpu, std::int64_t elements,
                                              ElementType from, ElementType to,
                                              std::int64_t rotate_bytes, int max_sets = 32);

// One of the model's other ops (workloads.hpp, OpKind) with its activations in `type` (fp32,
// fp16 or bf16); a bmm that cuBLASLt takes no algorithm for runs on bmm_direct (kernels.hpp),
// and its implementation text says why.
std::unique_ptr<LayerRun> make_op_run(const GpuContext& gpu, const OpShape& shape, ElementType type,
                                      std::int64_t rotate_bytes, int max_sets = 32);

}  // namespace bitplan::cuda
