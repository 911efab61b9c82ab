#include "ir/passes.hpp"

#include <cmath>
#include <set>

namespace bitplan {
namespace {

void rename_uses(Graph& graph, const std::string& from, const std::string& to) {
  for (auto& node : graph.nodes)
    for (auto& in : node.inputs)
      if (in == from) in = to;
}

bool is_graph_output(const Graph& graph, const std::string& value) {
  for (const auto& out : graph.outputs)
    if (out.name == value) return true;
  return false;
}

// Index of the single node reading `value`, if exactly one node does and it is not a graph
// output (then a rewrite may consume it).
std::optional<std::size_t> sole_consumer(const Graph& graph, const std::string& value) {
  if (is_graph_output(graph, value)) return std::nullopt;
  std::optional<std::size_t> found;
  for (std::size_t i = 0; i < graph.nodes.size(); ++i)
    for (const auto& in : graph.nodes[i].inputs)
      if (in == value) {
        if (found && *found != i) return std::nullopt;
        found = i;
      }
  return found;
}

std::vector<std::size_t> consumers(const Graph& graph, const std::string& value) {
  std::vector<std::size_t> out;
  for (std::size_t i = 0; i < graph.nodes.size(); ++i)
    for (const auto& in : graph.nodes[i].inputs)
      if (in == value) {
        out.push_back(i);
        break;
      }
  return out;
}

// A float initializer holding one value (any shape of one element).
std::optional<float> scalar_initializer(const Graph& graph, const std::string& name) {
  const Tensor* t = graph.initializer(name);
  if (!t || t->dtype() != DType::f32 || t->numel() != 1) return std::nullopt;
  return t->data<float>()[0];
}

bool is_op(const Node& node, std::string_view op) {
  return node.domain.empty() && node.op_type == op;
}

// The other input of a binary node, given one of them.
std::optional<std::string> other_input(const Node& node, const std::string& known) {
  if (node.inputs.size() != 2) return std::nullopt;
  if (node.inputs[0] == known) return node.inputs[1];
  if (node.inputs[1] == known) return node.inputs[0];
  return std::nullopt;
}

// ReduceMean over the last axis only (axes as attribute before opset 18, as input after).
bool reduces_last_axis(const Graph& graph, const Node& node) {
  if (!is_op(node, "ReduceMean") || node.attr_int("keepdims", 1) != 1) return false;
  std::vector<std::int64_t> axes = node.attr_ints("axes");
  if (node.has_input(1)) {
    const Tensor* t = graph.initializer(node.inputs[1]);
    if (!t) return false;
    axes = t->to_int64_vector();
  }
  return axes.size() == 1 && axes[0] == -1;
}

void erase_nodes(Graph& graph, std::set<std::size_t> doomed) {
  std::vector<Node> kept;
  for (std::size_t i = 0; i < graph.nodes.size(); ++i)
    if (!doomed.count(i)) kept.push_back(std::move(graph.nodes[i]));
  graph.nodes = std::move(kept);
}

}  // namespace

int remove_identities(Graph& graph) {
  int removed = 0;
  std::set<std::size_t> doomed;
  for (std::size_t i = 0; i < graph.nodes.size(); ++i) {
    Node& node = graph.nodes[i];
    // Dropout at inference is the identity; its optional mask output must be unused.
    const bool dropout =
        is_op(node, "Dropout") && (node.outputs.size() < 2 || node.outputs[1].empty() ||
                                   consumers(graph, node.outputs[1]).empty());
    if (!(is_op(node, "Identity") || dropout)) continue;
    const std::string in = node.inputs.at(0), out = node.outputs.at(0);
    if (is_graph_output(graph, out)) {
      // Keep the graph's output name: let the producer write it directly when it can.
      auto producer = graph.producer(in);
      if (!producer || is_graph_output(graph, in) || consumers(graph, in).size() != 1) continue;
      for (auto& o : graph.nodes[*producer].outputs)
        if (o == in) o = out;
    } else {
      rename_uses(graph, out, in);
    }
    doomed.insert(i);
    ++removed;
  }
  erase_nodes(graph, doomed);
  return removed;
}

int fold_batchnorm(Graph& graph, std::vector<std::string>& notes) {
  int folded = 0;
  std::set<std::size_t> doomed;
  for (std::size_t i = 0; i < graph.nodes.size(); ++i) {
    Node& layer = graph.nodes[i];
    const bool conv = is_op(layer, "Conv");
    const bool gemm = is_op(layer, "Gemm") && layer.attr_int("transB", 0) == 1 &&
                      layer.attr_float("alpha", 1.f) == 1.f && layer.attr_float("beta", 1.f) == 1.f;
    if (!(conv || gemm) || layer.outputs.size() != 1) continue;
    auto next = sole_consumer(graph, layer.outputs[0]);
    if (!next) continue;
    Node& bn = graph.nodes[*next];
    if (!is_op(bn, "BatchNormalization") || bn.outputs.size() != 1 || bn.inputs.size() != 5)
      continue;
    if (bn.attr_int("training_mode", 0) != 0) continue;
    const Tensor* w = graph.initializer(layer.inputs.at(1));
    const Tensor* b = layer.has_input(2) ? graph.initializer(layer.inputs[2]) : nullptr;
    if (!w || w->dtype() != DType::f32 || (layer.has_input(2) && !b)) continue;
    const Tensor* scale = graph.initializer(bn.inputs[1]);
    const Tensor* shift = graph.initializer(bn.inputs[2]);
    const Tensor* mean = graph.initializer(bn.inputs[3]);
    const Tensor* var = graph.initializer(bn.inputs[4]);
    const std::int64_t channels = w->dim(0);
    bool ok = scale && shift && mean && var;
    for (const Tensor* t : {scale, shift, mean, var})
      ok = ok && t->dtype() == DType::f32 && t->numel() == channels;
    if (!ok || (b && b->numel() != channels)) continue;

    // BN(y) = gamma * (y - mean) / sqrt(var + eps) + beta, with y = W x + b, is
    //   (W * k) x + (b - mean) * k + beta,   k = gamma / sqrt(var + eps)
    // so the weights scale per output channel (dim 0 of Conv W [O,I/g,...] and of Gemm
    // W [N,K] with transB=1) and the bias is rewritten.
    const float eps = bn.attr_float("epsilon", 1e-5f);
    Tensor new_w = w->clone();
    Tensor new_b(DType::f32, {channels});
    const std::int64_t per_channel = w->numel() / channels;
    for (std::int64_t c = 0; c < channels; ++c) {
      const float k = scale->data<float>()[c] / std::sqrt(var->data<float>()[c] + eps);
      float* wc = new_w.data<float>() + c * per_channel;
      for (std::int64_t j = 0; j < per_channel; ++j) wc[j] *= k;
      const float bias = b ? b->data<float>()[c] : 0.f;
      new_b.data<float>()[c] = (bias - mean->data<float>()[c]) * k + shift->data<float>()[c];
    }
    const std::string w_name = layer.name + ".weight_bnfolded";
    const std::string b_name = layer.name + ".bias_bnfolded";
    graph.initializers[w_name] = std::move(new_w);
    graph.initializers[b_name] = std::move(new_b);
    layer.inputs.resize(3);
    layer.inputs[1] = w_name;
    layer.inputs[2] = b_name;
    layer.outputs[0] = bn.outputs[0];
    notes.push_back(fmt::format("folded BatchNormalization '{}' into {} '{}'", bn.name,
                                layer.op_type, layer.name));
    doomed.insert(*next);
    ++folded;
  }
  erase_nodes(graph, doomed);
  remove_dead_nodes(graph);
  return folded;
}

// x -> ReduceMean(-1) = m; d = x - m; v = ReduceMean(d^2); n = d / Sqrt(v + eps);
// y = n * gamma + beta   ==>   LayerNormalization(x, gamma, beta, axis=-1, epsilon=eps)
int fuse_layernorm(Graph& graph, std::vector<std::string>& notes) {
  int fused = 0;
  for (std::size_t i = 0; i < graph.nodes.size(); ++i) {
    const Node& mean = graph.nodes[i];
    if (!reduces_last_axis(graph, mean)) continue;
    const std::string x = mean.inputs[0];
    auto sub_i = sole_consumer(graph, mean.outputs[0]);
    if (!sub_i || !is_op(graph.nodes[*sub_i], "Sub")) continue;
    const Node& sub = graph.nodes[*sub_i];
    if (sub.inputs.size() != 2 || sub.inputs[0] != x || sub.inputs[1] != mean.outputs[0]) continue;
    const std::string d = sub.outputs[0];
    auto users = consumers(graph, d);  // Pow (or Mul d*d) and Div
    if (users.size() != 2 || is_graph_output(graph, d)) continue;
    std::optional<std::size_t> pow_i, div_i;
    for (auto u : users) {
      const Node& n = graph.nodes[u];
      if (is_op(n, "Pow") && n.inputs[0] == d && scalar_initializer(graph, n.inputs[1]) == 2.f)
        pow_i = u;
      else if (is_op(n, "Mul") && n.inputs.size() == 2 && n.inputs[0] == d && n.inputs[1] == d)
        pow_i = u;
      else if (is_op(n, "Div") && n.inputs[0] == d)
        div_i = u;
    }
    if (!pow_i || !div_i) continue;
    auto var_i = sole_consumer(graph, graph.nodes[*pow_i].outputs[0]);
    if (!var_i || !reduces_last_axis(graph, graph.nodes[*var_i])) continue;
    auto add_i = sole_consumer(graph, graph.nodes[*var_i].outputs[0]);
    if (!add_i || !is_op(graph.nodes[*add_i], "Add")) continue;
    auto eps_name = other_input(graph.nodes[*add_i], graph.nodes[*var_i].outputs[0]);
    auto eps = eps_name ? scalar_initializer(graph, *eps_name) : std::nullopt;
    if (!eps) continue;
    auto sqrt_i = sole_consumer(graph, graph.nodes[*add_i].outputs[0]);
    if (!sqrt_i || !is_op(graph.nodes[*sqrt_i], "Sqrt")) continue;
    const Node& div = graph.nodes[*div_i];
    if (div.inputs[1] != graph.nodes[*sqrt_i].outputs[0]) continue;
    auto mul_i = sole_consumer(graph, div.outputs[0]);
    if (!mul_i || !is_op(graph.nodes[*mul_i], "Mul")) continue;
    auto gamma = other_input(graph.nodes[*mul_i], div.outputs[0]);
    if (!gamma || !graph.initializer(*gamma) || graph.initializer(*gamma)->rank() != 1) continue;
    auto badd_i = sole_consumer(graph, graph.nodes[*mul_i].outputs[0]);
    std::optional<std::string> beta;
    if (badd_i && is_op(graph.nodes[*badd_i], "Add")) {
      beta = other_input(graph.nodes[*badd_i], graph.nodes[*mul_i].outputs[0]);
      if (beta && (!graph.initializer(*beta) || graph.initializer(*beta)->rank() != 1))
        beta.reset();
    }
    const Node& last = beta ? graph.nodes[*badd_i] : graph.nodes[*mul_i];

    Node ln;
    ln.name = mean.name + ".layernorm";
    ln.op_type = "LayerNormalization";
    ln.inputs = {x, *gamma};
    if (beta) ln.inputs.push_back(*beta);
    ln.outputs = {last.outputs[0]};
    ln.attrs["axis"] = std::int64_t{-1};
    ln.attrs["epsilon"] = *eps;
    notes.push_back(
        fmt::format("recognised LayerNormalization from '{}' .. '{}'", mean.name, last.name));
    std::set<std::size_t> doomed{i, *sub_i, *pow_i, *var_i, *add_i, *sqrt_i, *div_i, *mul_i};
    if (beta) doomed.insert(*badd_i);
    graph.nodes[i] = ln;  // takes the place of the first node: inputs are ready there
    doomed.erase(i);
    erase_nodes(graph, doomed);
    ++fused;
    --i;
  }
  remove_dead_nodes(graph);
  return fused;
}

// Exact GELU as exported by torch: y = (x * 0.5) * (1 + erf(x / sqrt(2))), in either
// multiplication order  ==>  Gelu(x) (ONNX opset 20 semantics, approximate="none").
int fuse_gelu(Graph& graph, std::vector<std::string>& notes) {
  int fused = 0;
  for (std::size_t i = 0; i < graph.nodes.size(); ++i) {
    const Node& div = graph.nodes[i];
    if (!(is_op(div, "Div") || is_op(div, "Mul")) || div.inputs.size() != 2) continue;
    auto c = scalar_initializer(graph, div.inputs[1]);
    const float inv_sqrt2 = 0.70710678f;
    if (!c || !(is_op(div, "Div") ? std::abs(*c - 1.41421356f) < 1e-4f
                                  : std::abs(*c - inv_sqrt2) < 1e-4f))
      continue;
    const std::string x = div.inputs[0];
    auto erf_i = sole_consumer(graph, div.outputs[0]);
    if (!erf_i || !is_op(graph.nodes[*erf_i], "Erf")) continue;
    auto add_i = sole_consumer(graph, graph.nodes[*erf_i].outputs[0]);
    if (!add_i || !is_op(graph.nodes[*add_i], "Add")) continue;
    auto one = other_input(graph.nodes[*add_i], graph.nodes[*erf_i].outputs[0]);
    if (!one || scalar_initializer(graph, *one) != 1.f) continue;
    auto mul1_i = sole_consumer(graph, graph.nodes[*add_i].outputs[0]);
    if (!mul1_i || !is_op(graph.nodes[*mul1_i], "Mul")) continue;
    auto other = other_input(graph.nodes[*mul1_i], graph.nodes[*add_i].outputs[0]);
    if (!other) continue;
    std::set<std::size_t> doomed{i, *erf_i, *add_i, *mul1_i};
    std::string out;
    if (*other == x) {
      // x * (1 + erf) then * 0.5
      auto mul2_i = sole_consumer(graph, graph.nodes[*mul1_i].outputs[0]);
      if (!mul2_i || !is_op(graph.nodes[*mul2_i], "Mul")) continue;
      auto half = other_input(graph.nodes[*mul2_i], graph.nodes[*mul1_i].outputs[0]);
      if (!half || scalar_initializer(graph, *half) != 0.5f) continue;
      doomed.insert(*mul2_i);
      out = graph.nodes[*mul2_i].outputs[0];
    } else {
      // (x * 0.5) * (1 + erf)
      auto half_i = graph.producer(*other);
      if (!half_i || !is_op(graph.nodes[*half_i], "Mul")) continue;
      auto half = other_input(graph.nodes[*half_i], x);
      if (!half || scalar_initializer(graph, *half) != 0.5f) continue;
      if (sole_consumer(graph, *other) != mul1_i) continue;
      doomed.insert(*half_i);
      out = graph.nodes[*mul1_i].outputs[0];
    }
    Node gelu;
    gelu.name = div.name + ".gelu";
    gelu.op_type = "Gelu";
    gelu.inputs = {x};
    gelu.outputs = {out};
    notes.push_back(fmt::format("recognised Gelu from '{}'", div.name));
    const std::size_t first = *doomed.begin();
    graph.nodes[first] = gelu;
    doomed.erase(first);
    erase_nodes(graph, doomed);
    ++fused;
    i = first;
  }
  remove_dead_nodes(graph);
  return fused;
}

int fuse_activations(Graph& graph, std::vector<std::string>& notes) {
  int fused = 0;
  std::set<std::size_t> doomed;
  for (std::size_t i = 0; i < graph.nodes.size(); ++i) {
    Node& layer = graph.nodes[i];
    if (!(is_op(layer, "Conv") || is_op(layer, "Gemm") || is_op(layer, "MatMul")) ||
        layer.outputs.size() != 1 || layer.has_attr("bitplan_activation"))
      continue;
    auto next = sole_consumer(graph, layer.outputs[0]);
    if (!next || doomed.count(*next)) continue;
    const Node& act = graph.nodes[*next];
    if (is_op(act, "Relu")) {
      layer.attrs["bitplan_activation"] = std::string("Relu");
    } else if (is_op(act, "Clip") && graph.opset >= 11) {
      auto lo = act.has_input(1) ? scalar_initializer(graph, act.inputs[1])
                                 : std::optional<float>(-INFINITY);
      auto hi = act.has_input(2) ? scalar_initializer(graph, act.inputs[2])
                                 : std::optional<float>(INFINITY);
      if (!lo || !hi) continue;
      layer.attrs["bitplan_activation"] = std::string("Clip");
      layer.attrs["bitplan_clip_min"] = *lo;
      layer.attrs["bitplan_clip_max"] = *hi;
    } else {
      continue;
    }
    notes.push_back(fmt::format("fused {} '{}' into {} '{}'", act.op_type, act.name, layer.op_type,
                                layer.name));
    layer.outputs[0] = act.outputs[0];
    doomed.insert(*next);
    ++fused;
  }
  erase_nodes(graph, doomed);
  remove_dead_nodes(graph);
  return fused;
}

int fuse_matmul_epilogues(Graph& graph, std::vector<std::string>& notes) {
  int fused = 0;
  std::set<std::size_t> doomed;
  for (Node& mm : graph.nodes) {
    if (!is_op(mm, "MatMul") || mm.inputs.size() != 2 || mm.outputs.size() != 1 ||
        !mm.attrs.empty())
      continue;
    const Tensor* b = graph.initializer(mm.inputs[1]);
    // Stage 0: scale, 1: bias, 2: activation; each folds only after the ones before it.
    for (int stage = 0; stage < 3;) {
      auto next = sole_consumer(graph, mm.outputs[0]);
      if (!next || doomed.count(*next)) break;
      const Node& op = graph.nodes[*next];
      auto other = other_input(op, mm.outputs[0]);
      bool folded = false;
      if (stage == 0 && other && (is_op(op, "Div") || is_op(op, "Mul"))) {
        if (auto v = scalar_initializer(graph, *other); v && *v != 0.f && std::isfinite(*v)) {
          mm.attrs["bitplan_alpha"] = is_op(op, "Div") ? 1.f / *v : *v;
          folded = true;
          stage = 1;  // no bias after a scale: oneDNN would scale the bias too
        }
      } else if (stage <= 1 && other && is_op(op, "Add") && b && b->rank() == 2) {
        const Tensor* bias = graph.initializer(*other);
        if (bias && bias->dtype() == DType::f32 && bias->rank() >= 1 &&
            bias->dims().back() == b->dims()[1] && bias->numel() == b->dims()[1]) {
          mm.inputs.push_back(*other);
          mm.attrs["bitplan_fused_bias"] = std::int64_t{1};
          folded = true;
          stage = 1;
        }
      } else if (is_op(op, "Gelu") && op.inputs.size() == 1) {
        const std::string approx = op.attr_string("approximate", "none");
        if (approx == "none" || approx == "tanh") {
          mm.attrs["bitplan_activation"] = std::string(approx == "none" ? "Gelu" : "GeluTanh");
          folded = true;
          stage = 2;
        }
      }
      if (!folded) break;
      notes.push_back(fmt::format("fused {} '{}' into MatMul '{}'", op.op_type, op.name, mm.name));
      mm.outputs[0] = op.outputs[0];
      doomed.insert(*next);
      ++fused;
      ++stage;
    }
  }
  erase_nodes(graph, doomed);
  remove_dead_nodes(graph);
  return fused;
}

SimplifyReport simplify(Graph& graph) {
  SimplifyReport report;
  report.removed_identity = remove_identities(graph);
  report.folded_batchnorm = fold_batchnorm(graph, report.notes);
  report.fused_layernorm = fuse_layernorm(graph, report.notes);
  report.fused_gelu = fuse_gelu(graph, report.notes);
  report.fused_activation = fuse_activations(graph, report.notes);
  topological_sort(graph);
  return report;
}

}  // namespace bitplan
