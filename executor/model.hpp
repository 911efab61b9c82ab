// Loading a model for execution: ONNX import, the check that every op is supported (all
// unsupported ops listed at once), the import-time simplifications, and the sizes of free
// (symbolic) input dimensions.
#pragma once

#include <filesystem>
#include <span>
#include <string>

#include "ir/onnx_import.hpp"
#include "ir/passes.hpp"

namespace bitplan {

struct LoadedModel {
  Graph graph;
  SimplifyReport simplification;
};

// The shape a user gives one model input (`--input-shape images=N,3,640,640`). The first
// dimension may be kBatchAxis (written N): the batch axis, sized by the command's batch.
struct InputShape {
  static constexpr std::int64_t kBatchAxis = -1;
  std::string name;
  Dims dims;
};

// Gives the free dimensions of the named inputs the sizes in `shapes` (graph.inputs[].dims).
// The batch axis stays free when given as N (ExecutionPlan sizes it); a number there is
// refused for a free batch axis, since the command's batch sets it. Fails (usage) naming
// `flag`, the input and the rule when a name is no input or is given twice, the rank
// differs, or a fixed dimension is given another size.
void bind_input_shapes(Graph& graph, std::span<const InputShape> shapes,
                       std::string_view flag = "--input-shape");

// The dims after the batch axis of every input of `graph`, as "input_ids=128" or
// "images=3x224x224" (inputs joined by ','): what, besides the batch, sizes a run. A token
// model's time depends on its sequence, so profiles key a model's measurements by it.
std::string input_dims_text(const Graph& graph);

// load_onnx + check_supported + simplify, then bind_input_shapes when `shapes` is not empty.
LoadedModel load_model(const std::filesystem::path& path, std::span<const InputShape> shapes = {});

}  // namespace bitplan
