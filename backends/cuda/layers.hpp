// One layer (a workload key) at one precision, ready to run on the GPU: its buffers filled
// with random data, its kernels chosen. Construction throws Unsupported with the reason
// when the backend has no way to run the combination; it never falls back silently.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
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

enum class W4Path { own_kernel, dequantize_then_cublaslt };

struct LayerRunOptions {
  // Buffer sets are added until they exceed this many bytes together (>= 2 x L2 on the
  // profile; 0 for a single set, as the chain validation uses).
  std::int64_t rotate_bytes = 0;
  int max_sets = 32;
  W4Path w4_path = W4Path::own_kernel;
};

std::unique_ptr<LayerRun> make_layer_run(const GpuContext& gpu, const LayerShape& shape,
                                         Precision precision, const LayerRunOptions& options);

// A conversion of `elements` activations between two element types (scale applied).
std::unique_ptr<LayerRun> make_conversion_run(const GpuContext& gpu, std::int64_t elements,
                                              ElementType from, ElementType to,
                                              std::int64_t rotate_bytes, int max_sets = 32);

}  // namespace bitplan::cuda
