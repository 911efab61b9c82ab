#include "core/tensor.hpp"

#include <cstdint>
#include <cstdlib>
#include <cstring>

#include <fmt/ranges.h>

#include "core/checked.hpp"

namespace bitplan {

static_assert(sizeof(bool) == 1, "bool tensors are stored one byte per element");

ShapeOverflow::ShapeOverflow(const Dims& dims)
    : Error(ErrorKind::invalid_input,
            fmt::format("shape {}: the product of its non-zero dimensions does not fit in 64 bits",
                        to_string(dims))) {}

std::int64_t product(const Dims& dims) {
  const auto count = checked_product(dims);
  if (!count) throw ShapeOverflow(dims);
  return *count;
}

std::string to_string(const Dims& dims) {
  return fmt::format("[{}]", fmt::join(dims, ", "));
}

Dims contiguous_strides(const Dims& dims) {
  Dims strides(dims.size(), 1);
  for (std::size_t i = dims.size(); i-- > 1;) strides[i - 1] = strides[i] * dims[i];
  return strides;
}

Tensor::Tensor(DType dtype, Dims dims) : dtype_(dtype), dims_(std::move(dims)) {
  for (auto d : dims_) BITPLAN_ASSERT(d >= 0);
  const auto data_bytes =
      checked_mul(static_cast<std::uint64_t>(numel()), std::uint64_t{dtype_size(dtype_)});
  if (!data_bytes || *data_bytes > std::uint64_t{PTRDIFF_MAX} - kAlignment)
    fail_input("allocating a {} tensor of shape {}: its size in bytes does not fit in 64 bits",
               dtype_name(dtype_), to_string(dims_));
  // Round up so the size is a multiple of the alignment (aligned_alloc requires it) and
  // never zero, so every tensor has a distinct, valid pointer.
  const std::size_t bytes = (*data_bytes + kAlignment) / kAlignment * kAlignment;
  void* p = std::aligned_alloc(kAlignment, bytes);
  if (!p) throw std::bad_alloc();
  std::memset(p, 0, bytes);
  storage_ = std::shared_ptr<void>(p, std::free);
  data_ = p;
}

Tensor Tensor::view(DType dtype, Dims dims, void* data) {
  Tensor t;
  t.dtype_ = dtype;
  t.dims_ = std::move(dims);
  t.data_ = data;
  return t;
}

Tensor Tensor::reshaped(Dims dims) const {
  BITPLAN_ASSERT(product(dims) == numel());
  Tensor t = *this;
  t.dims_ = std::move(dims);
  return t;
}

Tensor Tensor::clone() const {
  Tensor t(dtype_, dims_);
  if (nbytes() > 0) std::memcpy(t.data_, data_, nbytes());
  return t;
}

std::vector<std::int64_t> Tensor::to_int64_vector() const {
  return visit_dtype(dtype_, [&](auto tag) {
    using T = decltype(tag);
    const T* p = static_cast<const T*>(data_);
    return std::vector<std::int64_t>(p, p + numel());
  });
}

std::vector<double> Tensor::to_double_vector() const {
  return visit_dtype(dtype_, [&](auto tag) {
    using T = decltype(tag);
    const T* p = static_cast<const T*>(data_);
    return std::vector<double>(p, p + numel());
  });
}

}  // namespace bitplan
