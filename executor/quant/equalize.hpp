// Cross-layer equalization (CLE; Nagel et al. 2019, "Data-Free Quantization Through Weight
// Equalization and Bias Correction", section 4.1): an fp32 graph pass that evens out the
// per-channel weight ranges of consecutive layers so per-tensor weight quantization loses less.
//
// For a pair layer1 -> act -> layer2, where layer1 is a Conv (grouped and depthwise included) or
// Gemm with constant weights, act is ReLU, Clip(0, inf), Identity or nothing, and layer2 a
// Conv/Gemm with constant weights that is the only reader, output channel i of layer1 (weights
// and bias) is divided by s_i and input channel i of layer2 multiplied by s_i. Since
// act(x / s) = act(x) / s for s > 0 (positive homogeneity), layer2 sees the same products:
//
//   s_i = sqrt(r1_i * r2_i) / r2_i = sqrt(r1_i / r2_i)
//
// with r1_i = max |w| over layer1's output channel i and r2_i = max |w| over layer2's input
// channel i (for a grouped layer2, the weights of its group that read channel i). Afterwards
// both ranges are sqrt(r1_i * r2_i). A layer in the middle of a chain takes part in two pairs,
// so the pass sweeps over all pairs until no scale moves (max |log s_i| below the tolerance)
// or max_sweeps is reached, as DFQ does.
//
// ReLU6 (Clip(0, 6)) is not positively homogeneous: the clip at 6 would have to move to 6 / s_i
// per channel, which ONNX Clip cannot express. Such pairs are skipped with the reason, unless
// relu6_to_relu replaces every ReLU6 before the pass (DFQ section 5 does this for MobileNetV2;
// it changes the fp32 model's outputs, see docs/quantization.md).
//
// The graph is changed in place: initializers that are modified are cloned first (Tensor
// copies share data), and an initializer read by a node outside the pair is left alone (the
// pair is skipped). Works on graphs as load_model leaves them (activations fused into the
// layer as bitplan_activation) and on graphs with separate activation nodes.
#pragma once

#include <string>
#include <vector>

#include "ir/graph.hpp"

namespace bitplan {

struct EqualizeOptions {
  bool relu6_to_relu = false;  // replace ReLU6 / Clip(0, c) with ReLU first (changes outputs)
  int max_sweeps = 20;         // sweeps over the chain of pairs at most
  double tolerance = 1e-4;     // stop once every |log s_i| of a sweep is below this
};

struct EqualizedPair {
  std::string first;       // layer1 (ONNX node name)
  std::string second;      // layer2
  std::string activation;  // between them: "Relu", "Identity", "none"...
  double max_range_ratio_before =
      1;  // max_i max(r1_i, r2_i) / min(r1_i, r2_i), zero ranges skipped
  double max_range_ratio_after = 1;
};

struct SkippedPair {
  std::string first;   // the Conv/Gemm whose output could not be equalized
  std::string second;  // the reader that would have been layer2; empty when there is none
  std::string reason;
};

struct EqualizationReport {
  std::vector<EqualizedPair> equalized;
  std::vector<SkippedPair> skipped;
  std::vector<std::string> relu6_replaced;  // layers / Clip nodes turned into ReLU
  int sweeps = 0;
  double last_max_log_scale = 0;  // max |log s_i| of the last sweep
  bool converged = true;

  // One line per pair, for logs and the CLI.
  std::vector<std::string> lines() const;
};

// Equalizes every eligible pair of `graph` in place and says which pairs it equalized and why
// the others were skipped. Fails (invalid input) for options out of range.
EqualizationReport equalize_cross_layer(Graph& graph, const EqualizeOptions& options = {});

}  // namespace bitplan
