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
};

// Reads and checks a workloads file (format version 1): every layer's key must equal the
// key of its fields, so the profile and the cost model agree on what was measured.
Workloads read_workloads(const std::string& path);

}  // namespace bitplan::cuda
