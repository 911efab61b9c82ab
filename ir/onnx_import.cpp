#include "ir/onnx_import.hpp"

#include <google/protobuf/io/coded_stream.h>
#include <onnx/onnx_pb.h>

#include <cstring>
#include <fstream>
#include <map>
#include <set>

#include "core/checked.hpp"
#include "core/files.hpp"
#include "core/quote.hpp"

namespace bitplan {
namespace fs = std::filesystem;

namespace {

struct ImportContext {
  fs::path model_path;  // for messages
  fs::path model_dir;   // external data must live below it
  ImportLimits limits;
};

// ONNX TensorProto.DataType values bitplan can hold.
std::optional<DType> dtype_from_onnx(int onnx_type) {
  switch (onnx_type) {
    case onnx::TensorProto::FLOAT:
      return DType::f32;
    case onnx::TensorProto::DOUBLE:
      return DType::f64;
    case onnx::TensorProto::INT64:
      return DType::i64;
    case onnx::TensorProto::INT32:
      return DType::i32;
    case onnx::TensorProto::INT8:
      return DType::i8;
    case onnx::TensorProto::UINT8:
      return DType::u8;
    case onnx::TensorProto::BOOL:
      return DType::boolean;
    default:
      return std::nullopt;
  }
}

DType require_dtype(int onnx_type, const std::string& what, const ImportContext& ctx) {
  auto dtype = dtype_from_onnx(onnx_type);
  if (!dtype)
    fail_unsupported(
        "loading '{}': {} has ONNX element type {} ({}); bitplan supports float, "
        "double, int64, int32, int8, uint8 and bool",
        ctx.model_path.string(), what,
        onnx::TensorProto::DataType_Name(static_cast<onnx::TensorProto::DataType>(onnx_type)),
        onnx_type);
  return *dtype;
}

// Resolves an external-data location inside the model folder, rejecting anything that
// could read outside it: absolute paths, "..", and symlinks whose target escapes.
fs::path resolve_external_path(const std::string& location, const std::string& tensor_name,
                               const ImportContext& ctx) {
  auto reject = [&](const char* rule) {
    fail_input("loading '{}': external data '{}' of tensor '{}' {}", ctx.model_path.string(),
               escaped(location), escaped(tensor_name), rule);
  };
  if (location.empty()) reject("is empty; a file name inside the model's folder is required");
  // The OS would see the path end at the first NUL byte: a different file than the one named.
  if (location.find('\0') != std::string::npos)
    reject("contains a NUL byte; a file name inside the model's folder is required");
  const fs::path rel(location);
  if (rel.is_absolute() || rel.has_root_name() || rel.has_root_directory())
    reject("is an absolute path; external data must be a relative path inside the model's folder");
  for (const auto& part : rel)
    if (part == "..") reject("contains '..'; external data must stay inside the model's folder");
  std::error_code ec;
  const fs::path dir =
      fs::weakly_canonical(ctx.model_dir.empty() ? fs::path(".") : ctx.model_dir, ec);
  const fs::path full = fs::weakly_canonical(dir / rel, ec);
  if (ec) reject("cannot be resolved");
  // After resolving symlinks the file must still lie below the model folder.
  auto [dir_end, _] = std::mismatch(dir.begin(), dir.end(), full.begin(), full.end());
  if (dir_end != dir.end())
    reject("resolves (through a symlink) to a file outside the model's folder");
  if (!fs::is_regular_file(full, ec)) reject("is not an existing regular file");
  return full;
}

// Where a tensor's external data lies; checked against the file before anything is
// allocated for it.
struct ExternalRange {
  fs::path file;
  std::string location;  // as written in the model, for messages
  std::uint64_t offset = 0;
};

ExternalRange locate_external(const onnx::TensorProto& proto, std::uint64_t expected_bytes,
                              const ImportContext& ctx) {
  ExternalRange range;
  std::optional<std::uint64_t> length;
  for (const auto& entry : proto.external_data()) {
    auto parse = [&](const std::string& text) -> std::uint64_t {
      try {
        std::size_t used = 0;
        auto v = std::stoull(text, &used);
        if (used != text.size() || text.front() == '-') throw std::invalid_argument(text);
        return v;
      } catch (const std::exception&) {
        fail_input(
            "loading '{}': external data {} '{}' of tensor '{}' is not a non-negative "
            "integer",
            ctx.model_path.string(), escaped(entry.key()), escaped(text), escaped(proto.name()));
      }
    };
    if (entry.key() == "location")
      range.location = entry.value();
    else if (entry.key() == "offset")
      range.offset = parse(entry.value());
    else if (entry.key() == "length")
      length = parse(entry.value());
  }
  range.file = resolve_external_path(range.location, proto.name(), ctx);
  std::error_code ec;
  const std::uint64_t file_size = fs::file_size(range.file, ec);
  if (ec)
    fail_input("loading '{}': cannot read external data '{}' of tensor '{}': {}",
               ctx.model_path.string(), escaped(range.location), escaped(proto.name()),
               ec.message());
  const std::uint64_t bytes = length.value_or(expected_bytes);
  if (bytes != expected_bytes)
    fail_input(
        "loading '{}': external data of tensor '{}' has length {} but its shape and type "
        "need {} bytes",
        ctx.model_path.string(), escaped(proto.name()), bytes, expected_bytes);
  if (range.offset > file_size || bytes > file_size - range.offset)
    fail_input(
        "loading '{}': external data of tensor '{}' needs {} bytes at offset {} of '{}', which "
        "has only {} bytes",
        ctx.model_path.string(), escaped(proto.name()), bytes, range.offset,
        escaped(range.location), file_size);
  return range;
}

void read_external(const ExternalRange& range, Tensor& t, const std::string& tensor_name,
                   const ImportContext& ctx) {
  std::ifstream in(range.file, std::ios::binary);
  in.seekg(static_cast<std::streamoff>(range.offset));
  const auto bytes = static_cast<std::streamsize>(t.nbytes());
  in.read(static_cast<char*>(t.raw()), bytes);
  if (in.gcount() != bytes)
    fail_input("loading '{}': could not read external data of tensor '{}' from '{}'",
               ctx.model_path.string(), escaped(tensor_name), escaped(range.location));
}

// The number of values a tensor without raw_data carries in its typed field (ONNX stores
// int32, int8, uint8 and bool in int32_data).
int typed_value_count(const onnx::TensorProto& proto, DType dtype) {
  switch (dtype) {
    case DType::f32:
      return proto.float_data_size();
    case DType::f64:
      return proto.double_data_size();
    case DType::i64:
      return proto.int64_data_size();
    case DType::i32:
    case DType::i8:
    case DType::u8:
    case DType::boolean:
      return proto.int32_data_size();
  }
  return 0;
}

template <typename Dst, typename Field>
void copy_typed(const Field& field, Tensor& t) {
  BITPLAN_ASSERT(static_cast<std::int64_t>(field.size()) == t.numel());
  Dst* dst = t.data<Dst>();
  for (int i = 0; i < field.size(); ++i) dst[i] = static_cast<Dst>(field[i]);
}

// Every size the proto claims is checked against the bytes it carries (raw_data, a typed
// field, an external file) before the tensor is allocated: a few bytes of header can claim
// terabytes.
Tensor tensor_from_proto(const onnx::TensorProto& proto, const ImportContext& ctx) {
  const std::string name = escaped(proto.name());
  const std::string what = fmt::format("tensor '{}'", name);
  const DType dtype = require_dtype(proto.data_type(), what, ctx);
  Dims dims(proto.dims().begin(), proto.dims().end());
  for (auto d : dims)
    if (d < 0)
      fail_input("loading '{}': tensor '{}' has negative dimension {}", ctx.model_path.string(),
                 name, d);
  const auto count = checked_product(dims);
  const auto expected_bytes =
      count ? checked_mul(static_cast<std::uint64_t>(*count), std::uint64_t{dtype_size(dtype)})
            : std::nullopt;
  if (!expected_bytes)
    fail_input("loading '{}': tensor '{}' has shape {}: its size overflows 64 bits",
               ctx.model_path.string(), name, to_string(dims));

  const bool external = proto.data_location() == onnx::TensorProto::EXTERNAL;
  std::optional<ExternalRange> range;
  if (external) {
    range = locate_external(proto, *expected_bytes, ctx);
  } else if (proto.has_raw_data()) {
    if (proto.raw_data().size() != *expected_bytes)
      fail_input("loading '{}': tensor '{}' has {} bytes of raw_data but shape {} of {} needs {}",
                 ctx.model_path.string(), name, proto.raw_data().size(), to_string(dims),
                 dtype_name(dtype), *expected_bytes);
  } else if (const int values = typed_value_count(proto, dtype); values != *count) {
    fail_input("loading '{}': tensor '{}' has {} values but its shape {} needs {}",
               ctx.model_path.string(), name, values, to_string(dims), *count);
  }

  Tensor t(dtype, std::move(dims));
  if (range) {
    read_external(*range, t, proto.name(), ctx);
  } else if (proto.has_raw_data()) {
    // raw_data is little-endian, as is every machine bitplan builds for.
    std::memcpy(t.raw(), proto.raw_data().data(), *expected_bytes);
  } else {
    switch (dtype) {
      case DType::f32:
        copy_typed<float>(proto.float_data(), t);
        break;
      case DType::f64:
        copy_typed<double>(proto.double_data(), t);
        break;
      case DType::i64:
        copy_typed<std::int64_t>(proto.int64_data(), t);
        break;
      case DType::i32:
        copy_typed<std::int32_t>(proto.int32_data(), t);
        break;
      case DType::i8:
        copy_typed<std::int8_t>(proto.int32_data(), t);
        break;
      case DType::u8:
        copy_typed<std::uint8_t>(proto.int32_data(), t);
        break;
      case DType::boolean:
        copy_typed<bool>(proto.int32_data(), t);
        break;
    }
  }
  return t;
}

ValueInfo value_info_from_proto(const onnx::ValueInfoProto& proto, const ImportContext& ctx) {
  ValueInfo info;
  info.name = proto.name();
  if (!proto.type().has_tensor_type())
    fail_unsupported(
        "loading '{}': value '{}' is not a tensor (sequences and maps are not "
        "supported)",
        ctx.model_path.string(), escaped(proto.name()));
  const auto& tt = proto.type().tensor_type();
  info.dtype = require_dtype(tt.elem_type(), fmt::format("value '{}'", escaped(proto.name())), ctx);
  if (tt.has_shape()) {
    for (const auto& d : tt.shape().dim()) {
      if (d.has_dim_value() && d.dim_value() < 0)  // -1 would read as a free dimension
        fail_input("loading '{}': value '{}' has negative dimension {}", ctx.model_path.string(),
                   escaped(proto.name()), d.dim_value());
      info.dims.push_back(d.has_dim_value() ? d.dim_value() : -1);
      info.dim_names.push_back(d.has_dim_param() ? d.dim_param() : "");
    }
  }
  return info;
}

AttrValue attr_from_proto(const onnx::AttributeProto& a, const std::string& node_name,
                          const ImportContext& ctx) {
  using A = onnx::AttributeProto;
  switch (a.type()) {
    case A::INT:
      return a.i();
    case A::FLOAT:
      return a.f();
    case A::STRING:
      return a.s();
    case A::INTS:
      return std::vector<std::int64_t>(a.ints().begin(), a.ints().end());
    case A::FLOATS:
      return std::vector<float>(a.floats().begin(), a.floats().end());
    case A::STRINGS:
      return std::vector<std::string>(a.strings().begin(), a.strings().end());
    case A::TENSOR:
      return tensor_from_proto(a.t(), ctx);
    default:
      fail_unsupported(
          "loading '{}': attribute '{}' of node '{}' has type {}, which bitplan does "
          "not support (subgraphs, sparse tensors and type protos)",
          ctx.model_path.string(), escaped(a.name()), escaped(node_name),
          A::AttributeType_Name(a.type()));
  }
}

// Constant nodes carry their value in one of several attributes; all become initializers.
Tensor constant_value(const Node& node, const ImportContext& ctx) {
  if (const Tensor* t = node.attr_tensor("value")) return *t;
  if (node.has_attr("value_float")) return Tensor::scalar<float>(node.attr_float("value_float", 0));
  if (node.has_attr("value_int"))
    return Tensor::scalar<std::int64_t>(node.attr_int("value_int", 0));
  if (node.has_attr("value_floats")) {
    auto v = node.attr_floats("value_floats");
    return Tensor::from_values<float>({static_cast<std::int64_t>(v.size())}, v);
  }
  if (node.has_attr("value_ints")) {
    auto v = node.attr_ints("value_ints");
    return Tensor::from_values<std::int64_t>({static_cast<std::int64_t>(v.size())}, v);
  }
  fail_unsupported(
      "loading '{}': Constant node '{}' has no value bitplan can read (value, "
      "value_float(s), value_int(s) are supported)",
      ctx.model_path.string(), escaped(node.name));
}

template <typename Message>
void parse_bounded(Message& message, const std::string& bytes, const ImportLimits& limits,
                   const fs::path& path, std::string_view what) {
  google::protobuf::io::CodedInputStream stream(reinterpret_cast<const std::uint8_t*>(bytes.data()),
                                                static_cast<int>(bytes.size()));
  stream.SetTotalBytesLimit(
      static_cast<int>(std::min<std::uint64_t>(limits.max_model_bytes, INT32_MAX)));
  stream.SetRecursionLimit(limits.max_recursion);
  if (!message.ParseFromCodedStream(&stream) || !stream.ConsumedEntireMessage())
    fail_input(
        "loading '{}': not a valid ONNX {} (protobuf parsing failed: truncated or corrupt "
        "file)",
        path.string(), what);
}

// ONNX graphs are in SSA form: each value name is defined once, by one node output, one
// initializer or one graph input (an initializer may also be listed as an input, as old
// exporters do). A second definition would make the result depend on node order.
void check_single_definitions(const onnx::GraphProto& g, const fs::path& path) {
  std::map<std::string, std::string> definer;  // value name -> what defines it, for messages
  std::set<std::string> initializer_names;
  for (const auto& init : g.initializer()) {
    if (!initializer_names.insert(init.name()).second)
      fail_input(
          "loading '{}': initializer '{}' is defined twice: each value name must be "
          "defined once",
          path.string(), escaped(init.name()));
    definer[init.name()] = fmt::format("the initializer '{}'", escaped(init.name()));
  }
  for (const auto& in : g.input()) {
    const bool also_initializer = initializer_names.count(in.name()) > 0;
    const auto [it, inserted] =
        definer.emplace(in.name(), fmt::format("the graph input '{}'", escaped(in.name())));
    if (!inserted && !also_initializer)
      fail_input(
          "loading '{}': graph input '{}' is listed twice: each value name must be "
          "defined once",
          path.string(), escaped(in.name()));
  }
  for (int i = 0; i < g.node_size(); ++i) {
    const auto& node = g.node(i);
    // Unnamed nodes get the name the import gives them.
    const std::string node_name =
        node.name().empty() ? fmt::format("{}_{}", node.op_type(), i) : node.name();
    const std::string node_label =
        fmt::format("node '{}' ({})", escaped(node_name), escaped(node.op_type()));
    for (const auto& out : node.output()) {
      if (out.empty()) continue;  // an optional output left out
      const auto [it, inserted] = definer.emplace(out, fmt::format("an output of {}", node_label));
      if (!inserted)
        fail_input(
            "loading '{}': output '{}' of {} is already {}: each value name must be "
            "defined once (ONNX graphs are in SSA form)",
            path.string(), escaped(out), node_label, it->second);
    }
  }
}

}  // namespace

Graph load_onnx(const fs::path& path, const ImportLimits& limits) {
  ImportContext ctx{path, path.parent_path(), limits};
  const std::string bytes = read_file(path, limits.max_model_bytes, "ONNX model");
  onnx::ModelProto model;
  parse_bounded(model, bytes, limits, path, "model");
  if (!model.has_graph())
    fail_input("loading '{}': the model has no graph (is this an ONNX model file?)", path.string());

  Graph graph;
  graph.name = model.graph().name();
  for (const auto& opset : model.opset_import())
    if (opset.domain().empty() || opset.domain() == "ai.onnx") graph.opset = opset.version();
  if (graph.opset == 0)
    fail_input("loading '{}': the model imports no ai.onnx opset", path.string());
  if (graph.opset < kMinOpset || graph.opset > kMaxOpset)
    fail_unsupported("loading '{}': opset {} is outside the supported range {}..{}", path.string(),
                     graph.opset, kMinOpset, kMaxOpset);

  const auto& g = model.graph();
  check_single_definitions(g, path);
  for (const auto& init : g.initializer()) {
    if (init.name().empty()) fail_input("loading '{}': an initializer has no name", path.string());
    graph.initializers[init.name()] = tensor_from_proto(init, ctx);
  }
  // Old exporters list initializers among the inputs too; those are not runtime inputs.
  for (const auto& in : g.input())
    if (!graph.initializers.count(in.name()))
      graph.inputs.push_back(value_info_from_proto(in, ctx));
  for (const auto& out : g.output()) graph.outputs.push_back(value_info_from_proto(out, ctx));

  std::set<std::string> names;
  for (int i = 0; i < g.node_size(); ++i) {
    const auto& np = g.node(i);
    Node node;
    node.op_type = np.op_type();
    node.domain = np.domain() == "ai.onnx" ? "" : np.domain();
    node.name = np.name().empty() ? fmt::format("{}_{}", np.op_type(), i) : np.name();
    // Names identify layers in plans; make duplicates unique rather than ambiguous.
    while (!names.insert(node.name).second) node.name += "_";
    node.inputs.assign(np.input().begin(), np.input().end());
    node.outputs.assign(np.output().begin(), np.output().end());
    for (const auto& a : np.attribute()) {
      if (a.type() == onnx::AttributeProto::GRAPH || a.type() == onnx::AttributeProto::GRAPHS)
        continue;  // control flow: the op itself is reported as unsupported by the executor
      node.attrs[a.name()] = attr_from_proto(a, node.name, ctx);
    }
    if (node.op_type == "Constant" && node.domain.empty()) {
      if (node.outputs.size() != 1)
        fail_input("loading '{}': Constant node '{}' must have one output", path.string(),
                   escaped(node.name));
      graph.initializers[node.outputs[0]] = constant_value(node, ctx);
      continue;
    }
    graph.nodes.push_back(std::move(node));
  }
  topological_sort(graph);
  return graph;
}

std::vector<std::string> peek_op_types(const fs::path& path) {
  const ImportLimits limits;
  const std::string bytes = read_file(path, limits.max_model_bytes, "ONNX model");
  onnx::ModelProto model;
  parse_bounded(model, bytes, limits, path, "model");
  std::set<std::string> ops;
  for (const auto& node : model.graph().node()) {
    if (node.op_type() == "Constant" && (node.domain().empty() || node.domain() == "ai.onnx"))
      continue;  // becomes an initializer at import
    ops.insert(node.domain().empty() || node.domain() == "ai.onnx"
                   ? node.op_type()
                   : node.domain() + "::" + node.op_type());
  }
  return {ops.begin(), ops.end()};
}

Tensor load_tensor_pb(const fs::path& path) {
  ImportContext ctx{path, path.parent_path(), {}};
  const std::string bytes = read_file(path, ctx.limits.max_model_bytes, "ONNX tensor");
  onnx::TensorProto proto;
  parse_bounded(proto, bytes, ctx.limits, path, "tensor");
  return tensor_from_proto(proto, ctx);
}

}  // namespace bitplan
