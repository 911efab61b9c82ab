// The second moment of each quantizable layer's input, as its dot products see it: the
// Hessian GPTQ (executor/quant/gptq.hpp) compensates rounding errors through.
//
// A layer computes y = W x for every input vector x it reduces over: a row of a MatMul or
// Gemm input, or a Conv window (the group's input channels times the kernel positions, in
// the weight's [C/g, k...] order, zeros where the window covers padding). The squared error
// a weight row w picks up when it becomes q is, summed over the calibration vectors,
//   E(q) = Σ_x ((w - q)·x)² = (w - q)ᵀ H (w - q),   H = Σ_x x xᵀ,
// so H (GPTQ's 2 X Xᵀ without the constant, which no step depends on) is all the data a
// layer needs. A Conv with g groups has one H per group, since each group reads its own
// channels. Layers that read the same tensor the same way (q/k/v projections, gate/up)
// share one H: input_hessian_key names that.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "data/dataset.hpp"
#include "executor/quant/plan.hpp"

namespace bitplan {

struct InputHessian {
  std::int64_t groups = 1;   // Conv groups (1 for Gemm and MatMul)
  std::int64_t size = 0;     // K: length of one input vector of one group
  std::int64_t vectors = 0;  // input vectors accumulated (per group)
  // [groups][size][size] row-major, symmetric; float is enough for sums of ~10^5 products
  // (each batch's sum is one GEMM, batches add ~100 partial sums).
  std::vector<float> values;
  // [groups][size]: Σ x over the same vectors, so sums / vectors is the mean input vector
  // that bias correction (methods.hpp) multiplies the weights' rounding error with.
  std::vector<double> sums;
  // [groups][size]: Σ |x|, min x and max x over the same vectors: the per-channel input
  // magnitudes AWQ weighs input channels by (awq.hpp), and the ranges SmoothQuant divides
  // (smoothquant.hpp). A channel no vector reached has min +inf and max -inf.
  std::vector<double> abs_sums;
  std::vector<float> mins, maxs;

  std::span<const double> group_sums(std::int64_t g) const {
    return std::span<const double>(sums).subspan(static_cast<std::size_t>(g * size),
                                                 static_cast<std::size_t>(size));
  }
  std::span<const double> group_abs_sums(std::int64_t g) const {
    return std::span<const double>(abs_sums).subspan(static_cast<std::size_t>(g * size),
                                                     static_cast<std::size_t>(size));
  }
  std::span<const float> group(std::int64_t g) const {
    return std::span<const float>(values).subspan(static_cast<std::size_t>(g * size * size),
                                                  static_cast<std::size_t>(size * size));
  }
};

// Layers with the same key share one InputHessian: the input tensor, and for a Conv its
// window (kernel, strides, pads, dilations, groups).
std::string input_hessian_key(const Graph& graph, const QuantizableLayer& layer);

// Why the input Hessian of `layer` cannot be formed ("" when it can): ConvTranspose
// (its products scatter rather than reduce over a window of the input).
std::string input_hessian_refusal(const QuantizableLayer& layer);

// Adds the input vectors of one batch of `layer`'s input to `h` (sized on first use).
void accumulate_input_hessian(const Graph& graph, const QuantizableLayer& layer,
                              const Tensor& input, InputHessian& h);

// The reference accumulate_input_hessian follows: each input vector built element by element
// and added as x xᵀ in double. Slow; for tests.
InputHessian input_hessian_reference(const Graph& graph, const QuantizableLayer& layer,
                                     const Tensor& input);

// The Hessians of `layers` (keyed by input_hessian_key) over the calibration samples, in one
// pass of the fp32 graph.
std::map<std::string, InputHessian> collect_input_hessians(
    const Graph& graph, const Dataset& dataset, std::span<const std::int64_t> indices,
    const std::vector<QuantizableLayer>& layers, std::int64_t batch);

// The weights of a layer as output rows of K reduction values each, per group of rows
// sharing one Hessian (GPTQ and AdaRound work on these rows): Conv [O, C/g, k...] and
// Gemm-transB [N, K] hold rows contiguously; MatMul and Gemm [K, N] hold them as columns.
struct WeightRows {
  std::int64_t rows = 0, k = 0, groups = 1;
  bool rows_contiguous = true;
  std::int64_t rows_per_group() const { return rows / groups; }
  // The flat index of reduction value c of row r in the weight tensor.
  std::int64_t flat(std::int64_t r, std::int64_t c) const {
    return rows_contiguous ? r * k + c : c * rows + r;
  }
};

// The rows of `weights` of `layer` against a Hessian of `groups` groups of `size` values.
// Fails (invalid input, prefixed by `action`) when they do not fit, and (unsupported) on a
// layout that is not rows of output channels.
WeightRows weight_rows(const Tensor& weights, const QuantizableLayer& layer, std::int64_t groups,
                       std::int64_t size, const std::string& action);

// Disk cache (binary: magic, groups, size, vectors, values, sums, abs_sums, mins, maxs). read fails
// (invalid input) on a damaged file, naming it.
void write_input_hessian(const std::filesystem::path& path, const InputHessian& h);
InputHessian read_input_hessian(const std::filesystem::path& path);

}  // namespace bitplan
