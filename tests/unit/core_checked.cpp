// Checked size arithmetic and message quoting (issue 17.9, 17.10).
#include <doctest/doctest.h>

#include <cstdint>
#include <limits>
#include <string>

#include "core/checked.hpp"
#include "core/quote.hpp"
#include "core/tensor.hpp"

namespace core_checked_test {

using namespace bitplan;

TEST_CASE("checked_mul and checked_add report overflow instead of wrapping") {
  constexpr auto max = std::numeric_limits<std::int64_t>::max();
  CHECK(checked_mul<std::int64_t>(3, 4) == 12);
  CHECK(checked_mul<std::int64_t>(-3, 4) == -12);
  CHECK_FALSE(checked_mul<std::int64_t>(max / 2 + 1, 2).has_value());
  CHECK_FALSE(
      checked_mul<std::uint64_t>(std::uint64_t{1} << 32, std::uint64_t{1} << 32).has_value());
  CHECK(checked_add<std::int64_t>(max - 1, 1) == max);
  CHECK_FALSE(checked_add<std::int64_t>(max, 1).has_value());
}

TEST_CASE("17.10 product() of IDX dims [2^32-1, 2^32-1, 0] throws instead of overflowing") {
  const Dims dims{0xffffffffLL, 0xffffffffLL, 0};
  CHECK_FALSE(checked_product(dims).has_value());
  CHECK_THROWS_WITH_AS(product(dims),
                       "shape [4294967295, 4294967295, 0]: the product of its non-zero "
                       "dimensions does not fit in 64 bits",
                       ShapeOverflow);
  try {
    product(dims);
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::invalid_input);
  }
}

TEST_CASE("product() of shapes that fit is exact, zero dims included") {
  CHECK(product({}) == 1);
  CHECK(product({2, 3, 4}) == 24);
  CHECK(product({0, std::int64_t{1} << 40, std::int64_t{1} << 20}) == 0);
  CHECK(product({std::int64_t{1} << 31, std::int64_t{1} << 31}) == std::int64_t{1} << 62);
}

TEST_CASE("17.10 a tensor whose byte size overflows is refused before allocation") {
  // 2^62 elements fit in int64, but 2^62 floats need 2^64 bytes.
  CHECK_THROWS_WITH_AS(Tensor(DType::f32, {std::int64_t{1} << 31, std::int64_t{1} << 31}),
                       doctest::Contains("its size in bytes does not fit in 64 bits"), Error);
}

TEST_CASE("17.9 escaped() shows control bytes as \\xNN and keeps the rest of the string") {
  CHECK(escaped(std::string("w\0.bin", 6)) == "w\\x00.bin");
  CHECK(escaped("tab\there\nline\x7f") == "tab\\x09here\\x0aline\\x7f");
  CHECK(escaped("back\\slash") == "back\\\\slash");
  CHECK(escaped("caf\xc3\xa9 ok") == "caf\xc3\xa9 ok");  // UTF-8 stays readable
}

TEST_CASE("17.9 an Error whose message holds a NUL byte keeps the whole message") {
  const Error error(ErrorKind::invalid_input, std::string("name 'a\0b': rule", 16));
  CHECK(std::string(error.what()) == "name 'a\\x00b': rule");
}

}  // namespace core_checked_test
