// The graph IR every later step shares: ONNX semantics, bitplan's own types.
//
// Nodes are kept in topological order and keep the names of the ONNX graph (nodes without a
// name get "<op_type>_<index>"), so every layer in a plan or report maps back to the user's
// model. Values are identified by name; the empty name marks an omitted optional input.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "core/tensor.hpp"

namespace bitplan {

using AttrValue = std::variant<std::int64_t, float, std::string, std::vector<std::int64_t>,
                               std::vector<float>, std::vector<std::string>, Tensor>;

struct Node {
  std::string name;
  std::string op_type;
  std::string domain;  // "" = ai.onnx; "bitplan" for ops created by bitplan's own passes
  std::vector<std::string> inputs;
  std::vector<std::string> outputs;
  std::map<std::string, AttrValue> attrs;

  bool has_attr(const std::string& key) const { return attrs.count(key) != 0; }
  std::int64_t attr_int(const std::string& key, std::int64_t fallback) const;
  float attr_float(const std::string& key, float fallback) const;
  std::string attr_string(const std::string& key, const std::string& fallback) const;
  std::vector<std::int64_t> attr_ints(const std::string& key,
                                      std::vector<std::int64_t> fallback = {}) const;
  std::vector<float> attr_floats(const std::string& key) const;
  const Tensor* attr_tensor(const std::string& key) const;

  // Input i when present and non-empty.
  bool has_input(std::size_t i) const { return i < inputs.size() && !inputs[i].empty(); }
};

// A graph input or output. A negative dim is symbolic (usually the batch); `dim_names` keeps
// the ONNX dim_param ("batch") for reports.
struct ValueInfo {
  std::string name;
  DType dtype = DType::f32;
  Dims dims;
  std::vector<std::string> dim_names;
};

struct Graph {
  std::string name;
  std::int64_t opset = 0;         // ai.onnx opset the model was exported with
  std::vector<ValueInfo> inputs;  // runtime inputs (initializers excluded)
  std::vector<ValueInfo> outputs;
  std::map<std::string, Tensor> initializers;
  std::vector<Node> nodes;  // topological order

  const Tensor* initializer(const std::string& name) const;
  // Number of nodes that read each value (graph outputs count as one reader).
  std::map<std::string, int> consumer_counts() const;
  // Index of the node that produces `value`, if any.
  std::optional<std::size_t> producer(const std::string& value) const;
};

// Reorders nodes topologically (stable for graphs already in order); fails naming a node
// whose input is produced by no node, initializer or graph input, or when there is a cycle.
void topological_sort(Graph& graph);

// Removes nodes whose outputs nobody reads and initializers nobody uses.
void remove_dead_nodes(Graph& graph);

}  // namespace bitplan
