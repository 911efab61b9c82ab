// Checked arithmetic for sizes computed from input: a shape in a model, a file header or a
// batch size can ask for any number, and a wrapped (or, for signed types, undefined)
// product would allocate or index the wrong amount of memory.
#pragma once

#include <concepts>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <span>
#include <utility>

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

// Size arithmetic on values from a model or file that reports an overflow through
// `on_overflow` (which throws, naming what overflowed) instead of returning nullopt, so a
// formula reads as itself: sizes.add(sizes.mul(k - 1, dilation), 1).
template <typename OnOverflow>
class CheckedSizes {
 public:
  explicit CheckedSizes(OnOverflow on_overflow) : on_overflow_(std::move(on_overflow)) {}
  std::int64_t mul(std::int64_t a, std::int64_t b) const { return or_fail(checked_mul(a, b)); }
  std::int64_t add(std::int64_t a, std::int64_t b) const { return or_fail(checked_add(a, b)); }

 private:
  std::int64_t or_fail(std::optional<std::int64_t> r) const {
    if (!r) on_overflow_();
    return r.value();  // on_overflow_ throws; value() would too, were it to return
  }
  OnOverflow on_overflow_;
};

}  // namespace bitplan
