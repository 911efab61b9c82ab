// Layer workloads: what a latency backend times, independent of weight values.
//
// Latency depends on a layer's shapes and precision, not on its weights, so a quantizable
// layer (Conv, Gemm, MatMul with a constant weight) is reduced to its geometry at one batch
// size and given a canonical key that profiles, cost models and the CUDA profiler share:
//
//   conv:n{N}:c{C}:h{H}:w{W}:k{K}:r{R}:s{S}:st{sh}x{sw}:p{top}x{left}x{bottom}x{right}:d{dh}x{dw}:g{G}
//   gemm:m{M}:n{N}:k{K}          Y[M,N] = X[M,K] * W[K,N]; M holds the batch and leading dims
//
// The model's other ops - every executed node that is not such a layer and runs a kernel
// (views such as Reshape run none; constant subgraphs were folded when planning) - are reduced
// to what a memory-bound kernel's time depends on, with keys of their own:
//
//   eltwise:o{N}:i{a}x{b}...     N outputs from inputs of a, b, ... elements (broadcast)
//   reduce:r{R}:c{C}             R outputs, each from C inputs (ReduceMean, pooling)
//   rownorm:r{R}:c{C}            R rows of C normalised in place (Softmax, LayerNormalization)
//   bmm:b{B}:m{M}:n{N}:k{K}      B products of two activations (attention's Q.K^T and P.V)
//   copy:i{I}:o{O}               O outputs gathered from I inputs (Transpose, Concat, Gather)
//
// `bitplan profile --emit-workloads` writes them as JSON (schema "bitplan_workloads": 1) for
// backends that run elsewhere (backends/cuda's standalone profiler on a GPU machine).
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "executor/plan.hpp"
#include "ir/graph.hpp"

namespace bitplan {

struct LayerWorkload {
  std::string layer;  // ONNX node name
  std::string op;     // "conv" or "gemm"
  std::string key;
  // conv
  std::int64_t n = 0, c = 0, h = 0, w = 0, k = 0, r = 1, s = 1, groups = 1;
  std::int64_t stride_h = 1, stride_w = 1, dilation_h = 1, dilation_w = 1;
  std::int64_t pad_top = 0, pad_left = 0, pad_bottom = 0, pad_right = 0;
  std::int64_t out_h = 0, out_w = 0;
  // gemm
  std::int64_t m = 0, gemm_n = 0, gemm_k = 0;

  std::int64_t input_elements = 0, output_elements = 0;
  std::int64_t weight_elements = 0;
  std::int64_t macs = 0;
};

// The workloads of every quantizable layer of `graph` as `plan` (built from the same graph,
// at its batch size) executes them, in execution order. A 1-D Conv is described as a 2-D
// one with unit height; 3-D convolutions are refused (unsupported).
std::vector<LayerWorkload> layer_workloads(const Graph& graph, const ExecutionPlan& plan);

struct OpWorkload {
  std::string node;     // ONNX node name
  std::string op_type;  // ONNX op type
  std::string key;      // empty when unsupported
  // Non-empty: no kernel class above describes the op (an op type this list does not know):
  // its time is unknown, never guessed.
  std::string unsupported;
  // How many of layer_workloads' layers run before it: 0 before the first layer, i + 1 right
  // after layer i.
  std::size_t layers_before = 0;
};

// The other ops of `graph` as `plan` executes them, in execution order.
std::vector<OpWorkload> op_workloads(const Graph& graph, const ExecutionPlan& plan);

// JSON document for external profilers: {"bitplan_workloads": 1, "model", "batch",
// "precisions", "layers": [...], "ops": [...]}; written atomically.
void write_workloads_json(const std::filesystem::path& path, const std::string& model,
                          std::int64_t batch, const std::vector<std::string>& precisions,
                          const std::vector<LayerWorkload>& workloads,
                          const std::vector<OpWorkload>& ops);

}  // namespace bitplan
