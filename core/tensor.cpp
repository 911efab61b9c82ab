#include "core/tensor.hpp"

#include <cstdlib>
#include <cstring>
#include <numeric>

#include <fmt/ranges.h>

namespace bitplan {

static_assert(sizeof(bool) == 1, "bool tensors are stored one byte per element");

std::int64_t product(const Dims& dims) {
  return std::accumulate(dims.begin(), dims.end(), std::int64_t{1}, std::multiplies<>());
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
  // Round up so the size is a multiple of the alignment (aligned_alloc requires it) and
  // never zero, so every tensor has a distinct, valid pointer.
  std::size_t bytes = (nbytes() + kAlignment) / kAlignment * kAlignment;
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
