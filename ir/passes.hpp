// Structural rewrites applied at import, before anything is executed. They need no kernels:
// constant folding (which runs ops) is done by the executor's planner.
#pragma once

#include <string>
#include <vector>

#include "ir/graph.hpp"

namespace bitplan {

struct SimplifyReport {
  int removed_identity = 0;        // Identity / Dropout (inference) dropped
  int folded_batchnorm = 0;        // BatchNormalization folded into Conv / Gemm
  int fused_layernorm = 0;         // decomposed LayerNorm recognised
  int fused_gelu = 0;              // decomposed erf-GELU recognised
  int fused_activation = 0;        // Relu / Clip folded into the producing Conv/Gemm/MatMul
  std::vector<std::string> notes;  // one line per rewrite, naming the nodes
};

SimplifyReport simplify(Graph& graph);

// Individual passes (simplify runs them in this order).
int remove_identities(Graph& graph);
int fold_batchnorm(Graph& graph, std::vector<std::string>& notes);
int fuse_layernorm(Graph& graph, std::vector<std::string>& notes);
int fuse_gelu(Graph& graph, std::vector<std::string>& notes);
// Marks Conv/Gemm/MatMul nodes whose only reader is a Relu or a constant-bound Clip with a
// "bitplan_activation" attribute (kernels apply it as a post-op) and removes the activation.
// The layer keeps its name; the activation's output name becomes the layer's output.
int fuse_activations(Graph& graph, std::vector<std::string>& notes);

// Not part of simplify: an fp32-inference rewrite ExecutionPlan applies under
// PlanOptions::matmul_epilogues (a quantization plan's layers must stay separate nodes).
// Folds what follows a MatMul into the MatMul, which oneDNN applies as it writes the output:
// a Div/Mul by a scalar constant ("bitplan_alpha"; attention's 1/sqrt(d), rounded once as
// x * (1/d) instead of x / d), or else an Add of a constant [N] vector when B is a constant
// [K, N] matrix (a third input, "bitplan_fused_bias"), then a Gelu ("bitplan_activation"
// Gelu / GeluTanh). Each folded node's output name becomes the MatMul's.
int fuse_matmul_epilogues(Graph& graph, std::vector<std::string>& notes);

}  // namespace bitplan
