#include "backends/cuda/precision.hpp"

#include "backends/cuda/errors.hpp"

namespace bitplan::cuda {

const std::vector<Precision>& all_precisions() {
  static const std::vector<Precision> all = {Precision::fp32,
                                             Precision::fp16,
                                             Precision::bf16,
                                             Precision::int8,
                                             Precision::int8_chained,
                                             Precision::fp8_e4m3,
                                             Precision::fp8_e4m3_chained,
                                             Precision::w4a16,
                                             Precision::w8a16};
  return all;
}

std::string to_string(Precision p) {
  switch (p) {
    case Precision::fp32:
      return "fp32";
    case Precision::fp16:
      return "fp16";
    case Precision::bf16:
      return "bf16";
    case Precision::int8:
      return "int8";
    case Precision::int8_chained:
      return "int8_chained";
    case Precision::fp8_e4m3:
      return "fp8_e4m3";
    case Precision::fp8_e4m3_chained:
      return "fp8_e4m3_chained";
    case Precision::w4a16:
      return "w4a16";
    case Precision::w8a16:
      return "w8a16";
  }
  return "?";
}

std::optional<Precision> find_precision(const std::string& name) {
  for (Precision p : all_precisions())
    if (to_string(p) == name) return p;
  return std::nullopt;
}

Precision parse_precision(const std::string& name) {
  if (const auto p = find_precision(name)) return *p;
  throw ProfileError(
      "reading precision: '" + name +
      "': must be one of fp32, fp16, bf16, int8, int8_chained, fp8_e4m3, fp8_e4m3_chained, "
      "w4a16, w8a16");
}

std::string to_string(ElementType t) {
  switch (t) {
    case ElementType::f32:
      return "f32";
    case ElementType::f16:
      return "f16";
    case ElementType::bf16:
      return "bf16";
    case ElementType::s8:
      return "s8";
    case ElementType::e4m3:
      return "e4m3";
  }
  return "?";
}

std::size_t element_bytes(ElementType t) {
  switch (t) {
    case ElementType::f32:
      return 4;
    case ElementType::f16:
    case ElementType::bf16:
      return 2;
    case ElementType::s8:
    case ElementType::e4m3:
      return 1;
  }
  return 0;
}

ElementType input_type(Precision p) {
  switch (p) {
    case Precision::fp32:
      return ElementType::f32;
    case Precision::fp16:
      return ElementType::f16;
    case Precision::bf16:
      return ElementType::bf16;
    case Precision::int8:
    case Precision::int8_chained:
      return ElementType::s8;
    case Precision::fp8_e4m3:
    case Precision::fp8_e4m3_chained:
      return ElementType::e4m3;
    case Precision::w4a16:
    case Precision::w8a16:
      return ElementType::f16;
  }
  return ElementType::f16;
}

ElementType output_type(Precision p) {
  switch (p) {
    case Precision::fp32:
      return ElementType::f32;
    case Precision::bf16:
      return ElementType::bf16;
    case Precision::int8_chained:
      return ElementType::s8;
    case Precision::fp8_e4m3_chained:
      return ElementType::e4m3;
    default:
      return ElementType::f16;
  }
}

bool reads_codes(Precision p) {
  const ElementType t = input_type(p);
  return t == ElementType::s8 || t == ElementType::e4m3;
}

std::optional<Precision> chained_precision(Precision p) {
  if (p == Precision::int8) return Precision::int8_chained;
  if (p == Precision::fp8_e4m3) return Precision::fp8_e4m3_chained;
  return std::nullopt;
}

ElementType float_beside(ElementType t) {
  return t == ElementType::s8 || t == ElementType::e4m3 ? ElementType::f16 : t;
}

std::string precision_name(ElementType t) {
  switch (t) {
    case ElementType::f32:
      return "fp32";
    case ElementType::f16:
      return "fp16";
    case ElementType::bf16:
      return "bf16";
    case ElementType::s8:
      return "int8";
    case ElementType::e4m3:
      return "fp8_e4m3";
  }
  return "?";
}

}  // namespace bitplan::cuda
