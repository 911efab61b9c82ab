// Shape and data-movement ops: Shape, Reshape, Flatten, Squeeze, Unsqueeze, Identity,
// Transpose, Concat, Split, Slice, Gather, Expand, ConstantOfShape, Pad, Tile, Range,
// DepthToSpace, SpaceToDepth (Resize and Upsample live in resize.cpp).
//
// These ops only move bytes, so every kernel works on every dtype by copying words of the
// element's size. Shape arithmetic (which source element lands where) is resolved at plan
// time: most ops become an IndexCopy, a table of source offsets per output axis, and their
// run is a row loop of memcpy / strided reads. Ops whose output is data-independent (Shape,
// ConstantOfShape, Range) produce constants the planner folds; pure re-labellings of the
// dims (Reshape, Flatten, Squeeze, Unsqueeze, Identity) are views with no kernel at all.
#include <fmt/ranges.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <limits>
#include <numeric>
#include <optional>

#include "core/checked.hpp"
#include "core/parallel.hpp"
#include "executor/op_registry.hpp"

namespace bitplan {

void register_resize_ops(OpRegistry& registry);  // executor/ops/resize.cpp

namespace {

// Copy loops hand each task at least this many bytes: below it, scheduling costs more than
// the copy.
constexpr std::int64_t kCopyGrainBytes = std::int64_t{64} << 10;

std::int64_t grain_for(std::int64_t bytes_per_item) {
  return std::max<std::int64_t>(1, kCopyGrainBytes / std::max<std::int64_t>(bytes_per_item, 1));
}

std::int64_t ssize(const Dims& dims) {
  return static_cast<std::int64_t>(dims.size());
}

// Calls fn(U{}) with the unsigned integer type as wide as one element: copies move bits, so
// one instantiation per element size serves every dtype.
template <typename Fn>
void visit_word(std::size_t bytes, Fn&& fn) {
  if (bytes == 1) {
    fn(std::uint8_t{});
  } else if (bytes == 4) {
    fn(std::uint32_t{});
  } else {
    BITPLAN_ASSERT(bytes == 8);
    fn(std::uint64_t{});
  }
}

// The bytes of `value` converted to `dtype` (a pad or fill value given as a float attribute).
std::array<std::byte, 8> value_bytes(DType dtype, double value) {
  std::array<std::byte, 8> bytes{};
  visit_dtype(dtype, [&](auto tag) {
    const auto v = static_cast<decltype(tag)>(value);
    std::memcpy(bytes.data(), &v, sizeof(v));
  });
  return bytes;
}

// ---------------------------------------------------------------- operands

// Input i as a list of integers known at plan time (shapes, axes, pads, repeats).
std::vector<std::int64_t> int_values(const OpContext& ctx, std::size_t i, std::string_view role) {
  const Tensor& t = ctx.constant_input(i, role);
  if (t.dtype() != DType::i64 && t.dtype() != DType::i32)
    ctx.invalid("input {} ({}) must be int64 or int32, got {}", i, role, dtype_name(t.dtype()));
  return t.to_int64_vector();
}

// A list operand that moved from an attribute to an input across opsets (Squeeze axes from
// 13, Slice starts from 10, Pad pads from 11, Split split from 13): the attribute when the
// node has one, else input i when given, else nothing.
std::optional<std::vector<std::int64_t>> list_operand(const OpContext& ctx, const std::string& attr,
                                                      std::size_t i) {
  if (ctx.node().has_attr(attr)) return ctx.node().attr_ints(attr);
  if (ctx.has_input(i)) return int_values(ctx, i, attr);
  return std::nullopt;
}

// Normalises possibly negative axes against `rank`; an axis named twice is an error.
std::vector<std::int64_t> normalize_axes(const OpContext& ctx, std::vector<std::int64_t> axes,
                                         std::int64_t rank) {
  for (auto& a : axes) a = ctx.axis(a, rank);
  auto sorted = axes;
  std::sort(sorted.begin(), sorted.end());
  if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end())
    ctx.invalid("axes [{}] name an axis twice", fmt::join(axes, ", "));
  return axes;
}

OpBuild view_of_input(const OpContext& ctx, Dims dims) {
  OpBuild b;
  b.outputs.push_back({ctx.input(0).dtype, std::move(dims), std::nullopt});
  b.output_is_view_of_input = true;
  return b;
}

OpBuild constant_output(Tensor value) {
  OpBuild b;
  b.outputs.push_back({value.dtype(), value.dims(), value});
  return b;
}

// ---------------------------------------------------------------- IndexCopy

// A source offset that names no element: the output position takes the fill value (Pad).
constexpr std::int64_t kFill = std::numeric_limits<std::int64_t>::min();

// One output axis of an IndexCopy: where each of its indices reads in the source.
struct CopyAxis {
  std::int64_t dim = 1;
  std::int64_t stride = 0;          // source elements per step, when `table` is empty
  std::vector<std::int64_t> table;  // else the source offset of each index, or kFill

  bool affine() const { return table.empty(); }
  std::int64_t offset(std::int64_t i) const {
    return affine() ? i * stride : table[static_cast<std::size_t>(i)];
  }
};

// Fills a contiguous output from one source: output element (i0, ..., in) reads source
// element base + sum_k axes[k].offset(ik). Transpose, Slice, Expand, Tile, Pad and the
// depth/space ops are all this copy with different axes.
class IndexCopy {
 public:
  IndexCopy(std::size_t elem_bytes, std::int64_t base, std::vector<CopyAxis> axes)
      : elem_(elem_bytes), base_(base) {
    Dims dims;
    for (const auto& a : axes) dims.push_back(a.dim);
    numel_ = product(dims);  // ShapeOverflow past int64, which the plan names the node in
    // Affine axes of length 1 only shift the base, and adjacent affine axes that walk the
    // source contiguously merge, so the innermost run (one memcpy per row) is as long as the
    // layouts allow.
    std::vector<CopyAxis> merged;
    for (auto& a : axes) {
      if (a.affine() && a.dim == 1) continue;
      if (!merged.empty() && merged.back().affine() && a.affine() &&
          merged.back().stride == a.dim * a.stride) {
        merged.back().dim *= a.dim;
        merged.back().stride = a.stride;
        continue;
      }
      merged.push_back(std::move(a));
    }
    if (merged.empty()) merged.push_back({});
    inner_ = std::move(merged.back());
    merged.pop_back();
    outer_ = std::move(merged);
    rows_ = 1;
    for (const auto& a : outer_) rows_ *= a.dim;

    // The inner axis is a run when it reads consecutive source elements, possibly framed by
    // fill (constant Pad): then a row is fill, memcpy, fill.
    if (inner_.affine()) {
      is_run_ = inner_.stride == 1;
      run_lo_ = 0;
      run_hi_ = inner_.dim;
    } else {
      const auto& t = inner_.table;
      const auto is_source = [](std::int64_t o) { return o != kFill; };
      const auto lo = std::find_if(t.begin(), t.end(), is_source);
      const auto hi = std::find_if(t.rbegin(), t.rend(), is_source).base();
      is_run_ = true;
      for (auto it = lo; it < hi && is_run_; ++it) is_run_ = *it == *lo + (it - lo);
      run_lo_ = lo - t.begin();
      run_hi_ = std::max(run_lo_, hi - t.begin());
      run_src_ = lo < hi ? *lo : 0;
    }
    // Long rows are cut into column chunks so that a copy of few rows (a Slice of a large
    // contiguous block) still spreads over the cores.
    const std::int64_t chunk_elems = kCopyGrainBytes / static_cast<std::int64_t>(elem_);
    chunk_ = std::max<std::int64_t>(1, std::min(inner_.dim, chunk_elems));
    chunks_per_row_ = inner_.dim == 0 ? 0 : (inner_.dim + chunk_ - 1) / chunk_;
  }

  void run(const void* src, void* dst, const void* fill) const {
    if (numel_ == 0) return;
    visit_word(elem_, [&](auto tag) {
      using U = decltype(tag);
      U fill_value{};
      if (fill) std::memcpy(&fill_value, fill, sizeof(U));
      const auto* s = static_cast<const U*>(src);
      auto* d = static_cast<U*>(dst);
      const std::int64_t items = rows_ * chunks_per_row_;
      const std::int64_t item_bytes =
          std::min(chunk_, inner_.dim) * static_cast<std::int64_t>(sizeof(U));
      parallel_for(items, grain_for(item_bytes), [&](std::int64_t b, std::int64_t e) {
        for (std::int64_t item = b; item < e; ++item) copy_item(s, d, fill_value, item);
      });
    });
  }

 private:
  template <typename U>
  void copy_item(const U* src, U* dst, U fill, std::int64_t item) const {
    const std::int64_t row = item / chunks_per_row_;
    const std::int64_t c0 = item % chunks_per_row_ * chunk_;
    const std::int64_t c1 = std::min(c0 + chunk_, inner_.dim);
    U* out = dst + row * inner_.dim;
    std::int64_t off = base_;
    for (std::size_t k = outer_.size(), rest = static_cast<std::size_t>(row); k-- > 0;) {
      const CopyAxis& a = outer_[k];
      const std::int64_t o = a.offset(static_cast<std::int64_t>(rest % a.dim));
      rest /= static_cast<std::size_t>(a.dim);
      if (o == kFill) {  // padding along an outer axis: the whole row is fill
        std::fill(out + c0, out + c1, fill);
        return;
      }
      off += o;
    }
    const U* in = src + off;
    if (is_run_) {
      const std::int64_t lo = std::clamp(run_lo_, c0, c1), hi = std::clamp(run_hi_, c0, c1);
      std::fill(out + c0, out + lo, fill);
      if (hi > lo)
        std::copy(in + run_src_ + (lo - run_lo_), in + run_src_ + (hi - run_lo_), out + lo);
      std::fill(out + hi, out + c1, fill);
    } else if (inner_.affine()) {
      const std::int64_t stride = inner_.stride;
      for (std::int64_t j = c0; j < c1; ++j) out[j] = in[j * stride];
    } else {
      const std::int64_t* table = inner_.table.data();
      for (std::int64_t j = c0; j < c1; ++j) out[j] = table[j] == kFill ? fill : in[table[j]];
    }
  }

  std::size_t elem_;
  std::int64_t base_;
  std::int64_t numel_ = 0, rows_ = 1;
  std::vector<CopyAxis> outer_;
  CopyAxis inner_;
  bool is_run_ = false;
  // When is_run_: inner positions [run_lo_, run_hi_) read consecutive source elements from
  // run_src_ (relative to the row), the others are fill.
  std::int64_t run_lo_ = 0, run_hi_ = 0, run_src_ = 0;
  std::int64_t chunk_ = 1, chunks_per_row_ = 0;
};

// An op whose output 0 is an IndexCopy of input 0.
OpBuild copy_build(DType dtype, Dims dims, IndexCopy copy) {
  OpBuild b;
  b.outputs.push_back({dtype, std::move(dims), std::nullopt});
  b.kernel =
      make_kernel([copy = std::move(copy)](std::span<const Tensor> in, std::span<Tensor> out) {
        copy.run(in[0].raw(), out[0].raw(), nullptr);
      });
  return b;
}

// Axes reading `dims` (contiguous) in the order `perm`: the core of Transpose and the
// depth/space rearrangements.
IndexCopy permuted_copy(DType dtype, const Dims& dims, const std::vector<std::int64_t>& perm) {
  const Dims strides = contiguous_strides(dims);
  std::vector<CopyAxis> axes;
  for (auto p : perm) axes.push_back({dims[p], strides[p], {}});
  return IndexCopy(dtype_size(dtype), 0, std::move(axes));
}

// ---------------------------------------------------------------- views and shapes

OpBuild build_shape(const OpContext& ctx) {
  const Dims& dims = ctx.input(0).dims;
  const std::int64_t rank = ssize(dims);
  // Opset 15 slices the shape; out-of-range bounds clamp rather than fail.
  const auto bound = [rank](std::int64_t v) {
    return std::clamp(v < 0 ? v + rank : v, std::int64_t{0}, rank);
  };
  const std::int64_t start = bound(ctx.node().attr_int("start", 0));
  const std::int64_t end = std::max(start, bound(ctx.node().attr_int("end", rank)));
  const std::vector<std::int64_t> values(dims.begin() + start, dims.begin() + end);
  return constant_output(Tensor::from_values<std::int64_t>({end - start}, values));
}

OpBuild build_reshape(const OpContext& ctx) {
  const Dims& in = ctx.input(0).dims;
  const auto shape = int_values(ctx, 1, "shape");
  // With allowzero (opset 14) a 0 is a real zero-length dim instead of "copy the input's".
  const bool allow_zero = ctx.node().attr_int("allowzero", 0) != 0;
  Dims out;
  std::optional<std::size_t> inferred;
  std::int64_t known = 1;
  for (std::size_t i = 0; i < shape.size(); ++i) {
    std::int64_t d = shape[i];
    if (d == 0 && !allow_zero) {
      if (i >= in.size())
        ctx.invalid("shape [{}] copies dim {} (a 0) but the input {} has rank {}",
                    fmt::join(shape, ", "), i, to_string(in), in.size());
      d = in[i];
    }
    if (d == -1) {
      if (inferred)
        ctx.invalid("shape [{}] has more than one -1 (dim to infer)", fmt::join(shape, ", "));
      inferred = i;
      out.push_back(1);
      continue;
    }
    if (d < 0) ctx.invalid("shape [{}] has dim {}; dims must be >= -1", fmt::join(shape, ", "), d);
    known *= d;
    out.push_back(d);
  }
  const std::int64_t total = product(in);
  if (inferred) {
    if (known == 0 || total % known != 0)
      ctx.invalid("cannot infer the -1 of shape [{}] for input {} ({} elements)",
                  fmt::join(shape, ", "), to_string(in), total);
    out[*inferred] = total / known;
  }
  if (product(out) != total)
    ctx.invalid("cannot reshape {} ({} elements) to shape [{}] ({} elements)", to_string(in), total,
                fmt::join(shape, ", "), product(out));
  return view_of_input(ctx, std::move(out));
}

OpBuild build_flatten(const OpContext& ctx) {
  const Dims& in = ctx.input(0).dims;
  const std::int64_t rank = ssize(in);
  std::int64_t axis = ctx.node().attr_int("axis", 1);
  // Unlike most axes, Flatten's may equal the rank (everything goes to the outer dim).
  if (axis < -rank || axis > rank)
    ctx.invalid("axis {} is out of range [-{}, {}] for input {}", axis, rank, rank, to_string(in));
  if (axis < 0) axis += rank;
  const Dims outer(in.begin(), in.begin() + axis), inner(in.begin() + axis, in.end());
  return view_of_input(ctx, {product(outer), product(inner)});
}

OpBuild build_squeeze(const OpContext& ctx) {
  const Dims& in = ctx.input(0).dims;
  const auto axes = list_operand(ctx, "axes", 1);
  Dims out;
  if (!axes) {  // no axes: drop every dim of length 1
    std::copy_if(in.begin(), in.end(), std::back_inserter(out),
                 [](std::int64_t d) { return d != 1; });
    return view_of_input(ctx, std::move(out));
  }
  const auto normalized = normalize_axes(ctx, *axes, ssize(in));
  for (auto a : normalized)
    if (in[a] != 1)
      ctx.invalid("cannot squeeze axis {} of input {}: its length is not 1", a, to_string(in));
  for (std::int64_t k = 0; k < ssize(in); ++k)
    if (std::find(normalized.begin(), normalized.end(), k) == normalized.end())
      out.push_back(in[k]);
  return view_of_input(ctx, std::move(out));
}

OpBuild build_unsqueeze(const OpContext& ctx) {
  const Dims& in = ctx.input(0).dims;
  const auto axes = list_operand(ctx, "axes", 1);
  if (!axes) ctx.invalid("axes are required (attribute before opset 13, input 1 from 13)");
  // Axes index the output, whose rank counts the inserted dims.
  const std::int64_t out_rank = ssize(in) + ssize(*axes);
  const auto normalized = normalize_axes(ctx, *axes, out_rank);
  Dims out;
  auto next = in.begin();
  for (std::int64_t k = 0; k < out_rank; ++k)
    out.push_back(std::find(normalized.begin(), normalized.end(), k) != normalized.end() ? 1
                                                                                         : *next++);
  return view_of_input(ctx, std::move(out));
}

OpBuild build_identity(const OpContext& ctx) {
  return view_of_input(ctx, ctx.input(0).dims);
}

OpBuild build_constant_of_shape(const OpContext& ctx) {
  const auto shape = int_values(ctx, 0, "shape");
  for (auto d : shape)
    if (d < 0) ctx.invalid("shape [{}] has a negative dim", fmt::join(shape, ", "));
  const Tensor* value = ctx.node().attr_tensor("value");
  if (value && value->numel() != 1)
    ctx.invalid("attribute 'value' must hold one element, it has shape {}",
                to_string(value->dims()));
  // Without `value` the output is float32 zeros, which a fresh Tensor already is.
  Tensor out(value ? value->dtype() : DType::f32, shape);
  if (value)
    visit_word(dtype_size(out.dtype()), [&](auto tag) {
      using U = decltype(tag);
      U v;
      std::memcpy(&v, value->raw(), sizeof(U));
      std::fill_n(static_cast<U*>(out.raw()), out.numel(), v);
    });
  return constant_output(std::move(out));
}

OpBuild build_range(const OpContext& ctx) {
  const Tensor& start = ctx.constant_input(0, "start");
  const Tensor& limit = ctx.constant_input(1, "limit");
  const Tensor& delta = ctx.constant_input(2, "delta");
  const DType dtype = start.dtype();
  if (limit.dtype() != dtype || delta.dtype() != dtype)
    ctx.invalid("start, limit and delta must share a type; got {}, {}, {}", dtype_name(dtype),
                dtype_name(limit.dtype()), dtype_name(delta.dtype()));
  if (dtype != DType::f32 && dtype != DType::f64 && dtype != DType::i32 && dtype != DType::i64)
    ctx.unsupported("type {} is not supported; float32, float64, int32 and int64 are",
                    dtype_name(dtype));
  if (start.numel() != 1 || limit.numel() != 1 || delta.numel() != 1)
    ctx.invalid("start, limit and delta must be scalars; got shapes {}, {}, {}",
                to_string(start.dims()), to_string(limit.dims()), to_string(delta.dims()));
  const double s = start.to_double_vector()[0], l = limit.to_double_vector()[0];
  const double d = delta.to_double_vector()[0];
  if (d == 0) ctx.invalid("delta must not be 0");
  const auto count = static_cast<std::int64_t>(std::max(0.0, std::ceil((l - s) / d)));
  Tensor out(dtype, {count});
  visit_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    // Element i is start + i * delta in the output type (as numpy.arange computes it).
    if constexpr (!std::is_same_v<T, bool>) {
      const T first = start.data<T>()[0], step = delta.data<T>()[0];
      T* p = out.data<T>();
      for (std::int64_t i = 0; i < count; ++i)
        p[i] = static_cast<T>(first + static_cast<T>(i) * step);
    }
  });
  return constant_output(std::move(out));
}

// ---------------------------------------------------------------- copies

OpBuild build_transpose(const OpContext& ctx) {
  const ValueMeta& x = ctx.input(0);
  const std::int64_t rank = ssize(x.dims);
  std::vector<std::int64_t> perm(static_cast<std::size_t>(rank));
  std::iota(perm.rbegin(), perm.rend(), 0);  // default: reverse the axes
  if (ctx.node().has_attr("perm")) {
    perm = ctx.node().attr_ints("perm");
    auto sorted = perm;
    std::sort(sorted.begin(), sorted.end());
    std::vector<std::int64_t> identity(static_cast<std::size_t>(rank));
    std::iota(identity.begin(), identity.end(), 0);
    if (sorted != identity)
      ctx.invalid("perm [{}] is not a permutation of the {} axes of input {}",
                  fmt::join(perm, ", "), rank, to_string(x.dims));
  }
  Dims out;
  for (auto p : perm) out.push_back(x.dims[p]);
  return copy_build(x.dtype, std::move(out), permuted_copy(x.dtype, x.dims, perm));
}

OpBuild build_slice(const OpContext& ctx) {
  const ValueMeta& x = ctx.input(0);
  const std::int64_t rank = ssize(x.dims);
  const auto starts = list_operand(ctx, "starts", 1);
  const auto ends = list_operand(ctx, "ends", 2);
  if (!starts || !ends) ctx.invalid("starts and ends are required");
  const std::size_t n = starts->size();
  std::vector<std::int64_t> axes(n), steps(n, 1);
  std::iota(axes.begin(), axes.end(), 0);
  if (auto given = list_operand(ctx, "axes", 3)) axes = std::move(*given);
  if (ctx.has_input(4)) steps = int_values(ctx, 4, "steps");  // steps exist from opset 10 only
  if (ends->size() != n || axes.size() != n || steps.size() != n)
    ctx.invalid("starts, ends, axes and steps must have the same length; got {}, {}, {}, {}", n,
                ends->size(), axes.size(), steps.size());
  axes = normalize_axes(ctx, std::move(axes), rank);

  Dims out = x.dims;
  const Dims strides = contiguous_strides(x.dims);
  std::vector<std::int64_t> step_of(static_cast<std::size_t>(rank), 1);
  std::int64_t base = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const std::int64_t a = axes[i], dim = x.dims[a];
    std::int64_t step = steps[i];
    if (step == 0) ctx.invalid("step of axis {} is 0; steps must be non-zero", a);
    if (dim == 0) {
      out[a] = 0;
      continue;
    }
    // A step longer than the axis takes at most one element; clamping it keeps the index
    // arithmetic below in range for the INT64_MAX-style values exporters use.
    step = std::clamp(step, -dim, dim);
    std::int64_t start = (*starts)[i], end = (*ends)[i];
    if (start < 0) start += dim;
    if (end < 0) end += dim;
    // Clamping per the spec: a forward slice lives in [0, dim], a backward one starts at
    // most at dim - 1 and may end at -1 (one before the first element).
    if (step > 0) {
      start = std::clamp<std::int64_t>(start, 0, dim);
      end = std::clamp<std::int64_t>(end, 0, dim);
      out[a] = end > start ? (end - start - 1) / step + 1 : 0;
    } else {
      start = std::clamp<std::int64_t>(start, 0, dim - 1);
      end = std::clamp<std::int64_t>(end, -1, dim - 1);
      out[a] = start > end ? (start - end - 1) / -step + 1 : 0;
    }
    base += start * strides[a];
    step_of[a] = step;
  }
  std::vector<CopyAxis> copy_axes;
  for (std::int64_t k = 0; k < rank; ++k)
    copy_axes.push_back({out[k], strides[k] * step_of[k], {}});
  return copy_build(x.dtype, out, IndexCopy(dtype_size(x.dtype), base, std::move(copy_axes)));
}

OpBuild build_expand(const OpContext& ctx) {
  const ValueMeta& x = ctx.input(0);
  const auto shape = int_values(ctx, 1, "shape");
  // Bidirectional broadcast: the output rank is the larger one and a 1 on either side
  // stretches to the other.
  const std::size_t rank = std::max(x.dims.size(), shape.size());
  const std::size_t x_pad = rank - x.dims.size(), s_pad = rank - shape.size();
  const Dims strides = contiguous_strides(x.dims);
  Dims out;
  std::vector<CopyAxis> axes;
  for (std::size_t k = 0; k < rank; ++k) {
    const std::int64_t d = k < x_pad ? 1 : x.dims[k - x_pad];
    const std::int64_t s = k < s_pad ? 1 : shape[k - s_pad];
    if (s < 0 || (d != s && d != 1 && s != 1))
      ctx.invalid("cannot expand input {} to shape [{}]: dims must match or be 1",
                  to_string(x.dims), fmt::join(shape, ", "));
    out.push_back(d == 1 ? s : d);
    axes.push_back({out.back(), d == 1 ? 0 : strides[k - x_pad], {}});
  }
  return copy_build(x.dtype, out, IndexCopy(dtype_size(x.dtype), 0, std::move(axes)));
}

OpBuild build_tile(const OpContext& ctx) {
  const ValueMeta& x = ctx.input(0);
  const auto repeats = int_values(ctx, 1, "repeats");
  if (repeats.size() != x.dims.size() ||
      std::any_of(repeats.begin(), repeats.end(), [](std::int64_t r) { return r < 0; }))
    ctx.invalid("repeats [{}] must give one non-negative count per axis of input {}",
                fmt::join(repeats, ", "), to_string(x.dims));
  // Tiling axis k is broadcasting a new outer axis of length repeats[k] in front of it:
  // output index (r, i) reads input index i.
  const Dims strides = contiguous_strides(x.dims);
  Dims out;
  std::vector<CopyAxis> axes;
  for (std::size_t k = 0; k < x.dims.size(); ++k) {
    axes.push_back({repeats[k], 0, {}});
    axes.push_back({x.dims[k], strides[k], {}});
    const auto length = checked_mul(repeats[k], x.dims[k]);
    if (!length)
      ctx.invalid("repeats [{}] of input {}: the output length overflows 64 bits",
                  fmt::join(repeats, ", "), to_string(x.dims));
    out.push_back(*length);
  }
  return copy_build(x.dtype, out, IndexCopy(dtype_size(x.dtype), 0, std::move(axes)));
}

// DepthToSpace / SpaceToDepth on NCHW: a reshape to 6-d, a transpose, a reshape back.
OpBuild build_depth_to_space(const OpContext& ctx) {
  const ValueMeta& x = ctx.input(0);
  const std::int64_t b = ctx.node().attr_int("blocksize", 0);
  const std::string mode = ctx.node().attr_string("mode", "DCR");
  if (x.dims.size() != 4 || b <= 0 || x.dims[1] % (b * b) != 0)
    ctx.invalid("input {} must be NCHW with C divisible by blocksize^2 (blocksize {})",
                to_string(x.dims), b);
  if (mode != "DCR" && mode != "CRD") ctx.invalid("mode '{}' is not one of DCR, CRD", mode);
  const std::int64_t n = x.dims[0], c = x.dims[1] / (b * b), h = x.dims[2], w = x.dims[3];
  // DCR reads channels as (b1, b2, c), CRD as (c, b1, b2); both write (n, c, h, b1, w, b2).
  const bool dcr = mode == "DCR";
  const Dims six = dcr ? Dims{n, b, b, c, h, w} : Dims{n, c, b, b, h, w};
  const std::vector<std::int64_t> perm = dcr ? std::vector<std::int64_t>{0, 3, 4, 1, 5, 2}
                                             : std::vector<std::int64_t>{0, 1, 4, 2, 5, 3};
  return copy_build(x.dtype, {n, c, h * b, w * b}, permuted_copy(x.dtype, six, perm));
}

OpBuild build_space_to_depth(const OpContext& ctx) {
  const ValueMeta& x = ctx.input(0);
  const std::int64_t b = ctx.node().attr_int("blocksize", 0);
  if (x.dims.size() != 4 || b <= 0 || x.dims[2] % b != 0 || x.dims[3] % b != 0)
    ctx.invalid("input {} must be NCHW with H and W divisible by blocksize {}", to_string(x.dims),
                b);
  const std::int64_t n = x.dims[0], c = x.dims[1], h = x.dims[2] / b, w = x.dims[3] / b;
  // (n, c, h, b1, w, b2) -> (n, b1, b2, c, h, w)
  return copy_build(x.dtype, {n, c * b * b, h, w},
                    permuted_copy(x.dtype, {n, c, h, b, w, b}, {0, 3, 5, 1, 2, 4}));
}

// Source index along a padded axis for reflect mode: mirror around the ends without
// repeating them (period 2 * (len - 1)), as numpy.pad does.
std::int64_t reflect_index(std::int64_t i, std::int64_t len) {
  if (len == 1) return 0;
  const std::int64_t period = 2 * (len - 1);
  i %= period;
  if (i < 0) i += period;
  return i < len ? i : period - i;
}

OpBuild build_pad(const OpContext& ctx) {
  const ValueMeta& x = ctx.input(0);
  const std::int64_t rank = ssize(x.dims);
  const std::string mode = ctx.node().attr_string("mode", "constant");
  if (mode != "constant" && mode != "reflect" && mode != "edge")
    ctx.unsupported("mode '{}' is not supported; constant, reflect and edge are", mode);
  const auto pads = list_operand(ctx, "pads", 1);
  if (!pads) ctx.invalid("pads are required (attribute before opset 11, input 1 from 11)");
  std::vector<std::int64_t> axes(static_cast<std::size_t>(rank));
  std::iota(axes.begin(), axes.end(), 0);
  if (ctx.has_input(3)) axes = normalize_axes(ctx, int_values(ctx, 3, "axes"), rank);  // opset 18
  if (pads->size() != 2 * axes.size())
    ctx.invalid("pads has {} values; it needs 2 per padded axis ({})", pads->size(),
                2 * axes.size());
  std::vector<std::int64_t> before(static_cast<std::size_t>(rank), 0), after = before;
  for (std::size_t i = 0; i < axes.size(); ++i) {
    before[axes[i]] = (*pads)[i];
    after[axes[i]] = (*pads)[i + axes.size()];
  }

  const Dims strides = contiguous_strides(x.dims);
  Dims out;
  std::vector<CopyAxis> copy_axes;
  std::int64_t base = 0;
  for (std::int64_t k = 0; k < rank; ++k) {
    const std::int64_t b = before[k], e = after[k], dim = x.dims[k];
    // Negative pads crop first; the kept source range is [lo, lo + len).
    const std::int64_t lo = std::max<std::int64_t>(0, -b);
    const std::int64_t len = dim - lo - std::max<std::int64_t>(0, -e);
    const std::int64_t size = dim + b + e;
    if (len < 0 || size < 0)
      ctx.invalid("pads {} / {} of axis {} crop more than its {} elements", b, e, k, dim);
    if (len == 0 && size > 0 && mode != "constant")
      ctx.invalid("mode '{}' pads from the input's edge, but axis {} has no elements left", mode,
                  k);
    out.push_back(size);
    if (b <= 0 && e <= 0) {  // a plain (possibly cropped) axis
      base += lo * strides[k];
      copy_axes.push_back({size, strides[k], {}});
      continue;
    }
    CopyAxis axis{size, 0, std::vector<std::int64_t>(static_cast<std::size_t>(size))};
    for (std::int64_t i = 0; i < size; ++i) {
      std::int64_t src = i - std::max<std::int64_t>(b, 0);  // index into the kept range
      if (src < 0 || src >= len) {
        if (mode == "constant") {
          axis.table[i] = kFill;
          continue;
        }
        src = mode == "edge" ? std::clamp<std::int64_t>(src, 0, len - 1) : reflect_index(src, len);
      }
      axis.table[i] = (lo + src) * strides[k];
    }
    copy_axes.push_back(std::move(axis));
  }

  // The fill value: the `value` attribute before opset 11, else input 2 read at run time
  // (it is a tensor like any other), else 0.
  const std::size_t elem = dtype_size(x.dtype);
  const auto fill = value_bytes(x.dtype, ctx.node().attr_float("value", 0.0f));
  const bool fill_input = ctx.has_input(2);
  if (fill_input && (ctx.input(2).dtype != x.dtype || product(ctx.input(2).dims) != 1))
    ctx.invalid("constant_value must be one {} value, got {} {}", dtype_name(x.dtype),
                dtype_name(ctx.input(2).dtype), to_string(ctx.input(2).dims));
  OpBuild b;
  b.outputs.push_back({x.dtype, out, std::nullopt});
  b.kernel = make_kernel([copy = IndexCopy(elem, base, std::move(copy_axes)), fill, fill_input,
                          elem](std::span<const Tensor> in, std::span<Tensor> outs) {
    auto value = fill;
    if (fill_input) std::memcpy(value.data(), in[2].raw(), elem);
    copy.run(in[0].raw(), outs[0].raw(), value.data());
  });
  return b;
}

OpBuild build_concat(const OpContext& ctx) {
  if (!ctx.node().has_attr("axis")) ctx.invalid("attribute 'axis' is required");
  const ValueMeta& first = ctx.input(0);
  const std::int64_t rank = ssize(first.dims);
  if (rank == 0) ctx.invalid("inputs must have rank >= 1 (got a scalar)");
  const std::int64_t axis = ctx.axis(ctx.node().attr_int("axis", 0), rank);
  Dims out = first.dims;
  out[axis] = 0;
  for (std::size_t i = 0; i < ctx.num_inputs(); ++i) {
    const ValueMeta& in = ctx.input(i);
    bool fits = in.dtype == first.dtype && ssize(in.dims) == rank;
    for (std::int64_t k = 0; k < rank && fits; ++k) fits = k == axis || in.dims[k] == first.dims[k];
    if (!fits)
      ctx.invalid("input {} ({} {}) does not match input 0 ({} {}) outside axis {}", i,
                  dtype_name(in.dtype), to_string(in.dims), dtype_name(first.dtype),
                  to_string(first.dims), axis);
    out[axis] += in.dims[axis];
  }
  // Each output row (one index of the axes before `axis`) is the inputs' rows side by side.
  const auto elem = static_cast<std::int64_t>(dtype_size(first.dtype));
  const std::int64_t rows = product(Dims(out.begin(), out.begin() + axis));
  std::vector<std::int64_t> piece_bytes, piece_offset;
  std::int64_t row_bytes = 0;
  for (std::size_t i = 0; i < ctx.num_inputs(); ++i) {
    const Dims& d = ctx.input(i).dims;
    piece_offset.push_back(row_bytes);
    piece_bytes.push_back(product(Dims(d.begin() + axis, d.end())) * elem);
    row_bytes += piece_bytes.back();
  }
  OpBuild b;
  b.outputs.push_back({first.dtype, out, std::nullopt});
  b.kernel = make_kernel([=](std::span<const Tensor> in, std::span<Tensor> outs) {
    auto* dst = static_cast<std::byte*>(outs[0].raw());
    const auto n = static_cast<std::int64_t>(in.size());
    parallel_for(rows * n, grain_for(row_bytes / n), [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t t = begin; t < end; ++t) {
        const std::int64_t row = t / n;
        const auto i = static_cast<std::size_t>(t % n);
        const auto* src = static_cast<const std::byte*>(in[i].raw());
        std::memcpy(dst + row * row_bytes + piece_offset[i], src + row * piece_bytes[i],
                    static_cast<std::size_t>(piece_bytes[i]));
      }
    });
  });
  return b;
}

OpBuild build_split(const OpContext& ctx) {
  const ValueMeta& x = ctx.input(0);
  const std::int64_t rank = ssize(x.dims);
  if (rank == 0) ctx.invalid("input must have rank >= 1 (got a scalar)");
  const std::int64_t axis = ctx.axis(ctx.node().attr_int("axis", 0), rank);
  const std::int64_t dim = x.dims[axis];
  const auto outputs = static_cast<std::int64_t>(ctx.node().outputs.size());
  std::vector<std::int64_t> sizes;
  if (auto given = list_operand(ctx, "split", 1)) {
    sizes = std::move(*given);
  } else if (ctx.node().has_attr("num_outputs")) {
    // Opset 18: ceil(dim / n) per output, the last one taking what is left.
    const std::int64_t parts = ctx.node().attr_int("num_outputs", 0);
    if (parts != outputs)
      ctx.invalid("num_outputs {} differs from the node's {} outputs", parts, outputs);
    const std::int64_t chunk = (dim + parts - 1) / parts;
    sizes.assign(static_cast<std::size_t>(parts), chunk);
    sizes.back() = dim - chunk * (parts - 1);
  } else {
    if (dim % outputs != 0)
      ctx.invalid("axis {} of length {} does not split evenly into {} outputs", axis, dim, outputs);
    sizes.assign(static_cast<std::size_t>(outputs), dim / outputs);
  }
  if (ssize(sizes) != outputs ||
      std::accumulate(sizes.begin(), sizes.end(), std::int64_t{0}) != dim ||
      std::any_of(sizes.begin(), sizes.end(), [](std::int64_t s) { return s < 0; }))
    ctx.invalid("split [{}] must give {} non-negative sizes summing to {} (axis {} of {})",
                fmt::join(sizes, ", "), outputs, dim, axis, to_string(x.dims));

  // Each input row (one index of the axes before `axis`) is the outputs' rows side by side.
  const auto elem = static_cast<std::int64_t>(dtype_size(x.dtype));
  const std::int64_t rows = product(Dims(x.dims.begin(), x.dims.begin() + axis));
  const std::int64_t inner = product(Dims(x.dims.begin() + axis + 1, x.dims.end())) * elem;
  std::vector<std::int64_t> piece_bytes, piece_offset;
  OpBuild b;
  std::int64_t row_bytes = 0;
  for (auto s : sizes) {
    Dims d = x.dims;
    d[axis] = s;
    b.outputs.push_back({x.dtype, std::move(d), std::nullopt});
    piece_offset.push_back(row_bytes);
    piece_bytes.push_back(s * inner);
    row_bytes += s * inner;
  }
  b.kernel = make_kernel([=](std::span<const Tensor> in, std::span<Tensor> outs) {
    const auto* src = static_cast<const std::byte*>(in[0].raw());
    const auto n = static_cast<std::int64_t>(outs.size());
    parallel_for(rows * n, grain_for(row_bytes / n), [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t t = begin; t < end; ++t) {
        const std::int64_t row = t / n;
        const auto i = static_cast<std::size_t>(t % n);
        auto* dst = static_cast<std::byte*>(outs[i].raw());
        if (!dst) continue;  // an output nobody reads
        std::memcpy(dst + row * piece_bytes[i], src + row * row_bytes + piece_offset[i],
                    static_cast<std::size_t>(piece_bytes[i]));
      }
    });
  });
  return b;
}

OpBuild build_gather(const OpContext& ctx) {
  const ValueMeta& data = ctx.input(0);
  const ValueMeta& indices = ctx.input(1);
  const std::int64_t rank = ssize(data.dims);
  if (rank == 0) ctx.invalid("data must have rank >= 1 (got a scalar)");
  if (indices.dtype != DType::i64 && indices.dtype != DType::i32)
    ctx.invalid("indices must be int64 or int32, got {}", dtype_name(indices.dtype));
  const std::int64_t axis = ctx.axis(ctx.node().attr_int("axis", 0), rank);
  // Output: data dims before the axis, the indices' dims, data dims after the axis.
  Dims out(data.dims.begin(), data.dims.begin() + axis);
  out.insert(out.end(), indices.dims.begin(), indices.dims.end());
  out.insert(out.end(), data.dims.begin() + axis + 1, data.dims.end());
  const std::int64_t rows = product(Dims(data.dims.begin(), data.dims.begin() + axis));
  const std::int64_t dim = data.dims[axis];
  const std::int64_t block = product(Dims(data.dims.begin() + axis + 1, data.dims.end())) *
                             static_cast<std::int64_t>(dtype_size(data.dtype));
  const std::int64_t count = product(indices.dims);

  OpBuild b;
  b.outputs.push_back({data.dtype, out, std::nullopt});
  b.kernel = make_kernel([rows, dim, block, count, axis, name = ctx.node().name](
                             std::span<const Tensor> in, std::span<Tensor> outs) {
    const auto* src = static_cast<const std::byte*>(in[0].raw());
    auto* dst = static_cast<std::byte*>(outs[0].raw());
    const auto gather = [&](const auto* index) {
      // Indices are data: check them all before copying anything.
      for (std::int64_t j = 0; j < count; ++j)
        if (index[j] < -dim || index[j] >= dim)
          fail_input(
              "running node '{}' (Gather): index {} is out of range for axis {} of length {}", name,
              static_cast<std::int64_t>(index[j]), axis, dim);
      parallel_for(rows * count, grain_for(block), [&](std::int64_t begin, std::int64_t end) {
        for (std::int64_t t = begin; t < end; ++t) {
          const std::int64_t row = t / count, i = index[t % count];
          std::memcpy(dst + t * block, src + (row * dim + (i < 0 ? i + dim : i)) * block,
                      static_cast<std::size_t>(block));
        }
      });
    };
    if (in[1].dtype() == DType::i64)
      gather(in[1].data<std::int64_t>());
    else
      gather(in[1].data<std::int32_t>());
  });
  return b;
}

}  // namespace

void register_shape_ops(OpRegistry& registry) {
  registry.add("Shape", build_shape);
  registry.add("Reshape", build_reshape);
  registry.add("Flatten", build_flatten);
  registry.add("Squeeze", build_squeeze);
  registry.add("Unsqueeze", build_unsqueeze);
  registry.add("Identity", build_identity);
  registry.add("ConstantOfShape", build_constant_of_shape);
  registry.add("Range", build_range);
  registry.add("Transpose", build_transpose);
  registry.add("Slice", build_slice);
  registry.add("Expand", build_expand);
  registry.add("Tile", build_tile);
  registry.add("DepthToSpace", build_depth_to_space);
  registry.add("SpaceToDepth", build_space_to_depth);
  registry.add("Pad", build_pad);
  registry.add("Concat", build_concat);
  registry.add("Split", build_split);
  registry.add("Gather", build_gather);
  register_resize_ops(registry);
}

}  // namespace bitplan
