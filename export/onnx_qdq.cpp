// onnx-qdq: the original ONNX graph (node names, structure and unquantized layers as the
// user exported them) with QuantizeLinear/DequantizeLinear where bitplan's simulation
// quantizes, so an ONNX runtime computes what bitplan measured.
//
// Per quantized layer:
//   weights      initializer of codes (already quantized) -> DequantizeLinear(scale, zp[, axis,
//                block_size]) -> the layer's weight input; fp16/bf16 weights -> Cast to float
//   activations  input -> [Clip] -> QuantizeLinear -> DequantizeLinear -> the layer's input;
//                fp16/bf16 -> Cast -> Cast; dynamic uint8 -> DynamicQuantizeLinear ->
//                DequantizeLinear
//
// Why this is the simulation's arithmetic:
//  * QuantizeLinear is q = saturate(round_half_even(x / scale) + zp), DequantizeLinear
//    (q - zp) * scale: quantize_to_grid / dequantize_from_grid (formats.hpp) term for term.
//  * Grids narrower than their container (int2..int7, uint2..uint7 activations) clamp to
//    [qmin, qmax]; ONNX saturates to the container. A Clip to [lo, hi] = [(qmin - zp)·scale,
//    (qmax - zp)·scale] in front gives the same codes: inside [lo, hi] nothing changes, and
//    x beyond hi becomes hi, whose quotient hi / scale is within an ulp of qmax - zp and so
//    rounds to it (symmetrically for lo).
//  * Weights are stored as the codes the simulation's rounding produced, so a runtime never
//    re-rounds them; DequantizeLinear of a code is the simulated weight bit for bit.
//  * fp8 weights store round_to_format(w / scale) as FLOAT8 codes; pow2 levels (0 and
//    ±2^-k, k <= 6) are exact FLOAT8E4M3FN values, so they are stored the same way.
// Layers whose BatchNormalization the import folded are written folded (codes of the folded
// weights, the folded bias, no BatchNormalization node): the simulation quantized the
// folded weights, and quantizing before the BatchNormalization would give other numbers.
// After cross-layer equalization (ExportModel::equalized) every layer the pass rescaled,
// quantized or fp32, gets the equalized graph's weights and bias (folded the same way), and
// each ReLU6 Clip it replaced becomes a Relu, so the file computes the equalized model.
#include <onnx/onnx_pb.h>

#include <google/protobuf/io/coded_stream.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <set>

#include "core/files.hpp"
#include "export/export.hpp"

namespace bitplan {
namespace {

// ONNX TensorProto.DataType numbers (onnx.proto). Debian's libonnx 1.12 predates the 4-bit
// and 8-bit float types, but the fields are plain int32, so they are written by number.
enum OnnxType : int {
  kFloat = 1,
  kUint8 = 2,
  kInt8 = 3,
  kUint16 = 4,
  kInt16 = 5,
  kInt64 = 7,
  kFloat16 = 10,
  kBfloat16 = 16,
  kFloat8E4M3FN = 17,
  kFloat8E5M2 = 19,
  kUint4 = 21,
  kInt4 = 22,
};

// The opsets that bring what the export uses: per-axis QDQ (13), float8 QDQ (19), 4- and
// 16-bit integer QDQ and block-wise scales (21).
constexpr std::int64_t kOpsetQdqAxis = 13;
constexpr std::int64_t kOpsetFloat8 = 19;
constexpr std::int64_t kOpsetBlockedInt4 = 21;
// Reduce* ops take `axes` as an input instead of an attribute from opset 18.
constexpr std::int64_t kOpsetReduceAxesInput = 18;

// The IR version each opset needs at least (onnx/helper.py VERSION_TABLE).
std::int64_t ir_version_for(std::int64_t opset) {
  if (opset >= 21) return 10;
  if (opset >= 19) return 9;
  if (opset >= 17) return 8;
  return 7;
}

// Where the codes of a format are stored.
struct Container {
  int onnx_type;
  int bits;
  bool is_signed;
  double lo, hi;       // the container's own code range (integers)
  std::int64_t opset;  // the opset whose QuantizeLinear/DequantizeLinear take it
};

Container integer_container(int bits, bool is_signed) {
  const int width = bits <= 4 ? 4 : bits <= 8 ? 8 : 16;
  const double half = std::ldexp(1.0, width - 1);
  const int type = width == 4   ? (is_signed ? kInt4 : kUint4)
                   : width == 8 ? (is_signed ? kInt8 : kUint8)
                                : (is_signed ? kInt16 : kUint16);
  return {type,
          width,
          is_signed,
          is_signed ? -half : 0.0,
          is_signed ? half - 1 : 2 * half - 1,
          width == 8 ? kOpsetQdqAxis : kOpsetBlockedInt4};
}

Container float8_container(FormatId format) {
  return {format == FormatId::fp8_e5m2 ? kFloat8E5M2 : kFloat8E4M3FN, 8, true, 0, 0, kOpsetFloat8};
}

// Codes of weights in this format: integer and ternary grids in the smallest integer type
// (4-bit types for up to 4 bits), fp8 and pow2 in FLOAT8 (pow2 levels are E4M3 values).
Container weight_container(const FormatTraits& f) {
  switch (f.kind) {
    case FormatKind::integer:
      return integer_container(f.bits, f.is_signed);
    case FormatKind::ternary:
      return integer_container(f.bits, true);
    case FormatKind::pow2:
      return float8_container(FormatId::fp8_e4m3);
    default:
      return float8_container(f.id);
  }
}

// Activations keep 8-bit containers below 8 bits (the Clip gives the narrower grid), so a
// plan without 4- or 16-bit tensors stays at opset 13.
Container activation_container(const FormatTraits& f) {
  if (f.kind == FormatKind::floating) return float8_container(f.id);
  return integer_container(f.bits <= 8 ? 8 : 16, f.is_signed);
}

// The bits of a float that lies on a narrower float grid (round_to_format's output), in that
// format: sign, biased exponent, mantissa; below the smallest normal the exponent field is 0
// and the mantissa counts steps of 2^(min_exponent - mantissa_bits).
std::uint16_t encode_narrow_float(float value, int exponent_bits, int mantissa_bits,
                                  int min_exponent) {
  const std::uint16_t sign =
      std::signbit(value) ? std::uint16_t(1u << (exponent_bits + mantissa_bits)) : std::uint16_t(0);
  const double a = std::fabs(double(value));
  if (a == 0) return sign;
  if (std::isinf(a)) return sign | std::uint16_t(((1u << exponent_bits) - 1) << mantissa_bits);
  int e = std::ilogb(a);
  if (e < min_exponent) {
    const auto steps = static_cast<std::uint16_t>(std::ldexp(a, mantissa_bits - min_exponent));
    return sign | steps;
  }
  const auto mantissa =
      static_cast<std::uint16_t>(std::ldexp(a, mantissa_bits - e) - std::ldexp(1.0, mantissa_bits));
  const auto biased = static_cast<std::uint16_t>(e - min_exponent + 1);
  return sign | std::uint16_t(biased << mantissa_bits) | mantissa;
}

class ModelWriter {
 public:
  ModelWriter(const ExportModel& model, onnx::ModelProto& proto) : model_(model), proto_(proto) {}

  std::string write();

 private:
  onnx::GraphProto& graph() { return *proto_.mutable_graph(); }
  std::int64_t required_opset() const;
  void upgrade_opset(std::int64_t from, std::int64_t to);
  void check_embedded_weights() const;

  // Initializers.
  std::string add_float(const std::string& name, const Dims& dims, std::span<const float> values);
  std::string add_codes(const std::string& name, const Container& c, const Dims& dims,
                        std::span<const float> codes);
  std::string add_int64s(const std::string& name, std::span<const std::int64_t> values);

  onnx::NodeProto& add_node(std::vector<onnx::NodeProto>& out, const std::string& name,
                            const std::string& op, std::vector<std::string> inputs,
                            std::vector<std::string> outputs);
  std::string weight_input(const ExportLayer& layer, std::vector<onnx::NodeProto>& out);
  std::string activation_input(const ExportLayer& layer, const std::string& input,
                               std::vector<onnx::NodeProto>& out);

  const ExportModel& model_;
  onnx::ModelProto& proto_;
  std::set<std::string> initializer_names_;
};

std::int64_t ModelWriter::required_opset() const {
  std::int64_t opset = kOpsetQdqAxis;
  for (const auto& l : model_.layers) {
    const FormatTraits& w = format_traits(l.quant.weights.format);
    if (w.has_scale() || w.kind == FormatKind::ternary)
      opset = std::max(opset, weight_container(w).opset);
    if (l.weight_spec.granularity == Granularity::per_group)
      opset = std::max(opset, kOpsetBlockedInt4);
    const FormatTraits& a = format_traits(l.quant.activations.format);
    if (a.has_scale()) opset = std::max(opset, activation_container(a).opset);
  }
  return opset;
}

// Ops whose definition changed between opsets 13 and 21 in ways this export does not
// rewrite (onnx/defs/operator_sets.h), and ops with subgraphs, whose nodes would need the
// same upgrade.
constexpr std::string_view kNotUpgradable[] = {"RoiAlign", "GridSample",        "DFT", "If", "Loop",
                                               "Scan",     "GroupNormalization"};
constexpr std::string_view kReduceWithAxesAttribute[] = {
    "ReduceMax", "ReduceMin",    "ReduceMean",      "ReduceProd",     "ReduceL1",
    "ReduceL2",  "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"};

void ModelWriter::upgrade_opset(std::int64_t from, std::int64_t to) {
  const std::string path = model_.model_path.string();
  for (auto& node : *graph().mutable_node()) {
    if (!node.domain().empty() && node.domain() != "ai.onnx") continue;
    if (std::find(std::begin(kNotUpgradable), std::end(kNotUpgradable), node.op_type()) !=
        std::end(kNotUpgradable))
      fail_unsupported(
          "exporting '{}' as onnx-qdq: the plan needs opset {} (4/16-bit, float8 or block-wise "
          "QDQ) but node '{}' ({}) would change meaning between opset {} and {}; quantize with "
          "8-bit per-tensor/per-channel specs, or convert the model to opset {} first",
          path, to, node.name(), node.op_type(), from, to, to);
    const bool reduce =
        std::find(std::begin(kReduceWithAxesAttribute), std::end(kReduceWithAxesAttribute),
                  node.op_type()) != std::end(kReduceWithAxesAttribute);
    if (!(reduce && from < kOpsetReduceAxesInput && to >= kOpsetReduceAxesInput)) continue;
    // Same reduction: the attribute's axes become the optional second input.
    auto* attrs = node.mutable_attribute();
    const auto axes = std::find_if(attrs->begin(), attrs->end(), [](const onnx::AttributeProto& a) {
      return a.name() == "axes";
    });
    if (axes == attrs->end()) continue;
    const std::vector<std::int64_t> values(axes->ints().begin(), axes->ints().end());
    attrs->erase(axes);
    node.add_input(add_int64s(node.name() + "/axes", values));
  }
}

void ModelWriter::check_embedded_weights() const {
  for (const auto& t : proto_.graph().initializer())
    if (t.data_location() == onnx::TensorProto::EXTERNAL)
      fail_unsupported(
          "exporting '{}' as onnx-qdq: initializer '{}' is stored in an external file; the "
          "export writes one self-contained model: embed the weights first "
          "(onnx.load with load_external_data=True, then onnx.save)",
          model_.model_path.string(), t.name());
}

std::string ModelWriter::add_float(const std::string& name, const Dims& dims,
                                   std::span<const float> values) {
  auto* t = graph().add_initializer();
  t->set_name(name);
  t->set_data_type(kFloat);
  for (auto d : dims) t->add_dims(d);
  t->set_raw_data(std::string(reinterpret_cast<const char*>(values.data()), values.size_bytes()));
  initializer_names_.insert(name);
  return name;
}

std::string ModelWriter::add_int64s(const std::string& name, std::span<const std::int64_t> values) {
  auto* t = graph().add_initializer();
  t->set_name(name);
  t->set_data_type(kInt64);
  t->add_dims(static_cast<std::int64_t>(values.size()));
  t->set_raw_data(std::string(reinterpret_cast<const char*>(values.data()), values.size_bytes()));
  initializer_names_.insert(name);
  return name;
}

// Codes as raw_data, little-endian: 4-bit types two per byte, the first in the low nibble
// (onnx.proto); FLOAT8/16 types as their bit patterns.
std::string ModelWriter::add_codes(const std::string& name, const Container& c, const Dims& dims,
                                   std::span<const float> codes) {
  auto* t = graph().add_initializer();
  t->set_name(name);
  t->set_data_type(c.onnx_type);
  for (auto d : dims) t->add_dims(d);
  std::string raw;
  switch (c.onnx_type) {
    case kInt4:
    case kUint4:
      raw.assign((codes.size() + 1) / 2, '\0');
      for (std::size_t i = 0; i < codes.size(); ++i) {
        const auto nibble = static_cast<unsigned>(static_cast<int>(codes[i])) & 0xFu;
        raw[i / 2] =
            static_cast<char>(static_cast<unsigned char>(raw[i / 2]) | nibble << (4 * (i % 2)));
      }
      break;
    case kInt8:
    case kUint8:
      for (float q : codes) raw.push_back(static_cast<char>(static_cast<int>(q)));
      break;
    case kInt16:
    case kUint16:
      for (float q : codes) {
        const auto v = static_cast<std::uint16_t>(static_cast<int>(q));
        raw.push_back(static_cast<char>(v & 0xFF));
        raw.push_back(static_cast<char>(v >> 8));
      }
      break;
    case kFloat8E4M3FN:
    case kFloat8E5M2: {
      const FormatTraits& f =
          format_traits(c.onnx_type == kFloat8E5M2 ? FormatId::fp8_e5m2 : FormatId::fp8_e4m3);
      for (float q : codes)
        raw.push_back(static_cast<char>(
            encode_narrow_float(q, f.exponent_bits, f.mantissa_bits, f.min_exponent)));
      break;
    }
    case kFloat16:
    case kBfloat16: {
      const FormatTraits& f =
          format_traits(c.onnx_type == kFloat16 ? FormatId::fp16 : FormatId::bf16);
      for (float q : codes) {
        const std::uint16_t v =
            encode_narrow_float(q, f.exponent_bits, f.mantissa_bits, f.min_exponent);
        raw.push_back(static_cast<char>(v & 0xFF));
        raw.push_back(static_cast<char>(v >> 8));
      }
      break;
    }
    default:
      BITPLAN_ASSERT(false);
  }
  t->set_raw_data(std::move(raw));
  initializer_names_.insert(name);
  return name;
}

onnx::NodeProto& ModelWriter::add_node(std::vector<onnx::NodeProto>& out, const std::string& name,
                                       const std::string& op, std::vector<std::string> inputs,
                                       std::vector<std::string> outputs) {
  onnx::NodeProto& n = out.emplace_back();
  n.set_name(name);
  n.set_op_type(op);
  for (auto& i : inputs) n.add_input(std::move(i));
  for (auto& o : outputs) n.add_output(std::move(o));
  return n;
}

void set_int_attribute(onnx::NodeProto& node, const std::string& name, std::int64_t value) {
  auto* a = node.add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INT);
  a->set_i(value);
}

// The weight input of a quantized layer: codes -> DequantizeLinear (or Cast for fp16/bf16).
std::string ModelWriter::weight_input(const ExportLayer& l, std::vector<onnx::NodeProto>& out) {
  const FormatTraits& f = format_traits(l.quant.weights.format);
  const std::string prefix = l.layer.name + "/weight";
  const Dims& dims = l.weight.dims();
  for (float q : l.weight_codes.values<float>())
    if (std::isnan(q))
      fail_input(
          "exporting layer '{}' of '{}': weight '{}' holds NaN, which quantized storage cannot "
          "represent; fix the model's weights",
          l.layer.name, model_.model_path.string(), l.layer.weight);
  if (!f.has_scale() && f.kind != FormatKind::ternary) {  // fp16 / bf16: plain narrower floats
    const Container c{f.id == FormatId::fp16 ? kFloat16 : kBfloat16, 16, true, 0, 0, 1};
    const std::string stored =
        add_codes(prefix + "_" + std::string(f.name), c, dims, l.weight_codes.values<float>());
    auto& cast = add_node(out, prefix + "/Cast", "Cast", {stored}, {prefix + "_float"});
    set_int_attribute(cast, "to", kFloat);
    return prefix + "_float";
  }
  Container c = weight_container(f);
  std::vector<float> stored(l.weight_codes.values<float>().begin(),
                            l.weight_codes.values<float>().end());
  // Integer grids store their zero point; ternary, fp8 and pow2 are symmetric around 0.
  std::vector<float> zero_points = l.weight_params.zero_point.empty()
                                       ? std::vector<float>(l.weight_params.scale.size(), 0.f)
                                       : l.weight_params.zero_point;
  if (model_.uint8_weights && c.onnx_type == kInt8) {
    // (q + 128) - (zp + 128) = q - zp: every dequantized value stays the same.
    c = integer_container(8, false);
    for (float& q : stored) q += 128;
    for (float& z : zero_points) z += 128;
  }
  const std::string codes = add_codes(prefix + "_quantized", c, dims, stored);
  // Scale and zero-point shapes: [] per tensor, [C] per channel, the weight's shape with the
  // reduction axis cut to its block count per group (quantizer.hpp's slice order).
  Dims param_dims;
  if (l.weight_spec.granularity == Granularity::per_channel) {
    param_dims = {dims[static_cast<std::size_t>(l.weight_spec.axis)]};
  } else if (l.weight_spec.granularity == Granularity::per_group) {
    param_dims = dims;
    auto& d = param_dims[static_cast<std::size_t>(l.layer.reduction_axis)];
    d = (d + l.weight_spec.group_size - 1) / l.weight_spec.group_size;
  }
  const std::string scale = add_float(prefix + "_scale", param_dims, l.weight_params.scale);
  const std::string zero_point = add_codes(prefix + "_zero_point", c, param_dims, zero_points);
  auto& dq = add_node(out, prefix + "/DequantizeLinear", "DequantizeLinear",
                      {codes, scale, zero_point}, {prefix + "_dequantized"});
  if (l.weight_spec.granularity == Granularity::per_channel)
    set_int_attribute(dq, "axis", l.weight_spec.axis);
  if (l.weight_spec.granularity == Granularity::per_group) {
    set_int_attribute(dq, "axis", l.layer.reduction_axis);
    // A group at least as long as the axis is one block: the same as block_size = the axis.
    set_int_attribute(
        dq, "block_size",
        std::min(l.weight_spec.group_size, dims[static_cast<std::size_t>(l.layer.reduction_axis)]));
  }
  return prefix + "_dequantized";
}

// The activation input of a quantized layer after the simulation's input quantization.
std::string ModelWriter::activation_input(const ExportLayer& l, const std::string& input,
                                          std::vector<onnx::NodeProto>& out) {
  const FormatTraits& f = format_traits(l.quant.activations.format);
  const std::string prefix = l.layer.name + "/input_quant";
  if (!f.has_scale()) {  // fp16 / bf16: round through the narrower float and back
    auto& narrow = add_node(out, prefix + "/Cast", "Cast", {input}, {prefix + "_narrow"});
    set_int_attribute(narrow, "to", f.id == FormatId::fp16 ? kFloat16 : kBfloat16);
    auto& wide = add_node(out, prefix + "/Cast_back", "Cast", {prefix + "_narrow"},
                          {prefix + "_dequantized"});
    set_int_attribute(wide, "to", kFloat);
    return prefix + "_dequantized";
  }
  if (l.quant.dynamic) {  // uint8 asymmetric (export_problems refuses other dynamic specs)
    add_node(out, prefix + "/DynamicQuantizeLinear", "DynamicQuantizeLinear", {input},
             {prefix + "_quantized", prefix + "_scale", prefix + "_zero_point"});
    add_node(out, prefix + "/DequantizeLinear", "DequantizeLinear",
             {prefix + "_quantized", prefix + "_scale", prefix + "_zero_point"},
             {prefix + "_dequantized"});
    return prefix + "_dequantized";
  }
  const Container c = activation_container(f);
  const float scale_value = l.input.scale, zero_value = l.input.zero_point;
  const std::string scale = add_float(prefix + "_scale", {}, std::span(&scale_value, 1));
  const std::string zero_point =
      add_codes(prefix + "_zero_point", c, {}, std::span(&zero_value, 1));
  std::string to_quantize = input;
  if (f.kind == FormatKind::integer && (f.qmin > c.lo || f.qmax < c.hi)) {
    const float lo = dequantize_from_grid(float(f.qmin), scale_value, zero_value);
    const float hi = dequantize_from_grid(float(f.qmax), scale_value, zero_value);
    add_node(out, prefix + "/Clip", "Clip",
             {input, add_float(prefix + "_min", {}, std::span(&lo, 1)),
              add_float(prefix + "_max", {}, std::span(&hi, 1))},
             {prefix + "_clipped"});
    to_quantize = prefix + "_clipped";
  }
  add_node(out, prefix + "/QuantizeLinear", "QuantizeLinear", {to_quantize, scale, zero_point},
           {prefix + "_quantized"});
  add_node(out, prefix + "/DequantizeLinear", "DequantizeLinear",
           {prefix + "_quantized", scale, zero_point}, {prefix + "_dequantized"});
  return prefix + "_dequantized";
}

std::string ModelWriter::write() {
  const std::string path = model_.model_path.string();
  check_embedded_weights();
  std::int64_t opset = 0;
  onnx::OperatorSetIdProto* default_domain = nullptr;
  for (auto& o : *proto_.mutable_opset_import())
    if (o.domain().empty() || o.domain() == "ai.onnx") default_domain = &o;
  if (default_domain) opset = default_domain->version();
  if (opset < kOpsetQdqAxis)
    fail_unsupported(
        "exporting '{}' as onnx-qdq: the model uses opset {}; QDQ export starts from opset {} "
        "(per-channel DequantizeLinear): convert the model first "
        "(onnx.version_converter.convert_version(model, 13))",
        path, opset, kOpsetQdqAxis);
  const std::int64_t target = std::max(opset, required_opset());
  if (target > opset) {
    upgrade_opset(opset, target);
    default_domain->set_version(target);
  }
  proto_.set_ir_version(std::max<std::int64_t>(proto_.ir_version(), ir_version_for(target)));

  std::map<std::string, const ExportLayer*> by_name;
  std::map<std::string, const ExportModel::FloatLayer*> rescaled_float;
  std::set<std::string> folded_batchnorms;
  for (const auto& l : model_.layers) {
    by_name[l.layer.name] = &l;
    if (!l.folded_batchnorm.empty()) folded_batchnorms.insert(l.folded_batchnorm);
  }
  for (const auto& l : model_.rescaled_float_layers) {
    rescaled_float[l.name] = &l;
    if (!l.folded_batchnorm.empty()) folded_batchnorms.insert(l.folded_batchnorm);
  }
  const std::set<std::string> relu_outputs(model_.relu_outputs.begin(), model_.relu_outputs.end());
  const auto set_bias = [&](onnx::NodeProto& node, const std::string& bias) {
    if (node.input_size() < 3)
      node.add_input(bias);
    else
      node.set_input(2, bias);
  };
  std::map<std::string, std::string> batchnorm_output;  // folded BN name -> its output
  std::set<std::string> used_before;
  for (const auto& n : graph().node()) {
    if (folded_batchnorms.count(n.name())) batchnorm_output[n.name()] = n.output(0);
    for (const auto& i : n.input()) used_before.insert(i);
  }

  std::vector<onnx::NodeProto> nodes;
  std::set<std::string> written;
  for (const auto& original : graph().node()) {
    if (folded_batchnorms.count(original.name())) continue;
    if (original.output_size() == 1 && relu_outputs.count(original.output(0))) {
      // Cross-layer equalization replaced this ReLU6 (Clip) by a Relu (relu6_to_relu).
      onnx::NodeProto& relu = nodes.emplace_back(original);
      relu.set_op_type("Relu");
      relu.mutable_input()->DeleteSubrange(1, relu.input_size() - 1);
      relu.clear_attribute();
      continue;
    }
    if (const auto f = rescaled_float.find(original.name()); f != rescaled_float.end()) {
      // An fp32 layer cross-layer equalization rescaled: the equalized graph's weights and
      // bias (BatchNormalization folded where the import folded it).
      const ExportModel::FloatLayer& l = *f->second;
      if (!written.insert(l.name).second)
        fail_input("exporting '{}': two nodes are named '{}'; plans need unique node names", path,
                   l.name);
      onnx::NodeProto& node = nodes.emplace_back(original);
      node.set_input(
          1, add_float(l.name + "/weight_equalized", l.weight.dims(), l.weight.values<float>()));
      if (!l.bias.empty())
        set_bias(node,
                 add_float(l.name + "/bias_equalized", l.bias.dims(), l.bias.values<float>()));
      if (!l.folded_batchnorm.empty()) node.set_output(0, batchnorm_output.at(l.folded_batchnorm));
      continue;
    }
    const auto it = by_name.find(original.name());
    if (it == by_name.end()) {
      nodes.push_back(original);
      continue;
    }
    const ExportLayer& l = *it->second;
    if (!written.insert(l.layer.name).second)
      fail_input("exporting '{}': two nodes are named '{}'; plans need unique node names", path,
                 l.layer.name);
    onnx::NodeProto node = original;
    if (l.quant.weights.format != FormatId::fp32 || !l.folded_batchnorm.empty() || l.rescaled) {
      if (l.quant.weights.format != FormatId::fp32) {
        node.set_input(1, weight_input(l, nodes));
      } else {
        const std::string suffix = l.folded_batchnorm.empty() ? "equalized" : "bnfolded";
        node.set_input(1, add_float(l.layer.name + "/weight_" + suffix, l.weight.dims(),
                                    l.weight.values<float>()));
      }
    }
    if (!l.folded_batchnorm.empty()) {
      set_bias(node, add_float(l.layer.name + "/bias_bnfolded", l.folded_bias.dims(),
                               l.folded_bias.values<float>()));
      node.set_output(0, batchnorm_output.at(l.folded_batchnorm));
    }
    if (!l.corrected_bias.empty())
      set_bias(node, add_float(l.layer.name + "/bias_corrected", l.corrected_bias.dims(),
                               l.corrected_bias.values<float>()));
    if (!l.equalized_bias.empty())
      set_bias(node, add_float(l.layer.name + "/bias_equalized", l.equalized_bias.dims(),
                               l.equalized_bias.values<float>()));
    std::string input = original.input(0);
    if (!l.input_scale.empty()) {
      // A method that scales the layer's input (awq): x · (1/s) per input channel, as the
      // simulation's Mul computes it, before any quantization of the input.
      const auto k = static_cast<std::int64_t>(l.input_scale.size());
      const std::string prefix = l.layer.name + "/input_scaling";
      add_node(nodes, prefix, "Mul",
               {input,
                add_float(prefix + "_inverse_scale", input_scale_dims(l.layer, k), l.input_scale)},
               {prefix + "_output"});
      input = prefix + "_output";
      node.set_input(0, input);
    }
    if (l.quant.activations.format != FormatId::fp32)
      node.set_input(0, activation_input(l, input, nodes));
    nodes.push_back(std::move(node));
  }
  for (const auto& l : model_.rescaled_float_layers)
    if (!written.count(l.name))
      fail_input(
          "exporting '{}': layer '{}' that equalization rescaled is not a node of the "
          "model file",
          path, l.name);
  for (const auto& l : model_.layers)
    if (!written.count(l.layer.name))
      fail_input(
          "exporting '{}': the plan's layer '{}' is not a node of the model file (a plan for "
          "another model?)",
          path, l.layer.name);

  graph().clear_node();
  for (auto& n : nodes) *graph().add_node() = std::move(n);
  // Drop what only the replaced weights and folded BatchNormalizations read: float weights
  // replaced by codes, BatchNormalization parameters, Constant nodes that produced them.
  std::set<std::string> used_now;
  for (const auto& o : graph().output()) used_now.insert(o.name());
  for (const auto& n : graph().node())
    for (const auto& i : n.input()) used_now.insert(i);
  const auto orphaned = [&](const std::string& name) {
    return used_before.count(name) && !used_now.count(name);
  };
  auto* all = graph().mutable_node();
  all->erase(std::remove_if(all->begin(), all->end(),
                            [&](const onnx::NodeProto& n) {
                              return n.op_type() == "Constant" && n.output_size() == 1 &&
                                     orphaned(n.output(0));
                            }),
             all->end());
  auto* inits = graph().mutable_initializer();
  inits->erase(std::remove_if(inits->begin(), inits->end(),
                              [&](const onnx::TensorProto& t) { return orphaned(t.name()); }),
               inits->end());
  auto* inputs = graph().mutable_input();
  inputs->erase(std::remove_if(inputs->begin(), inputs->end(),
                               [&](const onnx::ValueInfoProto& v) { return orphaned(v.name()); }),
                inputs->end());
  auto* infos = graph().mutable_value_info();
  infos->erase(std::remove_if(infos->begin(), infos->end(),
                              [&](const onnx::ValueInfoProto& v) { return orphaned(v.name()); }),
               infos->end());

  auto* meta = proto_.mutable_metadata_props();
  meta->erase(std::remove_if(meta->begin(), meta->end(),
                             [](const onnx::StringStringEntryProto& e) {
                               return e.key().starts_with("bitplan_");
                             }),
              meta->end());
  for (const auto& [key, value] :
       {std::pair<std::string, std::string>{"bitplan_version", std::string(bitplan_version())},
        {"bitplan_model_hash", model_.model_hash},
        {"bitplan_plan", plan_to_yaml(model_.plan)}}) {
    auto* entry = proto_.add_metadata_props();
    entry->set_key(key);
    entry->set_value(value);
  }
  std::string bytes;
  if (!proto_.SerializeToString(&bytes))
    fail_input("exporting '{}' as onnx-qdq: the model does not serialize (over protobuf's 2 GiB?)",
               path);
  return bytes;
}

}  // namespace

std::string export_onnx_qdq(const ExportModel& model) {
  const std::string bytes = read_file(model.model_path, std::uint64_t{2} << 30, "ONNX model");
  onnx::ModelProto proto;
  google::protobuf::io::CodedInputStream stream(reinterpret_cast<const std::uint8_t*>(bytes.data()),
                                                static_cast<int>(bytes.size()));
  stream.SetTotalBytesLimit(INT32_MAX);
  if (!proto.ParseFromCodedStream(&stream) || !stream.ConsumedEntireMessage())
    fail_input("exporting '{}': not a valid ONNX model (protobuf parsing failed)",
               model.model_path.string());
  return ModelWriter(model, proto).write();
}

}  // namespace bitplan
