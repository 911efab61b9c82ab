#include "executor/op_registry.hpp"

namespace bitplan {

const ValueMeta& OpContext::input(std::size_t i) const {
  if (!has_input(i)) invalid("input {} is required but missing", i);
  return *inputs_[i];
}

const Tensor& OpContext::constant_input(std::size_t i, std::string_view role) const {
  const ValueMeta& meta = input(i);
  if (!meta.constant)
    unsupported(
        "input {} ({}) '{}' must be known before running (a constant or computed from "
        "shapes only); bitplan plans shapes statically",
        i, role, node_.inputs[i]);
  return *meta.constant;
}

std::int64_t OpContext::axis(std::int64_t axis, std::int64_t rank) const {
  if (axis < -rank || axis >= std::max<std::int64_t>(rank, 1))
    invalid("axis {} is out of range for rank {}", axis, rank);
  return axis < 0 ? axis + rank : axis;
}

const OpRegistry& OpRegistry::instance() {
  static const OpRegistry registry = [] {
    OpRegistry r;
    register_elementwise_ops(r);
    register_shape_ops(r);
    register_reduce_ops(r);
    register_nn_ops(r);
    register_onednn_ops(r);
    register_quant_ops(r);
    register_int8_ops(r);
    register_lowbit_ops(r);
    return r;
  }();
  return registry;
}

const OpBuilder* OpRegistry::find(const std::string& domain, const std::string& op_type) const {
  // bitplan's own ops (inserted by its passes, never read from user models' other
  // domains) are registered as "bitplan::<op>".
  std::string key = op_type;
  if (domain == "bitplan")
    key = "bitplan::" + op_type;
  else if (!domain.empty() && domain != "ai.onnx")
    return nullptr;
  auto it = builders_.find(key);
  return it == builders_.end() ? nullptr : &it->second;
}

std::vector<std::string> OpRegistry::op_types() const {
  std::vector<std::string> out;
  for (const auto& [name, _] : builders_) out.push_back(name);
  return out;
}

void OpRegistry::add(std::string op_type, OpBuilder builder) {
  BITPLAN_ASSERT(!builders_.count(op_type));
  builders_.emplace(std::move(op_type), std::move(builder));
}

}  // namespace bitplan
