#include "ir/graph.hpp"

#include <set>

#include "core/quote.hpp"

namespace bitplan {

namespace {
template <typename T>
const T* find_attr(const Node& node, const std::string& key) {
  auto it = node.attrs.find(key);
  if (it == node.attrs.end()) return nullptr;
  const T* value = std::get_if<T>(&it->second);
  if (!value)
    fail_input("reading attribute '{}' of node '{}' ({}): the attribute has another type",
               escaped(key), escaped(node.name), escaped(node.op_type));
  return value;
}
}  // namespace

std::int64_t Node::attr_int(const std::string& key, std::int64_t fallback) const {
  const auto* v = find_attr<std::int64_t>(*this, key);
  return v ? *v : fallback;
}
float Node::attr_float(const std::string& key, float fallback) const {
  const auto* v = find_attr<float>(*this, key);
  return v ? *v : fallback;
}
std::string Node::attr_string(const std::string& key, const std::string& fallback) const {
  const auto* v = find_attr<std::string>(*this, key);
  return v ? *v : fallback;
}
std::vector<std::int64_t> Node::attr_ints(const std::string& key,
                                          std::vector<std::int64_t> fallback) const {
  const auto* v = find_attr<std::vector<std::int64_t>>(*this, key);
  return v ? *v : fallback;
}
std::vector<float> Node::attr_floats(const std::string& key) const {
  const auto* v = find_attr<std::vector<float>>(*this, key);
  return v ? *v : std::vector<float>{};
}
const Tensor* Node::attr_tensor(const std::string& key) const {
  return find_attr<Tensor>(*this, key);
}

const Tensor* Graph::initializer(const std::string& name) const {
  auto it = initializers.find(name);
  return it == initializers.end() ? nullptr : &it->second;
}

std::map<std::string, int> Graph::consumer_counts() const {
  std::map<std::string, int> counts;
  for (const auto& node : nodes)
    for (const auto& in : node.inputs)
      if (!in.empty()) ++counts[in];
  for (const auto& out : outputs) ++counts[out.name];
  return counts;
}

std::optional<std::size_t> Graph::producer(const std::string& value) const {
  for (std::size_t i = 0; i < nodes.size(); ++i)
    for (const auto& out : nodes[i].outputs)
      if (out == value) return i;
  return std::nullopt;
}

void topological_sort(Graph& graph) {
  std::set<std::string> available;
  for (const auto& in : graph.inputs) available.insert(in.name);
  for (const auto& [name, _] : graph.initializers) available.insert(name);

  std::vector<Node> ordered;
  ordered.reserve(graph.nodes.size());
  std::vector<bool> placed(graph.nodes.size(), false);
  // Repeated stable passes: O(n^2) worst case, linear for graphs exported in order.
  bool progress = true;
  while (ordered.size() < graph.nodes.size() && progress) {
    progress = false;
    for (std::size_t i = 0; i < graph.nodes.size(); ++i) {
      if (placed[i]) continue;
      const Node& node = graph.nodes[i];
      bool ready = true;
      for (const auto& in : node.inputs)
        if (!in.empty() && !available.count(in)) ready = false;
      if (!ready) continue;
      for (const auto& out : node.outputs) available.insert(out);
      ordered.push_back(node);
      placed[i] = true;
      progress = true;
    }
  }
  if (ordered.size() < graph.nodes.size()) {
    std::set<std::string> produced;
    for (const auto& node : graph.nodes) produced.insert(node.outputs.begin(), node.outputs.end());
    for (std::size_t i = 0; i < graph.nodes.size(); ++i) {
      if (placed[i]) continue;
      for (const auto& in : graph.nodes[i].inputs)
        if (!in.empty() && !available.count(in) && !produced.count(in))
          fail_input(
              "ordering graph '{}': node '{}' ({}) reads '{}', which no node, initializer "
              "or graph input provides",
              escaped(graph.name), escaped(graph.nodes[i].name), escaped(graph.nodes[i].op_type),
              escaped(in));
      fail_input(
          "ordering graph '{}': node '{}' ({}) is part of a cycle; ONNX graphs must be "
          "acyclic",
          escaped(graph.name), escaped(graph.nodes[i].name), escaped(graph.nodes[i].op_type));
    }
  }
  graph.nodes = std::move(ordered);
  for (const auto& out : graph.outputs)
    if (!available.count(out.name))
      fail_input("checking graph '{}': output '{}' is produced by no node", escaped(graph.name),
                 escaped(out.name));
}

void remove_dead_nodes(Graph& graph) {
  std::set<std::string> live;
  for (const auto& out : graph.outputs) live.insert(out.name);
  std::vector<Node> kept;
  for (auto it = graph.nodes.rbegin(); it != graph.nodes.rend(); ++it) {
    bool used = false;
    for (const auto& out : it->outputs) used = used || live.count(out);
    if (!used) continue;
    for (const auto& in : it->inputs)
      if (!in.empty()) live.insert(in);
    kept.push_back(std::move(*it));
  }
  graph.nodes.assign(std::make_move_iterator(kept.rbegin()), std::make_move_iterator(kept.rend()));
  std::erase_if(graph.initializers, [&](const auto& kv) { return !live.count(kv.first); });
}

}  // namespace bitplan
