#include "executor/model.hpp"

#include <fmt/ranges.h>

#include <algorithm>
#include <set>

#include "executor/plan.hpp"

namespace bitplan {

namespace {

std::string shape_text(const Dims& dims) {
  std::vector<std::string> parts;
  for (std::size_t i = 0; i < dims.size(); ++i)
    parts.push_back(dims[i] >= 0 ? std::to_string(dims[i]) : i == 0 ? "N" : "?");
  return fmt::format("{}", fmt::join(parts, ","));
}

}  // namespace

std::string input_dims_text(const Graph& graph) {
  std::vector<std::string> parts;
  for (const ValueInfo& input : graph.inputs) {
    const Dims sample(input.dims.begin() + (input.dims.empty() ? 0 : 1), input.dims.end());
    parts.push_back(fmt::format("{}={}", input.name, fmt::join(sample, "x")));
  }
  return fmt::format("{}", fmt::join(parts, ","));
}

void bind_input_shapes(Graph& graph, std::span<const InputShape> shapes, std::string_view flag) {
  std::set<std::string> seen;
  for (const InputShape& shape : shapes) {
    const std::string given = fmt::format("{} {}={}", flag, shape.name, shape_text(shape.dims));
    auto input = std::find_if(graph.inputs.begin(), graph.inputs.end(),
                              [&](const ValueInfo& in) { return in.name == shape.name; });
    if (input == graph.inputs.end()) {
      std::vector<std::string> names;
      for (const auto& in : graph.inputs) names.push_back(in.name);
      fail(ErrorKind::usage, "{}: the model '{}' has no input '{}'; its inputs are {}", given,
           graph.name, shape.name, fmt::join(names, ", "));
    }
    if (!seen.insert(shape.name).second)
      fail(ErrorKind::usage, "{}: input '{}' is given more than one shape", given, shape.name);
    if (shape.dims.size() != input->dims.size())
      fail(ErrorKind::usage, "{}: input '{}' has {} dimensions ({}), not {}", given, shape.name,
           input->dims.size(), shape_text(input->dims), shape.dims.size());
    for (std::size_t axis = 0; axis < shape.dims.size(); ++axis) {
      const std::int64_t model = input->dims[axis], wanted = shape.dims[axis];
      if (wanted == InputShape::kBatchAxis) {
        if (axis != 0)
          fail(ErrorKind::usage, "{}: N (the batch) may only be the first dimension", given);
        continue;  // a fixed first dimension stays what the model says
      }
      if (wanted < 1)
        fail(ErrorKind::usage, "{}: dimension {} is {}; sizes are positive integers", given, axis,
             wanted);
      if (model >= 0 && model != wanted)
        fail(ErrorKind::usage, "{}: dimension {} of input '{}' is fixed to {} by the model", given,
             axis, shape.name, model);
      if (model < 0 && axis == 0)
        fail(ErrorKind::usage,
             "{}: dimension 0 of input '{}' is its batch axis, sized by the command's batch; "
             "write it as N ({}=N{}{})",
             given, shape.name, shape.name, shape.dims.size() > 1 ? "," : "",
             shape_text(Dims(shape.dims.begin() + 1, shape.dims.end())));
      input->dims[axis] = wanted;
    }
  }
}

LoadedModel load_model(const std::filesystem::path& path, std::span<const InputShape> shapes) {
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
  if (!shapes.empty()) bind_input_shapes(model.graph, shapes);
  return model;
}

}  // namespace bitplan
