// Tensor: a dtype, dims and a shared, 64-byte aligned buffer. Copies share the buffer
// (cheap handles); `clone()` copies the data. Views into an arena are Tensors whose
// storage is owned elsewhere (the executor's activation arena).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/dtype.hpp"
#include "core/error.hpp"

namespace bitplan {

using Dims = std::vector<std::int64_t>;

// Thrown by product() when a shape's element count does not fit in 64 bits. Readers and
// shape inference check sizes where they can name the file or node; callers that can add
// that context catch this and rethrow.
class ShapeOverflow : public Error {
 public:
  explicit ShapeOverflow(const Dims& dims);
};

// The element count; throws ShapeOverflow when the product of the non-zero dims does not fit
// in int64 (see checked_product in core/checked.hpp).
std::int64_t product(const Dims& dims);
std::string to_string(const Dims& dims);  // "[1, 3, 32, 32]"

// Row-major strides in elements.
Dims contiguous_strides(const Dims& dims);

class Tensor {
 public:
  static constexpr std::size_t kAlignment = 64;

  Tensor() = default;
  // Allocates zero-initialised storage.
  Tensor(DType dtype, Dims dims);
  // A view over memory someone else keeps alive for as long as this Tensor is used.
  static Tensor view(DType dtype, Dims dims, void* data);

  template <typename T>
  static Tensor from_values(Dims dims, std::span<const T> values) {
    Tensor t(dtype_of<T>(), std::move(dims));
    BITPLAN_ASSERT(static_cast<std::int64_t>(values.size()) == t.numel());
    std::copy(values.begin(), values.end(), t.data<T>());
    return t;
  }
  template <typename T>
  static Tensor scalar(T value) {
    return from_values<T>({}, std::span<const T>(&value, 1));
  }

  bool empty() const { return data_ == nullptr && dims_.empty(); }
  DType dtype() const { return dtype_; }
  const Dims& dims() const { return dims_; }
  std::int64_t dim(std::size_t axis) const { return dims_.at(axis); }
  std::size_t rank() const { return dims_.size(); }
  std::int64_t numel() const { return product(dims_); }
  std::size_t nbytes() const { return static_cast<std::size_t>(numel()) * dtype_size(dtype_); }

  void* raw() { return data_; }
  const void* raw() const { return data_; }
  template <typename T>
  T* data() {
    BITPLAN_ASSERT(dtype_of<T>() == dtype_);
    return static_cast<T*>(data_);
  }
  template <typename T>
  const T* data() const {
    BITPLAN_ASSERT(dtype_of<T>() == dtype_);
    return static_cast<const T*>(data_);
  }
  template <typename T>
  std::span<const T> values() const {
    return {data<T>(), static_cast<std::size_t>(numel())};
  }

  // Same buffer, new dims with the same element count.
  Tensor reshaped(Dims dims) const;
  // Points this tensor at `source`'s data, keeping its own dtype and dims (the caller
  // guarantees they describe the same bytes). No allocation: for rebinding on hot paths.
  void alias_data_of(const Tensor& source) {
    storage_ = source.storage_;
    data_ = source.data_;
  }
  Tensor clone() const;
  // The buffer's owner, for caches keyed by buffer identity: while it is alive its address
  // holds this buffer and no other. Empty for views into storage owned elsewhere (arenas).
  std::weak_ptr<void> buffer_owner() const { return storage_; }
  // Values as int64 whatever the integer dtype (shape and index inputs).
  std::vector<std::int64_t> to_int64_vector() const;
  // Values converted to float64 (tests, comparisons).
  std::vector<double> to_double_vector() const;

 private:
  DType dtype_ = DType::f32;
  Dims dims_;
  std::shared_ptr<void> storage_;
  void* data_ = nullptr;
};

}  // namespace bitplan
