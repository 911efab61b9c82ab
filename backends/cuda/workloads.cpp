#include "backends/cuda/workloads.hpp"

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "backends/cuda/check.hpp"

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
  } catch (const nlohmann::json::exception& e) {
    throw ProfileError(where("layer fields") + ": " + e.what() +
                       ": every layer needs the fields of its op (see docs/cuda_backend.md)");
  }
  return w;
}

}  // namespace bitplan::cuda
