#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "data/npy.hpp"
#include "data_test_util.hpp"

namespace bitplan::data_npy_test {
namespace {

using test::check_error;
using test::read_bytes;
using test::TempDir;
using test::write_bytes;

// A .npy file written by hand: the header dict is padded so the data starts 64-byte
// aligned, as NumPy writes it; `length` overrides the header length field when non-zero.
std::string npy_file(int major, std::string header, std::string_view data, int minor = 0,
                     std::uint32_t length = 0) {
  const std::size_t length_bytes = major == 1 ? 2 : 4;
  header.append(63 - (8 + length_bytes + header.size()) % 64, ' ');
  header += '\n';
  if (length == 0) length = static_cast<std::uint32_t>(header.size());
  std::string out = "\x93NUMPY";
  out += static_cast<char>(major);
  out += static_cast<char>(minor);
  for (std::size_t i = 0; i < length_bytes; ++i) out += static_cast<char>(length >> (8 * i));
  return out + header + std::string(data);
}

std::string raw(const Tensor& t) {
  return {static_cast<const char*>(t.raw()), t.nbytes()};
}

std::vector<Tensor> sample_tensors() {
  const bool flags[] = {true, false, true};
  return {
      Tensor::from_values<float>({2, 3}, std::vector<float>{0.5f, -1, 2, 3, 4, 1e30f}),
      Tensor::from_values<double>({3}, std::vector<double>{1e-300, -2, 3.25}),
      Tensor::from_values<std::uint8_t>({2, 1, 2}, std::vector<std::uint8_t>{0, 1, 254, 255}),
      Tensor::from_values<std::int8_t>({2}, std::vector<std::int8_t>{-128, 127}),
      Tensor::from_values<std::int32_t>({1, 2}, std::vector<std::int32_t>{-7, 1 << 30}),
      Tensor::from_values<std::int64_t>({2}, std::vector<std::int64_t>{-1, std::int64_t{1} << 40}),
      Tensor::from_values<bool>({3}, std::span<const bool>(flags)),
      Tensor::scalar<float>(7.0f),
      Tensor(DType::f32, {0, 3}),
  };
}

TEST_CASE("write_npy then read_npy round-trips every dtype and shape") {
  TempDir dir;
  for (const Tensor& tensor : sample_tensors()) {
    CAPTURE(dtype_name(tensor.dtype()));
    CAPTURE(to_string(tensor.dims()));
    const auto path = dir / "a.npy";
    write_npy(path, tensor);
    const Tensor back = read_npy(path);
    CHECK(back.dtype() == tensor.dtype());
    CHECK(back.dims() == tensor.dims());
    CHECK(raw(back) == raw(tensor));
  }
}

TEST_CASE("write_npy writes NumPy's own version 1.0 layout") {
  TempDir dir;
  write_npy(dir / "a.npy", Tensor(DType::f32, {2, 3}));
  write_npy(dir / "b.npy", Tensor(DType::u8, {5}));
  const std::string a = read_bytes(dir / "a.npy");
  const std::string b = read_bytes(dir / "b.npy");
  CHECK(a.substr(0, 8) == std::string("\x93NUMPY\x01\x00", 8));
  CHECK(a.substr(10, 59) == "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }");
  CHECK(b.substr(10, 57) == "{'descr': '|u1', 'fortran_order': False, 'shape': (5,), }");
  // The data starts 64-byte aligned, after a newline-terminated header.
  CHECK(a.size() == 128 + 24);
  CHECK(a[127] == '\n');
  CHECK(b.size() == 128 + 5);
  CHECK_FALSE(std::filesystem::exists(dir / ("a.npy.tmp." + std::to_string(::getpid()))));
}

TEST_CASE("write_npy switches to version 2.0 only when the header outgrows 1.0") {
  TempDir dir;
  const Tensor tall(DType::u8, Dims(30000, 1));  // "1, " x 30000 exceeds 64 KiB
  write_npy(dir / "tall.npy", tall);
  const std::string bytes = read_bytes(dir / "tall.npy");
  CHECK(bytes[6] == 2);
  CHECK((bytes.size() - 1) % 64 == 0);
  CHECK(read_npy(dir / "tall.npy").dims() == tall.dims());
}

TEST_CASE("read_npy reads versions 2.0 and 3.0 and Python literal variations") {
  TempDir dir;
  const std::string data("\x01\x00\x00\x00\x02\x00\x00\x00", 8);
  const std::vector<std::string> headers = {
      "{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }",
      "{\"shape\": (2,), \"descr\": \"<i4\", \"fortran_order\": False}",
      "{ 'descr' : '<i4' ,\n 'fortran_order':False,'shape':( 2 , ) }",
      "{'descr': '<i4', 'fortran_order': False, 'shape': (2L,)}",  // Python 2's longs
      "{'descr': '<i4', 'fortran_order': False, 'shape': ((2),)}",
  };
  for (int major : {1, 2, 3})
    for (const std::string& header : headers) {
      CAPTURE(major);
      CAPTURE(header);
      const Tensor t = read_npy(write_bytes(dir / "a.npy", npy_file(major, header, data)));
      CHECK(t.dtype() == DType::i32);
      CHECK(t.to_int64_vector() == std::vector<std::int64_t>{1, 2});
    }
}

TEST_CASE("read_npy rejects malformed files, naming the file and the rule") {
  TempDir dir;
  const auto path = dir / "bad.npy";
  const auto expect = [&](const std::string& bytes, std::initializer_list<std::string_view> parts,
                          ErrorKind kind = ErrorKind::invalid_input) {
    write_bytes(path, bytes);
    check_error([&] { read_npy(path); }, parts, kind);
  };
  const std::string f4x2 = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }";
  const std::string eight(8, '\0');

  SUBCASE("too short") {
    expect("\x93NUMPY\x01", {"bad.npy", "7 bytes", "too short"});
  }
  SUBCASE("bad magic") {
    expect("\x93NUMPZ" + npy_file(1, f4x2, eight).substr(6), {"magic"});
  }
  SUBCASE("unknown version") {
    expect(npy_file(4, f4x2, eight), {"version 4.0"}, ErrorKind::unsupported);
  }
  SUBCASE("truncated header length") {
    expect(npy_file(2, f4x2, eight).substr(0, 11), {"too short for the header length"});
  }
  SUBCASE("header length past the end of the file") {
    expect(npy_file(1, f4x2, eight, 0, 5000),
           {"bad.npy", "header length 5000", "runs past the end of the file"});
    expect(npy_file(2, f4x2, eight, 0, 0xfffffff0u), {"header length 4294967280", "runs past"});
  }
  SUBCASE("truncated data") {
    expect(npy_file(1, f4x2, "1234567"),
           {"bad.npy", "[2] of float32 needs 8 data bytes, but the file has 7"});
  }
  SUBCASE("extra data") {
    expect(npy_file(1, f4x2, "123456789"), {"needs 8 data bytes, but the file has 9"});
  }
  SUBCASE("shape product overflows") {
    expect(npy_file(1,
                    "{'descr': '<f8', 'fortran_order': False, 'shape': "
                    "(4294967296, 4294967296, 4294967296)}",
                    eight),
           {"bad.npy", "overflows 64 bits"});
    expect(npy_file(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (9223372036854775807,)}",
                    eight),
           {"overflows 64 bits"});
  }
  SUBCASE("a huge shape fails on the size check, not on allocation") {
    expect(
        npy_file(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000,)}", eight),
        {"needs 4000000000000 data bytes"});
  }
  SUBCASE("integer too large") {
    expect(npy_file(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,)}",
                    eight),
           {"does not fit in 64 bits"});
  }
  SUBCASE("negative dimension") {
    expect(npy_file(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (-2,)}", eight),
           {"shape has -2", "non-negative"});
  }
  SUBCASE("fortran order") {
    expect(npy_file(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2,)}", eight),
           {"bad.npy", "fortran_order True", "C-order"}, ErrorKind::unsupported);
  }
  SUBCASE("big-endian") {
    expect(npy_file(1, "{'descr': '>f4', 'fortran_order': False, 'shape': (2,)}", eight),
           {"bad.npy", "'>f4' is big-endian", "little-endian"}, ErrorKind::unsupported);
  }
  SUBCASE("unsupported dtypes") {
    expect(npy_file(1, "{'descr': '<i2', 'fortran_order': False, 'shape': (4,)}", eight),
           {"descr '<i2'", "float32"}, ErrorKind::unsupported);
    expect(npy_file(1, "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,)}", eight),
           {"structured"}, ErrorKind::unsupported);
  }
  SUBCASE("byte order '|' on a multi-byte type") {
    expect(npy_file(1, "{'descr': '|f4', 'fortran_order': False, 'shape': (2,)}", eight),
           {"'|f4'", "only valid for 1-byte types"});
  }
  SUBCASE("missing, unknown and repeated keys") {
    expect(npy_file(1, "{'descr': '<f4', 'shape': (2,)}", eight), {"no 'fortran_order'"});
    expect(npy_file(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}", eight),
           {"header key 'x'"});
    expect(npy_file(1, "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,)}",
                    eight),
           {"'descr' appears twice"});
  }
  SUBCASE("wrong value types") {
    expect(npy_file(1, "{'descr': '<f4', 'fortran_order': 0, 'shape': (2,)}", eight),
           {"fortran_order is an integer", "True or False"});
    expect(npy_file(1, "{'descr': '<f4', 'fortran_order': False, 'shape': [2]}", eight),
           {"shape is a list", "tuple"});
    expect(npy_file(1, "['descr']", eight), {"the header is a list", "must be a dict"});
  }
  SUBCASE("syntax errors") {
    expect(npy_file(1, "{'descr': '<f4", eight), {"unterminated string"});
    expect(npy_file(1, "{'descr' '<f4'}", eight), {"expected ':'"});
    expect(npy_file(1, "{'descr': <f4}", eight), {"header character 11", "expected a dict"});
    expect(npy_file(1, "{'shape': (2,)} x", eight), {"unexpected text after the header dict"});
    expect(npy_file(1, "{'shape': " + std::string(100, '(') + "}", eight), {"nests too deeply"});
  }
  SUBCASE("bool values other than 0 and 1") {
    expect(npy_file(1, "{'descr': '|b1', 'fortran_order': False, 'shape': (3,)}",
                    std::string("\x01\x02\x00", 3)),
           {"bool element 1 is 2", "0 or 1"});
  }
}

}  // namespace
}  // namespace bitplan::data_npy_test
