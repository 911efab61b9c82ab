// NumPy-style broadcasting shared by the elementwise ops: the output shape and, for every
// input, the strides that read it under that shape (0 along broadcast dimensions). The
// strides are computed once per plan; the run walks the output row by row so the inner
// loop is a contiguous (or constant) stream the compiler vectorises.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <vector>

#include "core/parallel.hpp"
#include "core/tensor.hpp"

namespace bitplan {

// Broadcast shape of several inputs, or nullopt when they are incompatible.
std::optional<Dims> broadcast_dims(const std::vector<Dims>& inputs);

template <std::size_t N>
struct BroadcastPlan {
  Dims outer_dims;                             // all output dims but the (collapsed) inner one
  std::int64_t inner = 1;                      // length of the contiguous inner run
  std::array<Dims, N> outer_strides;           // per input, per outer dim
  std::array<std::int64_t, N> inner_stride{};  // 1 (streams) or 0 (repeats one value)
  std::int64_t rows = 1;

  BroadcastPlan(const Dims& out, const std::array<Dims, N>& inputs) {
    const std::size_t rank = out.size();
    std::array<Dims, N> strides;
    for (std::size_t k = 0; k < N; ++k) {
      // Align each input to the output rank from the right, stride 0 where it broadcasts.
      strides[k].assign(rank, 0);
      const Dims& d = inputs[k];
      std::int64_t stride = 1;
      for (std::size_t j = 0; j < d.size(); ++j) {
        const std::size_t in_axis = d.size() - 1 - j, out_axis = rank - 1 - j;
        strides[k][out_axis] = d[in_axis] == 1 ? 0 : stride;
        stride *= d[in_axis];
      }
    }
    // Collapse trailing dims into one inner run while every input stays contiguous (or
    // constant) across them.
    std::size_t split = rank;  // dims [split, rank) form the inner run
    inner = 1;
    for (std::size_t k = 0; k < N; ++k) inner_stride[k] = -1;
    while (split > 0) {
      const std::size_t a = split - 1;
      bool ok = true;
      std::array<std::int64_t, N> next{};
      for (std::size_t k = 0; k < N && ok; ++k) {
        const std::int64_t s = strides[k][a];
        const std::int64_t kind = s == 0 ? 0 : 1;
        if (out[a] == 1) {
          next[k] = inner_stride[k];
          continue;
        }
        if (inner_stride[k] == -1) {
          ok = (kind == 0) || s == 1;
        } else if (inner_stride[k] == 0) {
          ok = kind == 0;
        } else {
          ok = kind == 1 && s == inner;
        }
        next[k] = inner_stride[k] == -1 ? kind : inner_stride[k];
      }
      if (!ok) break;
      for (std::size_t k = 0; k < N; ++k) inner_stride[k] = next[k];
      inner *= out[a];
      split = a;
    }
    for (std::size_t k = 0; k < N; ++k)
      if (inner_stride[k] == -1) inner_stride[k] = 0;
    outer_dims.assign(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(split));
    for (std::size_t k = 0; k < N; ++k)
      outer_strides[k].assign(strides[k].begin(),
                              strides[k].begin() + static_cast<std::ptrdiff_t>(split));
    rows = product(outer_dims);
  }

  // Calls row(offsets, out_offset) for each output row in [row_begin, row_end), where
  // offsets[k] is where input k's row starts.
  template <typename RowFn>
  void for_rows(std::int64_t row_begin, std::int64_t row_end, RowFn&& row) const {
    const std::size_t r = outer_dims.size();
    Dims index(r, 0);
    std::int64_t rem = row_begin;
    for (std::size_t a = r; a-- > 0;) {
      index[a] = rem % outer_dims[a];
      rem /= outer_dims[a];
    }
    std::array<std::int64_t, N> off{};
    for (std::size_t k = 0; k < N; ++k)
      for (std::size_t a = 0; a < r; ++a) off[k] += index[a] * outer_strides[k][a];
    for (std::int64_t i = row_begin; i < row_end; ++i) {
      row(off, i * inner);
      // Odometer step over the outer dims.
      for (std::size_t a = r; a-- > 0;) {
        for (std::size_t k = 0; k < N; ++k) off[k] += outer_strides[k][a];
        if (++index[a] < outer_dims[a]) break;
        for (std::size_t k = 0; k < N; ++k) off[k] -= outer_strides[k][a] * outer_dims[a];
        index[a] = 0;
      }
    }
  }

  // Runs fn over every output element in parallel. fn(out_ptr, n, in_ptrs..., in_strides...)
  // processes one inner run.
  template <typename RunFn>
  void parallel_rows(RunFn&& run) const {
    const std::int64_t grain = std::max<std::int64_t>(1, 16384 / std::max<std::int64_t>(inner, 1));
    parallel_for(rows, grain, [&](std::int64_t b, std::int64_t e) { for_rows(b, e, run); });
  }
};

}  // namespace bitplan
