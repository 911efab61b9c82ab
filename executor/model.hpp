// Loading a model for execution: ONNX import, the check that every op is supported (all
// unsupported ops listed at once), and the import-time simplifications.
#pragma once

#include <filesystem>

#include "ir/onnx_import.hpp"
#include "ir/passes.hpp"

namespace bitplan {

struct LoadedModel {
  Graph graph;
  SimplifyReport simplification;
};

LoadedModel load_model(const std::filesystem::path& path);

}  // namespace bitplan
