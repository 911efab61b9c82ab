// Reading exported ONNX models back in tests: an independent DequantizeLinear (ONNX's
// definition, written from the spec, not from the exporter) and node lookups.
#pragma once

#include <onnx/onnx_pb.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "core/tensor.hpp"

namespace bitplan::testing {

inline onnx::ModelProto parse_model(const std::string& bytes) {
  onnx::ModelProto model;
  REQUIRE(model.ParseFromString(bytes));
  return model;
}

inline const onnx::NodeProto* find_node(const onnx::ModelProto& m, const std::string& name) {
  for (const auto& n : m.graph().node())
    if (n.name() == name) return &n;
  return nullptr;
}

inline const onnx::TensorProto* find_initializer(const onnx::ModelProto& m,
                                                 const std::string& name) {
  for (const auto& t : m.graph().initializer())
    if (t.name() == name) return &t;
  return nullptr;
}

inline std::int64_t int_attribute(const onnx::NodeProto& n, const std::string& name,
                                  std::int64_t fallback) {
  for (const auto& a : n.attribute())
    if (a.name() == name) return a.i();
  return fallback;
}

inline std::int64_t element_count(const onnx::TensorProto& t) {
  std::int64_t n = 1;
  for (auto d : t.dims()) n *= d;
  return n;
}

// A float8/float16 bit pattern: sign, `e` exponent bits with bias 2^(e-1) - 1, `m` mantissa
// bits, subnormals when the exponent field is 0 (FLOAT8E4M3FN has no infinities).
inline float decode_float(unsigned bits, int e, int m) {
  const int sign = (bits >> (e + m)) & 1;
  const int exponent = static_cast<int>((bits >> m) & ((1u << e) - 1));
  const int mantissa = static_cast<int>(bits & ((1u << m) - 1));
  const int bias = (1 << (e - 1)) - 1;
  const double v = exponent == 0 ? std::ldexp(mantissa, 1 - bias - m)
                                 : std::ldexp(1.0 + std::ldexp(mantissa, -m), exponent - bias);
  return static_cast<float>(sign ? -v : v);
}

// Every element of an initializer as a float (codes as their integer values).
inline std::vector<float> values_of(const onnx::TensorProto& t) {
  const std::string& raw = t.raw_data();
  const std::int64_t n = element_count(t);
  std::vector<float> out(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) {
    const auto k = static_cast<std::size_t>(i);
    const auto byte = [&](std::size_t j) { return static_cast<unsigned char>(raw.at(j)); };
    switch (t.data_type()) {
      case 1: {  // FLOAT
        std::memcpy(&out[k], raw.data() + 4 * k, 4);
        break;
      }
      case 2:  // UINT8
        out[k] = byte(k);
        break;
      case 3:  // INT8
        out[k] = static_cast<std::int8_t>(byte(k));
        break;
      case 4:  // UINT16
        out[k] = static_cast<float>(byte(2 * k) | byte(2 * k + 1) << 8);
        break;
      case 5:  // INT16
        out[k] = static_cast<std::int16_t>(byte(2 * k) | byte(2 * k + 1) << 8);
        break;
      case 10:  // FLOAT16
        out[k] = decode_float(byte(2 * k) | byte(2 * k + 1) << 8, 5, 10);
        break;
      case 17:  // FLOAT8E4M3FN
        out[k] = decode_float(byte(k), 4, 3);
        break;
      case 21:    // UINT4: two per byte, the first in the low nibble
      case 22: {  // INT4
        const unsigned nibble = (byte(k / 2) >> (4 * (k % 2))) & 0xF;
        out[k] = t.data_type() == 22 && nibble >= 8 ? static_cast<float>(int(nibble) - 16)
                                                    : static_cast<float>(nibble);
        break;
      }
      default:
        FAIL("element type ", t.data_type(), " not handled by the test reader");
    }
  }
  return out;
}

// ONNX DequantizeLinear: y = (x - zero_point) * scale with the scale per tensor, per `axis`
// index, or per block of `block_size` along `axis` (the scale has x's shape with that axis
// cut to ceil(D / block_size)).
inline std::vector<float> dequantize_linear(const onnx::ModelProto& m, const onnx::NodeProto& dq) {
  const onnx::TensorProto& x = *find_initializer(m, dq.input(0));
  const std::vector<float> codes = values_of(x);
  const std::vector<float> scale = values_of(*find_initializer(m, dq.input(1)));
  const std::vector<float> zero = values_of(*find_initializer(m, dq.input(2)));
  const auto rank = static_cast<std::int64_t>(x.dims_size());
  std::int64_t axis = int_attribute(dq, "axis", 1);
  if (axis < 0) axis += rank;
  const std::int64_t block = int_attribute(dq, "block_size", 0);
  std::int64_t inner = 1;
  for (std::int64_t d = axis + 1; d < rank; ++d) inner *= x.dims(static_cast<int>(d));
  const std::int64_t dim = x.dims(static_cast<int>(axis));
  std::vector<float> y(codes.size());
  for (std::size_t i = 0; i < codes.size(); ++i) {
    const auto index = static_cast<std::int64_t>(i);
    std::int64_t k = 0;
    if (block > 0) {
      const std::int64_t blocks = (dim + block - 1) / block;
      k = (index / inner / dim * blocks + index / inner % dim / block) * inner + index % inner;
    } else if (scale.size() > 1) {
      k = index / inner % dim;
    }
    const auto s = static_cast<std::size_t>(k);
    y[i] = (codes[i] - zero[s]) * scale[s];
  }
  return y;
}

}  // namespace bitplan::testing
