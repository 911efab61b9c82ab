// ONNX import: ModelProto -> Graph.
//
// Parsing is bounded (total bytes, recursion depth), initializers come from typed fields,
// raw_data or external data files; external data is only read from regular files inside
// the model's own folder, and every offset/length is checked against the file.
#pragma once

#include <filesystem>

#include "ir/graph.hpp"

namespace bitplan {

struct ImportLimits {
  std::uint64_t max_model_bytes = std::uint64_t{2} << 30;  // protobuf's own hard limit is 2 GiB
  int max_recursion = 64;
  std::uint64_t max_external_bytes = std::uint64_t{64} << 30;
};

// Opset range whose semantics the importer and executor implement.
inline constexpr std::int64_t kMinOpset = 1;
inline constexpr std::int64_t kMaxOpset = 18;

// Loads an ONNX model file. Constant nodes become initializers; nodes are put in
// topological order; nodes without a name are named "<op_type>_<index>".
Graph load_onnx(const std::filesystem::path& path, const ImportLimits& limits = {});

// The op types a model uses ("domain::op" outside ai.onnx), read without converting any
// tensor: lets callers report every unsupported op even when loading would fail earlier.
std::vector<std::string> peek_op_types(const std::filesystem::path& path);

// Loads one serialized TensorProto (the ONNX backend tests' input_0.pb / output_0.pb).
Tensor load_tensor_pb(const std::filesystem::path& path);

}  // namespace bitplan
