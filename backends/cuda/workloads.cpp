#include "backends/cuda/workloads.hpp"

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "backends/cuda/errors.hpp"

namespace bitplan::cuda {

std::int64_t LayerShape::out_h() const {
  return (h + pad_top + pad_bottom - dilation_h * (r - 1) - 1) / stride_h + 1;
}
std::int64_t LayerShape::out_w() const {
  return (w + pad_left + pad_right - dilation_w * (s - 1) - 1) / stride_w + 1;
}
std::int64_t LayerShape::input_elements() const {
  return op == LayerOp::gemm ? m * k : batch * c * h * w;
}
std::int64_t LayerShape::output_elements() const {
  return op == LayerOp::gemm ? m * n : batch * k * out_h() * out_w();
}
std::int64_t LayerShape::weight_elements() const {
  return op == LayerOp::gemm ? k * n : k * (c / groups) * r * s;
}
double LayerShape::flops() const {
  if (op == LayerOp::gemm) return 2.0 * double(m) * double(n) * double(k);
  return 2.0 * double(output_elements()) * double(c / groups) * double(r) * double(s);
}

std::string layer_key(const LayerShape& s) {
  std::ostringstream o;
  if (s.op == LayerOp::gemm) {
    o << "gemm:m" << s.m << ":n" << s.n << ":k" << s.k;
  } else {
    o << "conv:n" << s.batch << ":c" << s.c << ":h" << s.h << ":w" << s.w << ":k" << s.k << ":r"
      << s.r << ":s" << s.s << ":st" << s.stride_h << "x" << s.stride_w << ":p" << s.pad_top << "x"
      << s.pad_left << "x" << s.pad_bottom << "x" << s.pad_right << ":d" << s.dilation_h << "x"
      << s.dilation_w << ":g" << s.groups;
  }
  return o.str();
}

namespace {

[[noreturn]] void bad_key(const std::string& key, const std::string& rule) {
  throw ProfileError("parsing layer key: '" + key + "': " + rule);
}

// Splits "st2x2" after its prefix into numbers separated by 'x'.
std::vector<std::int64_t> numbers_after(const std::string& key, const std::string& field,
                                        const std::string& prefix, std::size_t count) {
  if (field.rfind(prefix, 0) != 0) bad_key(key, "expected field '" + prefix + "...'");
  std::vector<std::int64_t> values;
  std::stringstream rest(field.substr(prefix.size()));
  std::string part;
  while (std::getline(rest, part, 'x')) {
    std::size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(part, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (part.empty() || used != part.size() || v < 0)
      bad_key(key, "field '" + field + "' must hold non-negative integers");
    values.push_back(v);
  }
  if (values.size() != count)
    bad_key(key, "field '" + field + "' must hold " + std::to_string(count) + " numbers");
  return values;
}

}  // namespace

std::int64_t OpShape::elements_read() const {
  switch (kind) {
    case OpKind::eltwise:
    case OpKind::copy: {
      std::int64_t total = 0;
      for (std::int64_t v : inputs) total += v;
      return total;
    }
    case OpKind::reduce:
    case OpKind::rownorm:
      return rows * cols;
    case OpKind::bmm:
      return batch * (m * k + n * k);
  }
  return 0;
}

std::int64_t OpShape::elements_written() const {
  switch (kind) {
    case OpKind::eltwise:
    case OpKind::copy:
      return outputs;
    case OpKind::reduce:
      return rows;
    case OpKind::rownorm:
      return rows * cols;
    case OpKind::bmm:
      return batch * m * n;
  }
  return 0;
}

std::string op_key(const OpShape& s) {
  std::ostringstream o;
  switch (s.kind) {
    case OpKind::eltwise:
      o << "eltwise:o" << s.outputs << ":i";
      for (std::size_t i = 0; i < s.inputs.size(); ++i) o << (i ? "x" : "") << s.inputs[i];
      break;
    case OpKind::reduce:
      o << "reduce:r" << s.rows << ":c" << s.cols;
      break;
    case OpKind::rownorm:
      o << "rownorm:r" << s.rows << ":c" << s.cols;
      break;
    case OpKind::copy:
      o << "copy:i" << (s.inputs.empty() ? 0 : s.inputs[0]) << ":o" << s.outputs;
      break;
    case OpKind::bmm:
      o << "bmm:b" << s.batch << ":m" << s.m << ":n" << s.n << ":k" << s.k;
      break;
  }
  return o.str();
}

bool is_op_key(const std::string& key) {
  const std::string head = key.substr(0, key.find(':'));
  return head == "eltwise" || head == "reduce" || head == "rownorm" || head == "copy" ||
         head == "bmm";
}

OpShape parse_op_key(const std::string& key) {
  std::vector<std::string> fields;
  std::stringstream in(key);
  std::string field;
  while (std::getline(in, field, ':')) fields.push_back(field);
  const auto one = [&](std::size_t i, const std::string& prefix) {
    const std::int64_t v = numbers_after(key, fields[i], prefix, 1)[0];
    if (v <= 0) bad_key(key, "field '" + fields[i] + "' must be positive");
    return v;
  };
  OpShape s;
  const std::string head = fields.empty() ? "" : fields[0];
  if (head == "eltwise" && fields.size() == 3) {
    s.kind = OpKind::eltwise;
    s.outputs = one(1, "o");
    const std::size_t count = std::count(fields[2].begin(), fields[2].end(), 'x') + 1;
    s.inputs = numbers_after(key, fields[2], "i", count);
    if (s.inputs.size() > 4) bad_key(key, "an eltwise op takes at most 4 inputs");
    for (std::int64_t v : s.inputs)
      if (v <= 0) bad_key(key, "input sizes must be positive");
  } else if ((head == "reduce" || head == "rownorm") && fields.size() == 3) {
    s.kind = head == "reduce" ? OpKind::reduce : OpKind::rownorm;
    s.rows = one(1, "r");
    s.cols = one(2, "c");
  } else if (head == "copy" && fields.size() == 3) {
    s.kind = OpKind::copy;
    s.inputs = {one(1, "i")};
    s.outputs = one(2, "o");
  } else if (head == "bmm" && fields.size() == 5) {
    s.kind = OpKind::bmm;
    s.batch = one(1, "b");
    s.m = one(2, "m");
    s.n = one(3, "n");
    s.k = one(4, "k");
  } else {
    bad_key(key,
            "expected eltwise:o{N}:i{a}x{b}..., reduce:r{R}:c{C}, rownorm:r{R}:c{C}, "
            "copy:i{I}:o{O} or bmm:b{B}:m{M}:n{N}:k{K}");
  }
  if (op_key(s) != key) bad_key(key, "not in canonical form (expected '" + op_key(s) + "')");
  return s;
}

LayerShape parse_layer_key(const std::string& key) {
  std::vector<std::string> fields;
  std::stringstream in(key);
  std::string field;
  while (std::getline(in, field, ':')) fields.push_back(field);
  LayerShape s;
  if (!fields.empty() && fields[0] == "gemm" && fields.size() == 4) {
    s.op = LayerOp::gemm;
    s.m = numbers_after(key, fields[1], "m", 1)[0];
    s.n = numbers_after(key, fields[2], "n", 1)[0];
    s.k = numbers_after(key, fields[3], "k", 1)[0];
    if (s.m == 0 || s.n == 0 || s.k == 0) bad_key(key, "m, n and k must be positive");
  } else if (!fields.empty() && fields[0] == "conv" && fields.size() == 12) {
    s.op = LayerOp::conv;
    s.batch = numbers_after(key, fields[1], "n", 1)[0];
    s.c = numbers_after(key, fields[2], "c", 1)[0];
    s.h = numbers_after(key, fields[3], "h", 1)[0];
    s.w = numbers_after(key, fields[4], "w", 1)[0];
    s.k = numbers_after(key, fields[5], "k", 1)[0];
    s.r = numbers_after(key, fields[6], "r", 1)[0];
    s.s = numbers_after(key, fields[7], "s", 1)[0];
    const auto st = numbers_after(key, fields[8], "st", 2);
    const auto p = numbers_after(key, fields[9], "p", 4);
    const auto d = numbers_after(key, fields[10], "d", 2);
    s.groups = numbers_after(key, fields[11], "g", 1)[0];
    s.stride_h = st[0], s.stride_w = st[1];
    s.pad_top = p[0], s.pad_left = p[1], s.pad_bottom = p[2], s.pad_right = p[3];
    s.dilation_h = d[0], s.dilation_w = d[1];
    if (s.batch == 0 || s.c == 0 || s.h == 0 || s.w == 0 || s.k == 0 || s.r == 0 || s.s == 0 ||
        s.stride_h == 0 || s.stride_w == 0 || s.dilation_h == 0 || s.dilation_w == 0 ||
        s.groups == 0)
      bad_key(key, "sizes, strides, dilations and groups must be positive");
    if (s.c % s.groups != 0 || s.k % s.groups != 0)
      bad_key(key, "c and k must be multiples of the group count");
    if (s.out_h() <= 0 || s.out_w() <= 0) bad_key(key, "the output would be empty");
  } else {
    bad_key(key,
            "expected gemm:m{M}:n{N}:k{K} or "
            "conv:n{N}:c{C}:h{H}:w{W}:k{K}:r{R}:s{S}:st{sh}x{sw}:p{t}x{l}x{b}x{r}:d{dh}x{dw}:g{G}");
  }
  if (layer_key(s) != key) bad_key(key, "not in canonical form (expected '" + layer_key(s) + "')");
  return s;
}

Workloads read_workloads(const std::string& path) {
  std::ifstream file(path);
  if (!file) throw ProfileError("reading workloads: '" + path + "': the file must be readable");
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(file);
  } catch (const nlohmann::json::exception& e) {
    throw ProfileError("reading workloads: '" + path + "': must be JSON (" + e.what() + ")");
  }
  const auto where = [&](const std::string& what) {
    return "reading workloads '" + path + "': " + what;
  };
  if (!doc.is_object() || doc.value("bitplan_workloads", 0) != 1)
    throw ProfileError(where("top level") + ": must be an object with \"bitplan_workloads\": 1");
  Workloads w;
  w.source = path;
  try {
    w.model = doc.value("model", std::string());
    w.batch = doc.value("batch", std::int64_t{0});
    for (const auto& p : doc.value("precisions", nlohmann::json::array()))
      w.precisions.push_back(parse_precision(p.get<std::string>()));
    if (!doc.contains("layers") || !doc["layers"].is_array())
      throw ProfileError(where("\"layers\"") + ": must be an array");
    for (const auto& layer : doc["layers"]) {
      WorkloadLayer l;
      l.name = layer.value("name", std::string());
      l.key = layer.at("key").get<std::string>();
      l.shape = parse_layer_key(l.key);
      // The fields must describe the same layer as the key.
      const std::string op = layer.at("op").get<std::string>();
      const bool is_gemm = l.shape.op == LayerOp::gemm;
      if (op != (is_gemm ? "gemm" : "conv"))
        throw ProfileError(where("layer '" + l.name + "' op '" + op + "'") +
                           ": must match its key '" + l.key + "'");
      LayerShape fields;
      fields.op = l.shape.op;
      if (is_gemm) {
        fields.m = layer.at("m"), fields.n = layer.at("n"), fields.k = layer.at("k");
      } else {
        fields.batch = layer.at("n"), fields.c = layer.at("c"), fields.h = layer.at("h");
        fields.w = layer.at("w"), fields.k = layer.at("k"), fields.r = layer.at("r");
        fields.s = layer.at("s"), fields.groups = layer.at("groups");
        fields.stride_h = layer.at("stride")[0], fields.stride_w = layer.at("stride")[1];
        fields.pad_top = layer.at("pad")[0], fields.pad_left = layer.at("pad")[1];
        fields.pad_bottom = layer.at("pad")[2], fields.pad_right = layer.at("pad")[3];
        fields.dilation_h = layer.at("dilation")[0], fields.dilation_w = layer.at("dilation")[1];
      }
      if (layer_key(fields) != l.key)
        throw ProfileError(where("layer '" + l.name + "'") + ": fields give key '" +
                           layer_key(fields) + "' but \"key\" is '" + l.key + "': they must agree");
      w.layers.push_back(std::move(l));
    }
    for (const auto& op : doc.value("ops", nlohmann::json::array())) {
      WorkloadOp o;
      o.name = op.value("name", std::string());
      o.op_type = op.value("op_type", std::string());
      o.layers_before = op.at("layers_before").get<std::size_t>();
      if (o.layers_before > w.layers.size())
        throw ProfileError(where("op '" + o.name + "'") + ": \"layers_before\" " +
                           std::to_string(o.layers_before) + " exceeds the file's " +
                           std::to_string(w.layers.size()) + " layers");
      if (op.contains("unsupported")) {
        o.unsupported = op.at("unsupported").get<std::string>();
      } else {
        o.key = op.at("key").get<std::string>();
        o.shape = parse_op_key(o.key);
      }
      w.ops.push_back(std::move(o));
    }
  } catch (const nlohmann::json::exception& e) {
    throw ProfileError(where("layer fields") + ": " + e.what() +
                       ": every layer needs the fields of its op (see docs/cuda_backend.md)");
  }
  return w;
}

}  // namespace bitplan::cuda
