#include "executor/quant/equalize.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <optional>

#include "core/error.hpp"

namespace bitplan {
namespace {

bool is_op(const Node& node, std::string_view op) {
  return node.domain.empty() && node.op_type == op;
}

// The activation between layer1 and layer2, as the pass sees it.
enum class ActKind { none, homogeneous, relu6, other };

struct Activation {
  ActKind kind = ActKind::none;
  std::string text;  // "Relu", "Clip(0, 6)"...
};

Activation clip_activation(float lo, float hi) {
  const std::string text = fmt::format("Clip({}, {})", lo, hi);
  if (lo == 0 && std::isinf(hi) && hi > 0) return {ActKind::homogeneous, text};
  if (lo == 0 && std::isfinite(hi) && hi > 0) return {ActKind::relu6, text};
  return {ActKind::other, text};
}

// The activation a layer carries fused (ir/passes.hpp fuse_activations).
Activation fused_activation(const Node& layer) {
  const std::string act = layer.attr_string("bitplan_activation", "");
  if (act.empty()) return {ActKind::none, "none"};
  if (act == "Relu") return {ActKind::homogeneous, "Relu"};
  if (act == "Clip")
    return clip_activation(layer.attr_float("bitplan_clip_min", -INFINITY),
                           layer.attr_float("bitplan_clip_max", INFINITY));
  return {ActKind::other, act};
}

std::optional<float> scalar_initializer(const Graph& graph, const std::string& name) {
  const Tensor* t = graph.initializer(name);
  if (!t || t->dtype() != DType::f32 || t->numel() != 1) return std::nullopt;
  return t->data<float>()[0];
}

// A separate activation node between the layers; nullopt when `node` is no activation the
// pass looks through (it is then the candidate layer2 or something else).
std::optional<Activation> node_activation(const Graph& graph, const Node& node) {
  if (is_op(node, "Relu")) return Activation{ActKind::homogeneous, "Relu"};
  if (is_op(node, "Identity")) return Activation{ActKind::homogeneous, "Identity"};
  if (!is_op(node, "Clip")) return std::nullopt;
  float lo = -INFINITY, hi = INFINITY;
  if (graph.opset >= 11) {
    const auto bound = [&](std::size_t i, float fallback) -> std::optional<float> {
      return node.has_input(i) ? scalar_initializer(graph, node.inputs[i]) : fallback;
    };
    const auto l = bound(1, -INFINITY), h = bound(2, INFINITY);
    if (!l || !h) return Activation{ActKind::other, "Clip with non-constant bounds"};
    lo = *l;
    hi = *h;
  } else {
    lo = node.attr_float("min", -INFINITY);
    hi = node.attr_float("max", INFINITY);
  }
  return clip_activation(lo, hi);
}

// How a Conv/Gemm weight tensor maps to the layer's output and input channels.
struct Layer {
  std::size_t index = 0;
  std::string weight, bias;  // initializer names; bias empty when absent
  std::int64_t out_channels = 0, in_channels = 0;
};

// Why `node` cannot be one side of a pair, or nullopt with `layer` filled in.
std::optional<std::string> layer_refusal(const Graph& graph, std::size_t index, Layer& layer) {
  const Node& node = graph.nodes[index];
  const bool conv = is_op(node, "Conv"), gemm = is_op(node, "Gemm");
  if (!conv && !gemm) return fmt::format("{} '{}' is not a Conv or Gemm", node.op_type, node.name);
  const Tensor* w = node.has_input(1) ? graph.initializer(node.inputs[1]) : nullptr;
  if (!w || w->dtype() != DType::f32)
    return fmt::format("{} '{}' has no constant float32 weight", node.op_type, node.name);
  layer.index = index;
  layer.weight = node.inputs[1];
  if (conv) {
    const std::int64_t group = node.attr_int("group", 1);
    if (w->rank() < 3 || group < 1 || w->dim(0) % group != 0)
      return fmt::format("Conv '{}' has weight {} with group {}, not [O, I/group, k...]", node.name,
                         to_string(w->dims()), group);
    layer.out_channels = w->dim(0);
    layer.in_channels = w->dim(1) * group;
  } else {
    if (w->rank() != 2)
      return fmt::format("Gemm '{}' has weight {}, not a matrix", node.name, to_string(w->dims()));
    const bool trans_b = node.attr_int("transB", 0) != 0;
    layer.out_channels = trans_b ? w->dim(0) : w->dim(1);
    layer.in_channels = trans_b ? w->dim(1) : w->dim(0);
  }
  if (node.has_input(2)) {
    const Tensor* b = graph.initializer(node.inputs[2]);
    if (!b || b->dtype() != DType::f32)
      return fmt::format("{} '{}' has no constant float32 bias", node.op_type, node.name);
    // Conv B is [O]; Gemm C must be one value per output channel ([N] or [1, N]) to scale.
    const bool per_channel =
        b->numel() == layer.out_channels && (b->rank() == 1 || (b->rank() == 2 && b->dim(0) == 1));
    if (!per_channel)
      return fmt::format("{} '{}' has bias {}, not one value per output channel ({})", node.op_type,
                         node.name, to_string(b->dims()), layer.out_channels);
    layer.bias = node.inputs[2];
  }
  return std::nullopt;
}

// Calls fn(channel, weight) for every weight element with the layer's output channel it
// belongs to.
template <typename Fn>
void for_each_output_channel(const Node& node, Tensor& w, Fn&& fn) {
  float* data = w.data<float>();
  const std::int64_t n = w.numel();
  if (is_op(node, "Gemm") && node.attr_int("transB", 0) == 0) {  // [K, N]: the column
    const std::int64_t cols = w.dim(1);
    for (std::int64_t i = 0; i < n; ++i) fn(i % cols, data[i]);
    return;
  }
  const std::int64_t inner = n / w.dim(0);  // Conv [O, ...] and Gemm transB [N, K]: the row
  for (std::int64_t i = 0; i < n; ++i) fn(i / inner, data[i]);
}

// Calls fn(channel, weight) for every weight element with the input channel it reads.
template <typename Fn>
void for_each_input_channel(const Node& node, Tensor& w, Fn&& fn) {
  float* data = w.data<float>();
  const std::int64_t n = w.numel();
  if (is_op(node, "Gemm")) {
    const std::int64_t cols = w.dim(1);
    const bool trans_b = node.attr_int("transB", 0) != 0;
    for (std::int64_t i = 0; i < n; ++i) fn(trans_b ? i % cols : i / cols, data[i]);
    return;
  }
  // Conv W [O, C/g, k...]: output channel o is in group o / (O/g), which reads input channels
  // [group * C/g, (group + 1) * C/g); element (o, c, ...) reads channel group * C/g + c.
  const std::int64_t out = w.dim(0), per_group_in = w.dim(1);
  const std::int64_t per_group_out = out / node.attr_int("group", 1);
  const std::int64_t inner = n / (out * per_group_in);
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int64_t o = i / (per_group_in * inner), c = (i / inner) % per_group_in;
    fn(o / per_group_out * per_group_in + c, data[i]);
  }
}

struct Pair {
  Layer first, second;
  std::string activation;
  // Where layer1's ReLU6 is, for relu6_to_relu: the layer itself (fused) or a Clip node.
  std::optional<std::size_t> relu6_node;
};

// max_i over channels with both ranges non-zero of max(r1, r2) / min(r1, r2).
double max_range_ratio(const std::vector<double>& r1, const std::vector<double>& r2) {
  double worst = 1;
  for (std::size_t i = 0; i < r1.size(); ++i)
    if (r1[i] > 0 && r2[i] > 0)
      worst = std::max(worst, std::max(r1[i], r2[i]) / std::min(r1[i], r2[i]));
  return worst;
}

struct Ranges {
  std::vector<double> first, second;
};

Ranges pair_ranges(Graph& graph, const Pair& pair) {
  Ranges r{std::vector<double>(static_cast<std::size_t>(pair.first.out_channels), 0.0),
           std::vector<double>(static_cast<std::size_t>(pair.second.in_channels), 0.0)};
  for_each_output_channel(graph.nodes[pair.first.index], graph.initializers.at(pair.first.weight),
                          [&](std::int64_t c, float& v) {
                            auto& m = r.first[static_cast<std::size_t>(c)];
                            m = std::max(m, static_cast<double>(std::abs(v)));
                          });
  for_each_input_channel(graph.nodes[pair.second.index], graph.initializers.at(pair.second.weight),
                         [&](std::int64_t c, float& v) {
                           auto& m = r.second[static_cast<std::size_t>(c)];
                           m = std::max(m, static_cast<double>(std::abs(v)));
                         });
  return r;
}

// One equalization step of a pair; returns max |log s_i|.
double equalize_pair(Graph& graph, const Pair& pair) {
  const Ranges r = pair_ranges(graph, pair);
  std::vector<float> scale(r.first.size(), 1.f);
  double worst = 0;
  for (std::size_t i = 0; i < scale.size(); ++i) {
    if (!(r.first[i] > 0 && r.second[i] > 0)) continue;  // a dead channel: nothing to balance
    const double s = std::sqrt(r.first[i] * r.second[i]) / r.second[i];
    scale[i] = static_cast<float>(s);
    worst = std::max(worst, std::abs(std::log(s)));
  }
  const Node& first = graph.nodes[pair.first.index];
  for_each_output_channel(
      first, graph.initializers.at(pair.first.weight),
      [&](std::int64_t c, float& v) { v /= scale[static_cast<std::size_t>(c)]; });
  if (!pair.first.bias.empty()) {
    float* b = graph.initializers.at(pair.first.bias).data<float>();
    for (std::size_t i = 0; i < scale.size(); ++i) b[i] /= scale[i];
  }
  for_each_input_channel(
      graph.nodes[pair.second.index], graph.initializers.at(pair.second.weight),
      [&](std::int64_t c, float& v) { v *= scale[static_cast<std::size_t>(c)]; });
  return worst;
}

std::string describe(const Node& node) {
  return fmt::format("{} '{}'", node.op_type, node.name);
}

}  // namespace

std::vector<std::string> EqualizationReport::lines() const {
  std::vector<std::string> out;
  for (const auto& p : equalized)
    out.push_back(fmt::format(
        "equalized {} -> {} -> {} (largest channel range ratio {:.3g} -> {:.3g})", p.first,
        p.activation, p.second, p.max_range_ratio_before, p.max_range_ratio_after));
  for (const auto& name : relu6_replaced) out.push_back(fmt::format("ReLU6 -> ReLU at {}", name));
  for (const auto& p : skipped)
    out.push_back(p.second.empty()
                      ? fmt::format("skipped {}: {}", p.first, p.reason)
                      : fmt::format("skipped {} -> {}: {}", p.first, p.second, p.reason));
  return out;
}

EqualizationReport equalize_cross_layer(Graph& graph, const EqualizeOptions& options) {
  if (options.max_sweeps < 1)
    fail_input("equalizing graph '{}' with max_sweeps {}: at least one sweep is needed", graph.name,
               options.max_sweeps);
  if (!(options.tolerance > 0 && std::isfinite(options.tolerance)))
    fail_input("equalizing graph '{}' with tolerance {}: the tolerance must be a finite number > 0",
               graph.name, options.tolerance);
  EqualizationReport report;
  const auto readers_count = graph.consumer_counts();
  const auto count_of = [&](const std::string& value) {
    const auto it = readers_count.find(value);
    return it == readers_count.end() ? 0 : it->second;
  };
  std::map<std::string, std::vector<std::size_t>> readers;
  for (std::size_t i = 0; i < graph.nodes.size(); ++i)
    for (const auto& in : graph.nodes[i].inputs)
      if (!in.empty()) {
        auto& list = readers[in];
        if (list.empty() || list.back() != i) list.push_back(i);
      }
  const auto is_graph_output = [&](const std::string& value) {
    return std::any_of(graph.outputs.begin(), graph.outputs.end(),
                       [&](const ValueInfo& v) { return v.name == value; });
  };
  // The single node reading `value`, or why there is none.
  const auto sole_reader = [&](const std::string& value,
                               std::string& why) -> std::optional<std::size_t> {
    if (is_graph_output(value)) {
      why = fmt::format("'{}' is a graph output", value);
      return std::nullopt;
    }
    const auto it = readers.find(value);
    if (it == readers.end() || it->second.empty()) {
      why = fmt::format("nothing reads '{}'", value);
      return std::nullopt;
    }
    if (it->second.size() > 1 || count_of(value) > 1) {
      std::vector<std::string> names;
      for (const auto i : it->second) names.push_back(describe(graph.nodes[i]));
      why = fmt::format("'{}' has {} readers ({}): scaling it would change them all", value,
                        count_of(value), fmt::join(names, ", "));
      return std::nullopt;
    }
    return it->second.front();
  };

  std::vector<Pair> pairs;
  for (std::size_t i = 0; i < graph.nodes.size(); ++i) {
    const Node& node = graph.nodes[i];
    if (!(is_op(node, "Conv") || is_op(node, "Gemm")) || node.outputs.size() != 1) continue;
    Pair pair;
    if (layer_refusal(graph, i, pair.first)) continue;  // not a candidate layer1 at all
    const auto skip = [&](std::string second, std::string reason) {
      report.skipped.push_back({node.name, std::move(second), std::move(reason)});
    };
    Activation act = fused_activation(node);
    if (act.kind == ActKind::relu6) pair.relu6_node = i;
    std::string why;
    std::string value = node.outputs[0];
    auto next = sole_reader(value, why);
    if (!next) {
      skip("", fmt::format("its output {}", why));
      continue;
    }
    if (act.kind == ActKind::none) {  // a separate activation node in between
      if (const auto between = node_activation(graph, graph.nodes[*next])) {
        act = *between;
        act.text = fmt::format("{} '{}'", act.text, graph.nodes[*next].name);
        if (act.kind == ActKind::relu6) pair.relu6_node = *next;
        value = graph.nodes[*next].outputs.at(0);
        const auto activation_node = *next;
        next = sole_reader(value, why);
        if (!next) {
          skip("", fmt::format("{} reads it, and {}", describe(graph.nodes[activation_node]), why));
          continue;
        }
      }
    }
    const Node& second = graph.nodes[*next];
    if (act.kind == ActKind::other) {
      skip(second.name, fmt::format("{} between them is not positively homogeneous "
                                    "(act(x / s) != act(x) / s)",
                                    act.text));
      continue;
    }
    if (act.kind == ActKind::relu6 && !options.relu6_to_relu) {
      skip(second.name,
           fmt::format("{} between them is ReLU6-like, not positively homogeneous: the clip bound "
                       "would have to become c / s_i per channel, which ONNX Clip cannot express "
                       "(relu6_to_relu replaces it with ReLU, changing the model)",
                       act.text));
      continue;
    }
    if (!(is_op(second, "Conv") || is_op(second, "Gemm"))) {
      skip(second.name,
           fmt::format("the reader {} is not a Conv or Gemm (only a Relu, Clip(0, inf) or "
                       "Identity may stand between the two)",
                       describe(second)));
      continue;
    }
    if (second.inputs.empty() || second.inputs[0] != value) {
      skip(second.name, fmt::format("{} reads '{}' as another input than its data input",
                                    describe(second), value));
      continue;
    }
    if (const auto refusal = layer_refusal(graph, *next, pair.second)) {
      skip(second.name, *refusal);
      continue;
    }
    if (node.op_type != second.op_type) {
      skip(second.name, fmt::format("{} feeding {} is not supported (no channel layout in common)",
                                    node.op_type, second.op_type));
      continue;
    }
    if (is_op(second, "Gemm") && second.attr_int("transA", 0) != 0) {
      skip(second.name, fmt::format("Gemm '{}' has transA = 1: its input channels are the rows "
                                    "of A, not layer1's output channels",
                                    second.name));
      continue;
    }
    if (pair.first.out_channels != pair.second.in_channels) {
      skip(second.name,
           fmt::format("'{}' has {} output channels but '{}' reads {} input channels", node.name,
                       pair.first.out_channels, second.name, pair.second.in_channels));
      continue;
    }
    // Initializers the pair rescales must belong to it alone.
    std::optional<std::string> shared;
    for (const auto* name : {&pair.first.weight, &pair.first.bias, &pair.second.weight})
      if (!name->empty() && (count_of(*name) != 1 || is_graph_output(*name))) shared = *name;
    if (shared) {
      skip(second.name, fmt::format("initializer '{}' is read by {} inputs; rescaling it for this "
                                    "pair would change the others",
                                    *shared, count_of(*shared)));
      continue;
    }
    pair.activation = act.kind == ActKind::relu6 ? act.text + " replaced by Relu" : act.text;
    pairs.push_back(std::move(pair));
  }

  // ReLU6 -> ReLU where it stands between a pair (only there: elsewhere it would only cost).
  for (const auto& pair : pairs) {
    if (!pair.relu6_node) continue;
    Node& n = graph.nodes[*pair.relu6_node];
    if (n.has_attr("bitplan_activation") && (is_op(n, "Conv") || is_op(n, "Gemm"))) {
      n.attrs["bitplan_activation"] = std::string("Relu");
      n.attrs.erase("bitplan_clip_min");
      n.attrs.erase("bitplan_clip_max");
    } else {
      n.op_type = "Relu";
      n.inputs.resize(1);
      n.attrs.clear();
    }
    report.relu6_replaced.push_back(n.name);
  }

  // Private copies of what the pass rescales (Tensor copies share their buffer).
  for (const auto& pair : pairs)
    for (const auto* name : {&pair.first.weight, &pair.first.bias, &pair.second.weight})
      if (!name->empty()) {
        Tensor& t = graph.initializers.at(*name);
        t = t.clone();
      }

  std::vector<double> before;
  for (const auto& pair : pairs) {
    const Ranges r = pair_ranges(graph, pair);
    before.push_back(max_range_ratio(r.first, r.second));
  }
  report.converged = pairs.empty();
  for (int sweep = 0; sweep < options.max_sweeps && !pairs.empty(); ++sweep) {
    double worst = 0;
    for (const auto& pair : pairs) worst = std::max(worst, equalize_pair(graph, pair));
    report.sweeps = sweep + 1;
    report.last_max_log_scale = worst;
    if (worst < options.tolerance) {
      report.converged = true;
      break;
    }
  }
  for (std::size_t k = 0; k < pairs.size(); ++k) {
    const Ranges r = pair_ranges(graph, pairs[k]);
    report.equalized.push_back({graph.nodes[pairs[k].first.index].name,
                                graph.nodes[pairs[k].second.index].name, pairs[k].activation,
                                before[k], max_range_ratio(r.first, r.second)});
  }
  return report;
}

}  // namespace bitplan
