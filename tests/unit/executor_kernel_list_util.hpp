// What the low-bit kernels' kernel-list tests build their questions from (executor_quant_w4a32,
// _w4a8, _w3a8, _w2a8): a layer's quantization from spec texts, a MatMul layer, and a CPU
// target of a given oneDNN ISA.
#pragma once

#include <string>

#include "backends/device.hpp"
#include "executor/kernel_list.hpp"
#include "executor/quant/plan.hpp"
#include "executor/quant/quantizer.hpp"

namespace bitplan::testing {

inline LayerQuant layer_quant(const std::string& weights, const std::string& activations,
                              bool dynamic) {
  LayerQuant q;
  q.weights = parse_quant_spec(weights);
  q.activations = parse_quant_spec(activations);
  q.dynamic = dynamic;
  return q;
}

inline KernelLayer matmul_layer() {
  KernelLayer layer;
  layer.name = "fc";
  layer.op_type = "MatMul";
  return layer;
}

inline KernelTarget onednn_target(const std::string& onednn_isa) {
  return {"onednn", CpuCapabilities::of_onednn_isa(onednn_isa)};
}

}  // namespace bitplan::testing
