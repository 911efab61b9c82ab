#include "executor/model.hpp"

#include <fmt/ranges.h>

#include "executor/plan.hpp"

namespace bitplan {

LoadedModel load_model(const std::filesystem::path& path) {
  // Unsupported ops are reported first and all at once (check_supported names their nodes).
  // An unknown op may use a type bitplan cannot load at all; then the op list is still
  // what the user needs to read, so it leads the message.
  const auto& registry = OpRegistry::instance();
  std::vector<std::string> unknown;
  for (const auto& op : peek_op_types(path))
    if (!registry.find("", op)) unknown.push_back(op);
  LoadedModel model;
  try {
    model.graph = load_onnx(path);
  } catch (const Error& e) {
    if (unknown.empty()) throw;
    fail_unsupported(
        "model '{}' uses {} op type(s) bitplan does not support: {} (loading also "
        "failed: {})",
        path.string(), unknown.size(), fmt::join(unknown, ", "), e.what());
  }
  check_supported(model.graph);
  model.simplification = simplify(model.graph);
  return model;
}

}  // namespace bitplan
