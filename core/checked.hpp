// Checked arithmetic for sizes computed from input: a shape in a model, a file header or a
// batch size can ask for any number, and a wrapped (or, for signed types, undefined)
// product would allocate or index the wrong amount of memory.
#pragma once

#include <concepts>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <span>

namespace bitplan {

// a * b, or nullopt when the exact product does not fit in T.
template <std::integral T>
constexpr std::optional<T> checked_mul(T a, T b) {
  T result{};
  if (__builtin_mul_overflow(a, b, &result)) return std::nullopt;
  return result;
}

// a + b, or nullopt when the exact sum does not fit in T.
template <std::integral T>
constexpr std::optional<T> checked_add(T a, T b) {
  T result{};
  if (__builtin_add_overflow(a, b, &result)) return std::nullopt;
  return result;
}

// The product of `factors`, or nullopt when the product of its non-zero factors overflows.
// A zero factor makes the product 0 but does not excuse the others: code that later
// multiplies a subset of the factors (strides, flattened rows) must not overflow either.
constexpr std::optional<std::int64_t> checked_product(std::span<const std::int64_t> factors) {
  std::int64_t nonzero = 1;
  bool has_zero = false;
  for (std::int64_t f : factors) {
    if (f == 0) {
      has_zero = true;
      continue;
    }
    const auto next = checked_mul(nonzero, f);
    if (!next) return std::nullopt;
    nonzero = *next;
  }
  return has_zero ? 0 : nonzero;
}

constexpr std::optional<std::int64_t> checked_product(std::initializer_list<std::int64_t> factors) {
  return checked_product(std::span<const std::int64_t>(factors.begin(), factors.size()));
}

}  // namespace bitplan
