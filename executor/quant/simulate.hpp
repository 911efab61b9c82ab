// Simulated quantization: a plan turned into a graph the fp32 executor runs.
//
//   fp32 Graph + QuantPlan  --QuantSimulator::build-->  Graph with
//     * each quantized layer's weight initializer replaced by its fake-quantized copy
//       (quantize -> dequantize in float; computed once per (layer, spec) and cached), and
//     * a bitplan::FakeQuant node in front of each quantized layer's input activation, with
//       the scale/zero point from calibration (static) or from each batch (dynamic).
//
// The same ExecutionPlan machinery then plans and runs it, so simulated and fp32 runs share
// every kernel but the fake quantization.
//
// One exception, so that the simulation computes what deployment computes: a layer whose
// spec has integer weights and dynamic per-token uint8 activations (W4g32A8t, W3A8t, W8A8t)
// is defined by integer arithmetic - exact int32 sums per group of K, then one float
// multiply-add per group (executor/kernels/per_token.hpp) - which fake quantization matches
// only up to the order of float sums. Where the CPU kernel list runs such a layer on a
// per-token kernel (W4A8, W3A8, W2A8, W8A8), the simulation runs it on that kernel too: every ISA
// path of those kernels gives the scalar definition's bits, so the result does not depend on
// the CPU, and simulated and real runs of such a layer agree bit for bit. (Before, on the
// 30-layer LLM, the last-bit differences crossed rounding boundaries of later layers' per-token
// grids: perplexity 38.7238 simulated against 38.7127 real.) Calibration runs once per (method,
// symmetry) over the calibration selection and is cached on disk, keyed by model hash + selection +
// method.
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <tuple>

#include "data/dataset.hpp"
#include "executor/kernel_list.hpp"
#include "executor/quant/adaround.hpp"
#include "executor/quant/awq.hpp"
#include "executor/quant/gptq.hpp"
#include "executor/quant/plan.hpp"
#include "executor/quant/smoothquant.hpp"

namespace bitplan {

// The samples calibration observes, and where its ranges are cached.
struct CalibrationData {
  struct Samples {
    std::shared_ptr<const Dataset> dataset;
    std::vector<std::int64_t> indices;
  };

  const Dataset* dataset = nullptr;
  std::vector<std::int64_t> indices;
  std::string selection_id;         // names the samples exactly (enters the cache key)
  std::filesystem::path cache_dir;  // empty: no disk cache
  std::int64_t batch = 64;
  // Without `dataset`: opens the samples on the first calibration that misses the cache, so
  // a run whose ranges are all cached never reads a separate calibration source.
  std::function<Samples()> open;
};

// The calibration data of the `dataset:` section `config`: its calibration selection of
// `dataset` (the evaluation samples), or of the separate source config.calibration.images,
// opened on first use and checked against `dataset`'s sample dims. The selection id names
// the source's files, so different sources never share a cache entry.
CalibrationData calibration_data(const DatasetConfig& config, const Dataset& dataset,
                                 std::filesystem::path cache_dir, std::int64_t batch);

// The same samples at `tokens` tokens, cut or zero-padded (data/dataset.hpp, token_window), for
// a token model planned at another sequence; `full`'s dataset, when it has one, must outlive
// the result. The selection id says so, so the two never share a cache entry.
CalibrationData token_window_calibration(const CalibrationData& full, std::int64_t tokens);

// Names the simulation's arithmetic: results measured on simulated graphs (the search's
// results database) are keyed by it, so a change in what some spec's simulation computes
// never mixes old and new measurements. 2: per-token integer specs on their kernels' sums.
// 3: signed 5- to 8-bit weights with per-token activations (W8A8t) too, on the W8A8 kernel.
inline constexpr int kSimulationVersion = 3;

class QuantSimulator {
 public:
  QuantSimulator(const Graph& graph, std::string model_hash, CalibrationData calibration);

  const Graph& fp32_graph() const { return graph_; }
  const std::vector<QuantizableLayer>& layers() const { return layers_; }

  // The graph simulating `plan` (layers absent from it stay fp32). `fuse` folds input
  // quantization into producing layers (same bits, less time); without it every layer's
  // output is its own, unquantized, which is what the per-layer debugger measures. Layers
  // with per-token integer specs compute their integer definition (above).
  Graph build(const QuantPlan& plan, bool fuse = true);

  // The graph running `plan` on this CPU's real kernels where the oneDNN kernel list
  // (executor/kernel_list.hpp) runs a layer's spec: integer kernels (int8_layers), bf16
  // kernels (bf16_layers), the W4A32 kernel on packed <= 4-bit weights (w4a32_layers) and
  // the W4A8 kernel on the same weights with per-token uint8 activations (w4a8_layers), the
  // W3A8 kernel on 3-bit weights with the same activations (w3a8_layers), the W2A8 kernel
  // on <= 2-bit weights with the same activations (w2a8_layers), the W8A8 kernel on signed
  // 5- to 8-bit weights with the same activations (w8a8_layers); every
  // other quantized layer is simulated, and `why_simulated` says why, layer by layer
  // (the list's reason, or the float kernel that runs it on the simulation's decompressed
  // weights).
  struct Int8Build {
    Graph graph;
    std::vector<std::string> int8_layers;
    std::vector<std::string> bf16_layers;
    std::vector<std::string> w4a32_layers;
    std::vector<std::string> w4a8_layers;
    std::vector<std::string> w3a8_layers;
    std::vector<std::string> w2a8_layers;
    std::vector<std::string> w8a8_layers;
    std::map<std::string, std::string> why_simulated;
    int chained_tensors = 0;        // activations passed between integer layers as codes
    int channels_last_tensors = 0;  // float activations kept channels-last between them
  };
  Int8Build build_int8(const QuantPlan& plan);

  // Calibrated ranges of every quantizable layer's input for one method, symmetry and
  // target width (mse and entropy choose the clipping for the grid they will feed);
  // computed on first use, then from memory or the disk cache.
  const CalibrationRanges& ranges(CalibrationMethod method, bool symmetric, int bits);
  // The calibrated range of `layer`'s input under `q` (its method, symmetry and width): what
  // the layer's static FakeQuant, the debugger and the exporters all use.
  const RangeObserver::Range& input_range(const QuantizableLayer& layer, const LayerQuant& q);

  // How GPTQ, AdaRound, AWQ and SmoothQuant run (part of their cache keys).
  GptqOptions gptq_options;
  AdaroundOptions adaround_options;
  AwqOptions awq_options;
  SmoothQuantOptions smoothquant_options;

  // The float weights `q`'s method rounds for `layer`: the model's, or, for a method that
  // scales the layer's input (awq), the weights with the input scales absorbed. Their
  // choose_weight_params are the grid the simulated weights lie on (kernels, exporters).
  const Tensor& method_float_weight(const QuantizableLayer& layer, const LayerQuant& q);
  // The per-channel scale `q`'s method divides the layer's input by (awq); empty for none.
  std::span<const float> input_scale(const QuantizableLayer& layer, const LayerQuant& q);
  // The fake-quantized weights of `layer` under `q` (spec, method; smoothquant: and
  // activations), exactly on the grid's levels: what build() gives a fake-quantized layer,
  // what the integer kernels' codes are made from, what the exporters code. Computed once per
  // (layer, spec, method), kept in memory, and for methods that read calibration data also
  // cached on disk (as codes, keyed by model, calibration selection, spec, method version and
  // options).
  const Tensor& quantized_weight(const QuantizableLayer& layer, const LayerQuant& q);
  // A layer's weights in a low-bit CPU kernel's layout (simulate.cpp).
  struct LowbitWeights;

 private:
  // The layer's input Hessian (hessian.hpp); the first call collects every layer's in one
  // pass over the calibration samples and caches each on disk.
  const InputHessian& input_hessian(const QuantizableLayer& layer);
  // Bias correction of `node` (layer's node in `g`) when `q` asks for it: its bias input
  // becomes bias + Δ (bias_correction.hpp), a new initializer of `g`.
  void correct_bias(Graph& g, Node& node, const QuantizableLayer& layer, const LayerQuant& q);
  // For a method that scales the layer's input: adds the inverse scales to `g` and returns
  // the Mul computing the scaled input from the layer's input (the caller wires and adds it).
  std::optional<Node> input_scaling_node(Graph& g, const QuantizableLayer& layer,
                                         const LayerQuant& q);
  // The calibration samples, opened on first use; fails (usage) without any.
  const Dataset& calibration_dataset(std::string_view purpose);
  Node fake_quant_node(const QuantizableLayer& layer, const LayerQuant& q);
  // When `host`'s kernel list runs `layer` under `q` on a per-token integer kernel (W4A8,
  // W3A8, W2A8, W8A8) and its weights pack: rewrites `node` (the layer's node in `g`) into that
  // kernel's node and returns true. Otherwise leaves `g` alone and returns false.
  bool simulate_with_integer_sums(const LayerQuant& q, const QuantizableLayer& layer,
                                  const KernelTarget& host, Graph& g, Node& node);
  // A layer's weights as the low-bit kernel of `path` reads them (codes, scales, offsets),
  // or why they cannot be (LowbitWeights::why), computed once per (layer, spec, method, path):
  // every build of a search's candidates installs the same tensors, so the kernels' packing
  // of them can be shared too.
  const LowbitWeights& lowbit_weights(const QuantizableLayer& layer, const LayerQuant& q,
                                      ExecutorPath path);
  Graph graph_;
  std::string model_hash_;
  CalibrationData calibration_;
  std::shared_ptr<const Dataset> opened_;  // what calibration_.open returned, once called
  std::vector<QuantizableLayer> layers_;
  std::map<std::tuple<CalibrationMethod, bool, int>, CalibrationRanges> ranges_;
  std::map<std::string, Tensor> weight_cache_;  // "<layer>|<spec>[|<method>]" -> weights
  std::map<std::string, std::shared_ptr<const LowbitWeights>> lowbit_cache_;  // + "|<path>"
  // Methods that scale the layer's input (same keys): the scaled float weights and scales.
  std::map<std::string, Tensor> scaled_weights_;
  std::map<std::string, std::vector<float>> input_scales_;
  std::map<std::string, RangeObserver::Range> smoothed_ranges_;  // smoothquant's inputs
  std::map<std::string, InputHessian> hessians_;                 // input_hessian_key -> Hessian
  // The most recent GPTQ factors by input_hessian_key (a few: each is K² doubles).
  std::vector<std::pair<std::string, std::shared_ptr<const GptqFactors>>> gptq_factors_;
};

// A static integer FakeQuant whose input is the only use of a Conv/Gemm/MatMul output
// becomes that layer's output epilogue (oneDNN post-ops computing the same bits, see
// append_fused_epilogue in executor/ops/onednn_common.hpp): the separate pass over the
// activation disappears. QuantSimulator::build applies it.
void fuse_fake_quant_into_producers(Graph& graph);

// Integer layers whose output is read only by integer layers of the same kind on one grid
// write those readers' 8-bit codes directly (attributes output_codes_* on the producer,
// input_is_codes on the readers; executor/ops/onednn_int8.cpp computes them): no float
// tensor, quantization pass or layout reorder between them. The simulation quantizes the
// same float value on the same grid, so the codes agree up to float rounding of the sums.
// Returns how many tensors became codes. QuantSimulator::build_int8 applies it.
int chain_int8_layers(Graph& graph);

// Float activations between integer convolutions stay channels-last (the layout their
// kernels read and write), through elementwise ops whose inputs all share that layout and
// shape (a ResNet's residual Add and ReLU); a reader needing plain NCHW gets a
// bitplan::ChannelsLastToPlain node in front. This removes the layout reorders around every
// integer convolution. Returns how many tensors stay channels-last. build_int8 applies it
// after chain_int8_layers. With `float_convs`, fp32 2-D Convs with constant weights take part
// too (executor/ops/onednn.cpp reads the same attributes): ExecutionPlan applies it for
// PlanOptions::channels_last_convs.
int keep_channels_last(Graph& graph, bool float_convs = false);

// Runs `graph` over the samples `indices` of `dataset` in batches of `batch` and hands
// `observe` the values of `tensors` (activation names, in that order) for each batch: the
// one pass every calibration statistic (ranges, input Hessians) is taken in.
void observe_activations(const Graph& graph, const Dataset& dataset,
                         std::span<const std::int64_t> indices,
                         const std::vector<std::string>& tensors, std::int64_t batch,
                         const std::function<void(const std::vector<Tensor>&)>& observe);

// Observes `tensors` (activation names) over `indices` with one observer each.
CalibrationRanges calibrate(const Graph& graph, const Dataset& dataset,
                            std::span<const std::int64_t> indices,
                            const std::vector<std::string>& tensors,
                            const CalibrationOptions& options, std::int64_t batch);

}  // namespace bitplan
