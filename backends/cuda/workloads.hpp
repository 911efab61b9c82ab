// Layer shapes to time: read from the workloads JSON that `bitplan profile --emit-workloads`
// (or tools/standard_models.py) writes, or parsed back from a layer key.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "backends/cuda/precision.hpp"

namespace bitplan::cuda {

enum class LayerOp { conv, gemm };

// conv: NCHW semantics (the profiler stores activations NHWC), weights [k][c/groups][r][s].
// gemm: Y[m,n] = X[m,k] * W[k,n]; m already includes the batch and any leading dims.
struct LayerShape {
  LayerOp op = LayerOp::gemm;
  // gemm
  std::int64_t m = 0, n = 0, k = 0;
  // conv (k above is the output channel count)
  std::int64_t batch = 0, c = 0, h = 0, w = 0, r = 0, s = 0;
  std::int64_t stride_h = 1, stride_w = 1;
  std::int64_t pad_top = 0, pad_left = 0, pad_bottom = 0, pad_right = 0;
  std::int64_t dilation_h = 1, dilation_w = 1, groups = 1;

  std::int64_t out_h() const;
  std::int64_t out_w() const;
  std::int64_t input_elements() const;
  std::int64_t output_elements() const;
  std::int64_t weight_elements() const;
  double flops() const;  // 2 * multiply-adds
  bool depthwise() const { return op == LayerOp::conv && groups > 1 && groups == c && k == c; }
};

// The canonical key: conv:n{N}:c{C}:h{H}:w{W}:k{K}:r{R}:s{S}:st{sh}x{sw}:p{t}x{l}x{b}x{r}:
// d{dh}x{dw}:g{G} and gemm:m{M}:n{N}:k{K}. Identical keys are one measurement.
std::string layer_key(const LayerShape& shape);
// Throws ProfileError naming the key and the expected format when it does not parse.
LayerShape parse_layer_key(const std::string& key);

// A model's other ops (backends/workload.hpp, "other ops"): what a memory-bound kernel, or
// a batched GEMM of two activations, takes. Every op kind has one kernel (kernels.hpp):
//   eltwise  y[i] = sum_j x_j[i mod inputs[j]]  (broadcast by index, as a per-channel bias in
//            NHWC or a row vector is)
//   reduce   y[r] = mean of x[r][0..cols)
//   rownorm  y[r][c] = softmax of x[r][0..cols)
//   copy     y[i] = x[i mod inputs[0]], i < outputs
//   bmm      batch x (Y[m][n] = X[m][k] * W[n][k]^T) on cuBLASLt
enum class OpKind { eltwise, reduce, rownorm, copy, bmm };

struct OpShape {
  OpKind kind = OpKind::eltwise;
  std::int64_t outputs = 0;                     // eltwise, copy
  std::vector<std::int64_t> inputs;             // eltwise: each input; copy: one total
  std::int64_t rows = 0, cols = 0;              // reduce, rownorm
  std::int64_t batch = 0, m = 0, n = 0, k = 0;  // bmm
  std::int64_t elements_read() const;
  std::int64_t elements_written() const;
};

// eltwise:o{N}:i{a}x{b}..., reduce:r{R}:c{C}, rownorm:r{R}:c{C}, copy:i{I}:o{O},
// bmm:b{B}:m{M}:n{N}:k{K}.
std::string op_key(const OpShape& shape);
// Throws ProfileError naming the key and the expected formats when it does not parse.
OpShape parse_op_key(const std::string& key);
// Whether `key` names an op (rather than a layer): by its first field.
bool is_op_key(const std::string& key);

struct WorkloadOp {
  std::string name, op_type, key;
  std::string unsupported;  // non-empty: the host found no kernel class for it; key empty
  OpShape shape;
  std::size_t layers_before = 0;  // of the file's layers, how many run before it
};

struct WorkloadLayer {
  std::string name;
  std::string key;
  LayerShape shape;
};

struct Workloads {
  std::string source;  // file path, for messages
  std::string model;
  std::int64_t batch = 0;
  std::vector<Precision> precisions;
  std::vector<WorkloadLayer> layers;
  std::vector<WorkloadOp> ops;  // empty in files written before ops were emitted
};

// Reads and checks a workloads file (format version 1): every layer's key must equal the
// key of its fields, so the profile and the cost model agree on what was measured.
Workloads read_workloads(const std::string& path);

}  // namespace bitplan::cuda
