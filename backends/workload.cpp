#include "backends/workload.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>

#include "backends/cuda/workloads.hpp"
#include "core/error.hpp"
#include "core/files.hpp"
#include "core/text.hpp"
#include "executor/quant/plan.hpp"

namespace bitplan {
namespace {

// Explicit pads of one spatial dim: ONNX either lists them or derives them (auto_pad) from
// the output size, total = max(0, (out - 1) * stride + dilated_kernel - in), the extra
// pixel going to the end for SAME_UPPER and to the beginning for SAME_LOWER.
std::pair<std::int64_t, std::int64_t> resolved_pads(const Node& node, std::size_t dim,
                                                    std::size_t spatial_dims, std::int64_t in,
                                                    std::int64_t out, std::int64_t kernel,
                                                    std::int64_t stride, std::int64_t dilation) {
  const std::string auto_pad = node.attr_string("auto_pad", "NOTSET");
  if (auto_pad == "NOTSET") {
    const auto pads = node.attr_ints("pads", std::vector<std::int64_t>(2 * spatial_dims, 0));
    return {pads[dim], pads[dim + spatial_dims]};
  }
  if (auto_pad == "VALID") return {0, 0};
  const std::int64_t total =
      std::max<std::int64_t>(0, (out - 1) * stride + (kernel - 1) * dilation + 1 - in);
  const std::int64_t small = total / 2, large = total - small;
  return auto_pad == "SAME_LOWER" ? std::pair{large, small} : std::pair{small, large};
}

LayerWorkload conv_workload(const Node& node, const StepInfo& step) {
  const Dims& x = step.input_dims.at(0);
  const Dims& wt = step.input_dims.at(1);
  const Dims& y = step.output_dims.at(0);
  if (x.size() < 3 || x.size() > 4)
    fail_unsupported(
        "describing layer '{}' for profiling: a {}-D convolution (only 1-D and 2-D "
        "are profiled)",
        node.name, x.size() - 2);
  const std::size_t spatial = x.size() - 2;
  const bool two_d = spatial == 2;
  LayerWorkload w;
  w.layer = node.name;
  w.op = "conv";
  w.n = x[0];
  w.c = x[1];
  w.h = two_d ? x[2] : 1;
  w.w = x[two_d ? 3 : 2];
  w.k = wt[0];
  w.r = two_d ? wt[2] : 1;
  w.s = wt[two_d ? 3 : 2];
  w.groups = node.attr_int("group", 1);
  const auto strides = node.attr_ints("strides", std::vector<std::int64_t>(spatial, 1));
  const auto dilations = node.attr_ints("dilations", std::vector<std::int64_t>(spatial, 1));
  w.out_h = two_d ? y[2] : 1;
  w.out_w = y[two_d ? 3 : 2];
  const std::size_t last = spatial - 1;
  if (two_d) {
    w.stride_h = strides[0];
    w.dilation_h = dilations[0];
    std::tie(w.pad_top, w.pad_bottom) =
        resolved_pads(node, 0, spatial, w.h, w.out_h, w.r, w.stride_h, w.dilation_h);
  }
  w.stride_w = strides[last];
  w.dilation_w = dilations[last];
  std::tie(w.pad_left, w.pad_right) =
      resolved_pads(node, last, spatial, w.w, w.out_w, w.s, w.stride_w, w.dilation_w);
  w.key = fmt::format("conv:n{}:c{}:h{}:w{}:k{}:r{}:s{}:st{}x{}:p{}x{}x{}x{}:d{}x{}:g{}", w.n, w.c,
                      w.h, w.w, w.k, w.r, w.s, w.stride_h, w.stride_w, w.pad_top, w.pad_left,
                      w.pad_bottom, w.pad_right, w.dilation_h, w.dilation_w, w.groups);
  w.input_elements = product(x);
  w.output_elements = product(y);
  w.weight_elements = product(wt);
  // Every output element sums C/G * R * S products.
  w.macs = w.output_elements * (w.c / w.groups) * w.r * w.s;
  return w;
}

LayerWorkload gemm_workload(const Node& node, const StepInfo& step) {
  const Dims& x = step.input_dims.at(0);
  const Dims& wt = step.input_dims.at(1);
  LayerWorkload w;
  w.layer = node.name;
  w.op = "gemm";
  const bool gemm = node.op_type == "Gemm";
  const bool trans_a = gemm && node.attr_int("transA", 0) != 0;
  const bool trans_b = gemm && node.attr_int("transB", 0) != 0;
  w.gemm_k = trans_a ? x.front() : x.back();
  w.m = product(x) / w.gemm_k;
  w.gemm_n = trans_b ? wt[0] : wt.back();
  w.key = fmt::format("gemm:m{}:n{}:k{}", w.m, w.gemm_n, w.gemm_k);
  w.input_elements = product(x);
  w.output_elements = product(step.output_dims.at(0));
  w.weight_elements = product(wt);
  w.macs = w.m * w.gemm_n * w.gemm_k;
  return w;
}

using cuda::OpKind;

// What each ONNX op costs like on a GPU: one home for the classification, so a new op type
// is one entry. Ops not listed are unsupported (OpWorkload::unsupported), never guessed.
const std::map<std::string, OpKind>& op_kinds() {
  static const std::map<std::string, OpKind> kinds = [] {
    std::map<std::string, OpKind> k;
    // clang-format off
    for (const char* op :
         {"Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Reciprocal", "Neg", "Abs", "Exp", "Log",
          "Erf", "Tanh", "Sigmoid", "Relu", "LeakyRelu", "PRelu", "Elu", "Selu", "Softplus",
          "Clip", "HardSigmoid", "HardSwish", "Gelu", "Where", "Equal", "Less", "LessOrEqual",
          "Greater", "GreaterOrEqual", "Not", "And", "Or", "Xor", "Cast", "Min", "Max", "Mod",
          "Floor", "Ceil", "Round", "Sin", "Cos", "Sign", "IsNaN", "IsInf",
          "BatchNormalization", "QuantizeLinear", "DequantizeLinear"})
      k[op] = OpKind::eltwise;
    for (const char* op : {"ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd",
                           "ReduceL1", "ReduceL2", "ReduceSumSquare", "ReduceLogSumExp",
                           "GlobalAveragePool", "GlobalMaxPool", "AveragePool", "MaxPool",
                           "ArgMax", "ArgMin"})
      k[op] = OpKind::reduce;
    for (const char* op : {"Softmax", "LogSoftmax", "LayerNormalization",
                           "SimplifiedLayerNormalization", "InstanceNormalization",
                           "LpNormalization", "CumSum"})
      k[op] = OpKind::rownorm;
    for (const char* op : {"Transpose", "Concat", "Slice", "Gather", "GatherElements",
                           "GatherND", "Split", "Expand", "Pad", "Tile", "Resize", "Upsample",
                           "DepthToSpace", "SpaceToDepth", "ScatterND", "ScatterElements",
                           "Trilu", "Range", "ConstantOfShape", "Shape", "Size", "NonZero"})
      k[op] = OpKind::copy;
    // clang-format on
    k["MatMul"] = OpKind::bmm;
    return k;
  }();
  return kinds;
}

std::int64_t elements_of(const Dims& dims) {
  return dims.empty() ? 1 : product(dims);
}

// The shape of one executed, non-view step that is not a quantizable layer, or nullopt with
// `unsupported` set when no kernel class describes it.
std::optional<cuda::OpShape> op_shape(const StepInfo& step, std::string& unsupported) {
  const auto kind = op_kinds().find(step.op_type);
  const bool weighted_matmul = step.op_type == "MatMul" && step.input_constant.size() == 2 &&
                               (step.input_constant[0] || step.input_constant[1]);
  const bool too_many_inputs =
      kind != op_kinds().end() && kind->second == OpKind::eltwise && step.input_dims.size() > 4;
  if (kind == op_kinds().end() || weighted_matmul || too_many_inputs || step.output_dims.empty()) {
    unsupported = fmt::format(
        "op {} ('{}') has no GPU kernel class in bitplan's op list (backends/workload.cpp)",
        step.op_type, step.name);
    return std::nullopt;
  }
  const auto at_least_one = [](std::int64_t v) { return std::max<std::int64_t>(v, 1); };
  std::int64_t outputs = 0;
  for (const Dims& d : step.output_dims) outputs += elements_of(d);
  const Dims& first = step.input_dims.empty() ? step.output_dims[0] : step.input_dims[0];
  cuda::OpShape s;
  s.kind = kind->second;
  switch (s.kind) {
    case OpKind::eltwise:
      s.outputs = at_least_one(outputs);
      for (const Dims& d : step.input_dims) s.inputs.push_back(elements_of(d));
      // Which input is which does not change the bytes moved: one key per multiset.
      std::sort(s.inputs.rbegin(), s.inputs.rend());
      break;
    case OpKind::reduce:
      s.rows = at_least_one(outputs);
      s.cols = at_least_one(elements_of(first) / s.rows);
      break;
    case OpKind::rownorm:
      s.cols = first.empty() ? 1 : at_least_one(first.back());
      s.rows = at_least_one(elements_of(first) / s.cols);
      break;
    case OpKind::bmm: {
      const Dims& a = step.input_dims.at(0);
      const Dims& b = step.input_dims.at(1);
      s.m = a.size() >= 2 ? at_least_one(a[a.size() - 2]) : 1;
      s.k = a.empty() ? 1 : at_least_one(a.back());
      s.n = b.size() >= 2 ? at_least_one(b.back()) : 1;
      s.batch = at_least_one(outputs / (s.m * s.n));
      break;
    }
    case OpKind::copy: {
      // Gather and Slice read only what they write (plus Gather's indices); the others read
      // their non-constant inputs whole.
      std::int64_t inputs = 0;
      if (step.op_type == "Gather" || step.op_type == "Slice") {
        inputs = outputs;
        if (step.op_type == "Gather" && step.input_dims.size() > 1)
          inputs += elements_of(step.input_dims[1]);
      } else {
        for (std::size_t i = 0; i < step.input_dims.size(); ++i)
          if (!step.input_constant[i]) inputs += elements_of(step.input_dims[i]);
      }
      s.inputs = {at_least_one(inputs)};
      s.outputs = at_least_one(outputs);
      break;
    }
  }
  return s;
}

}  // namespace

std::vector<OpWorkload> op_workloads(const Graph& graph, const ExecutionPlan& plan) {
  std::set<std::string> layers;
  for (const auto& layer : quantizable_layers(graph)) layers.insert(layer.name);
  std::vector<OpWorkload> out;
  std::size_t layers_before = 0;
  for (const auto& step : plan.steps()) {
    if (layers.count(step.name)) {
      ++layers_before;
      continue;
    }
    if (step.view) continue;
    OpWorkload op;
    op.node = step.name;
    op.op_type = step.op_type;
    if (const auto shape = op_shape(step, op.unsupported)) op.key = cuda::op_key(*shape);
    op.layers_before = layers_before;
    out.push_back(std::move(op));
  }
  return out;
}

std::vector<LayerWorkload> layer_workloads(const Graph& graph, const ExecutionPlan& plan) {
  std::map<std::string, const Node*> quantizable;
  for (const auto& layer : quantizable_layers(graph))
    for (const auto& node : graph.nodes)
      if (node.name == layer.name) quantizable[layer.name] = &node;
  std::vector<LayerWorkload> out;
  for (const auto& step : plan.steps()) {
    auto it = quantizable.find(step.name);
    if (it == quantizable.end()) continue;
    const Node& node = *it->second;
    out.push_back(node.op_type == "Conv" ? conv_workload(node, step) : gemm_workload(node, step));
  }
  return out;
}

void write_workloads_json(const std::filesystem::path& path, const std::string& model,
                          std::int64_t batch, const std::vector<std::string>& precisions,
                          const std::vector<LayerWorkload>& workloads,
                          const std::vector<OpWorkload>& ops) {
  nlohmann::ordered_json doc;
  doc["bitplan_workloads"] = 1;
  doc["model"] = model;
  doc["batch"] = batch;
  doc["precisions"] = precisions;
  auto& layers = doc["layers"] = nlohmann::ordered_json::array();
  for (const auto& w : workloads) {
    nlohmann::ordered_json j;
    j["name"] = w.layer;
    j["key"] = w.key;
    j["op"] = w.op;
    if (w.op == "conv") {
      j["n"] = w.n;
      j["c"] = w.c;
      j["h"] = w.h;
      j["w"] = w.w;
      j["k"] = w.k;
      j["r"] = w.r;
      j["s"] = w.s;
      j["stride"] = {w.stride_h, w.stride_w};
      j["pad"] = {w.pad_top, w.pad_left, w.pad_bottom, w.pad_right};
      j["dilation"] = {w.dilation_h, w.dilation_w};
      j["groups"] = w.groups;
      j["out_h"] = w.out_h;
      j["out_w"] = w.out_w;
    } else {
      j["m"] = w.m;
      j["n"] = w.gemm_n;
      j["k"] = w.gemm_k;
    }
    j["input_elements"] = w.input_elements;
    j["output_elements"] = w.output_elements;
    layers.push_back(std::move(j));
  }
  auto& op_list = doc["ops"] = nlohmann::ordered_json::array();
  for (const auto& op : ops) {
    nlohmann::ordered_json j;
    j["name"] = op.node;
    j["op_type"] = op.op_type;
    if (op.unsupported.empty())
      j["key"] = op.key;
    else
      j["unsupported"] = op.unsupported;
    j["layers_before"] = op.layers_before;
    op_list.push_back(std::move(j));
  }
  write_file_atomic(path, json_text(doc, 1) + "\n");
}

}  // namespace bitplan
