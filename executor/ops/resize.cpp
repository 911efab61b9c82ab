// Resize (opsets 10..18) and its predecessor Upsample (7..9): nearest and (multi-)linear
// interpolation with every coordinate transformation mode. Cubic is not implemented.
//
// The plan resolves, per output axis and output index, which source indices are read and
// with what weight ("taps"); the run only walks the output rows. Interpolation is separable,
// so a row's outer taps combine into a short list of (source row offset, weight) corners and
// the inner axis is one loop over the row.
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>

#include "core/parallel.hpp"
#include "executor/op_registry.hpp"

namespace bitplan {

void register_resize_ops(OpRegistry& registry);

namespace {

// Rows hand each task at least this many output bytes.
constexpr std::int64_t kResizeGrainBytes = std::int64_t{32} << 10;

enum class Coordinates {
  half_pixel,
  half_pixel_symmetric,
  pytorch_half_pixel,
  align_corners,
  asymmetric,
  tf_half_pixel_for_nn,
  tf_crop_and_resize,
};

enum class Rounding { round_prefer_floor, round_prefer_ceil, floor, ceil };

// Everything a Resize or Upsample node asks for, per axis of the input.
struct ResizeSpec {
  bool linear = false;
  Coordinates coordinates = Coordinates::half_pixel;
  Rounding rounding = Rounding::round_prefer_floor;
  double extrapolation = 0;  // tf_crop_and_resize: value of samples outside the input
  Dims out;
  std::vector<double> scales;
  std::vector<double> roi_start, roi_end;  // tf_crop_and_resize, normalised coordinates
};

// The source coordinate of output index x along an axis (the spec's formulas). As in the
// ONNX reference, the "resized length" they use is in * scale before flooring: with scales
// that do not divide evenly, align_corners does not hit the last input element.
double source_coordinate(const ResizeSpec& spec, std::size_t axis, std::int64_t in, double x) {
  const double scale = spec.scales[axis];
  const double out = static_cast<double>(in) * scale;
  switch (spec.coordinates) {
    case Coordinates::half_pixel:
      return (x + 0.5) / scale - 0.5;
    case Coordinates::half_pixel_symmetric: {
      const double adjustment = static_cast<double>(spec.out[axis]) / out;
      const double center = static_cast<double>(in) / 2;
      return center * (1 - adjustment) + (x + 0.5) / scale - 0.5;
    }
    case Coordinates::pytorch_half_pixel:
      return out > 1 ? (x + 0.5) / scale - 0.5 : 0;
    case Coordinates::align_corners:
      return out > 1 ? x * static_cast<double>(in - 1) / (out - 1) : 0;
    case Coordinates::asymmetric:
      return x / scale;
    case Coordinates::tf_half_pixel_for_nn:
      return (x + 0.5) / scale;
    case Coordinates::tf_crop_and_resize: {
      const double start = spec.roi_start[axis], end = spec.roi_end[axis];
      const auto span = static_cast<double>(in - 1);
      return out > 1 ? start * span + x * (end - start) * span / (out - 1)
                     : 0.5 * (start + end) * span;
    }
  }
  return x;
}

std::int64_t round_coordinate(Rounding rounding, double x) {
  switch (rounding) {
    case Rounding::round_prefer_floor:
      return static_cast<std::int64_t>(std::ceil(x - 0.5));
    case Rounding::round_prefer_ceil:
      return static_cast<std::int64_t>(std::floor(x + 0.5));
    case Rounding::floor:
      return static_cast<std::int64_t>(std::floor(x));
    case Rounding::ceil:
      return static_cast<std::int64_t>(std::ceil(x));
  }
  return 0;
}

// What output index i of one axis reads: source offsets (index times the axis stride) and
// weights; nearest uses only the first. `outside`: the sample is the extrapolation value.
struct Tap {
  std::int64_t offset0 = 0, offset1 = 0;
  double weight0 = 1, weight1 = 0;
  bool outside = false;
};

std::vector<std::vector<Tap>> plan_taps(const ResizeSpec& spec, const Dims& in) {
  const Dims strides = contiguous_strides(in);
  std::vector<std::vector<Tap>> taps(in.size());
  for (std::size_t k = 0; k < in.size(); ++k) {
    const std::int64_t len = in[k], last = len - 1;
    for (std::int64_t i = 0; i < spec.out[k]; ++i) {
      Tap tap;
      const double x = source_coordinate(spec, k, len, static_cast<double>(i));
      tap.outside = spec.coordinates == Coordinates::tf_crop_and_resize &&
                    (x < 0 || x > static_cast<double>(last));
      if (spec.linear) {
        // Samples beyond the ends take the edge value (the reference pads with the edge).
        const double clamped = std::clamp(x, 0.0, static_cast<double>(last));
        const auto i0 = static_cast<std::int64_t>(std::floor(clamped));
        const std::int64_t i1 = std::min(i0 + 1, last);
        tap.weight1 = clamped - static_cast<double>(i0);
        tap.weight0 = 1 - tap.weight1;
        tap.offset0 = i0 * strides[k];
        tap.offset1 = i1 * strides[k];
      } else {
        tap.offset0 =
            std::clamp(round_coordinate(spec.rounding, x), std::int64_t{0}, last) * strides[k];
      }
      taps[k].push_back(tap);
    }
  }
  return taps;
}

// Output rows are all axes but the last; calls fn(row, outer taps) for rows [begin, end).
template <typename Fn>
void for_rows(const std::vector<std::vector<Tap>>& taps, const Dims& out, std::int64_t begin,
              std::int64_t end, Fn&& fn) {
  std::vector<const Tap*> outer(out.size() - 1);
  for (std::int64_t row = begin; row < end; ++row) {
    std::int64_t rest = row;
    for (std::size_t k = outer.size(); k-- > 0;) {
      outer[k] = &taps[k][static_cast<std::size_t>(rest % out[k])];
      rest /= out[k];
    }
    fn(row, outer);
  }
}

// Nearest: a gather of whole elements, so it runs on every dtype as words of its size.
template <typename U>
void run_nearest(const std::vector<std::vector<Tap>>& taps, const Dims& out, const U* src, U* dst,
                 U fill) {
  const std::int64_t width = out.back(), rows = product(out) / std::max<std::int64_t>(width, 1);
  const auto& inner = taps.back();
  parallel_for(
      rows, std::max<std::int64_t>(1, kResizeGrainBytes / std::max<std::int64_t>(width * sizeof(U), 1)),
      [&](std::int64_t begin, std::int64_t end) {
        for_rows(taps, out, begin, end, [&](std::int64_t row, const auto& outer) {
          U* y = dst + row * width;
          std::int64_t base = 0;
          bool outside = false;
          for (const Tap* t : outer) {
            base += t->offset0;
            outside = outside || t->outside;
          }
          for (std::int64_t j = 0; j < width; ++j)
            y[j] = outside || inner[j].outside ? fill : src[base + inner[j].offset0];
        });
      });
}

// Linear: the outer axes' taps multiply out into corners (at most 2 per resized outer
// axis; an axis read at whole indices adds none), each contributing a row interpolated
// along the inner axis.
template <typename T>
void run_linear(const std::vector<std::vector<Tap>>& taps, const Dims& out, const T* src, T* dst,
                T fill) {
  const std::int64_t width = out.back(), rows = product(out) / std::max<std::int64_t>(width, 1);
  const auto& inner = taps.back();
  std::vector<T> inner_w0, inner_w1;
  for (const Tap& t : inner) {
    inner_w0.push_back(static_cast<T>(t.weight0));
    inner_w1.push_back(static_cast<T>(t.weight1));
  }
  parallel_for(
      rows, std::max<std::int64_t>(1, kResizeGrainBytes / std::max<std::int64_t>(width * sizeof(T), 1)),
      [&](std::int64_t begin, std::int64_t end) {
        std::vector<std::pair<std::int64_t, T>> corners, next;
        for_rows(taps, out, begin, end, [&](std::int64_t row, const auto& outer) {
          T* y = dst + row * width;
          corners.assign(1, {0, T{1}});
          bool outside = false;
          for (const Tap* t : outer) {
            outside = outside || t->outside;
            next.clear();
            for (const auto& [offset, weight] : corners) {
              next.emplace_back(offset + t->offset0, weight * static_cast<T>(t->weight0));
              if (t->weight1 != 0)
                next.emplace_back(offset + t->offset1, weight * static_cast<T>(t->weight1));
            }
            corners.swap(next);
          }
          if (outside) {
            std::fill_n(y, width, fill);
            return;
          }
          for (std::int64_t j = 0; j < width; ++j) {
            const Tap& t = inner[j];
            T acc{0};
            for (const auto& [offset, weight] : corners)
              acc += weight * (inner_w0[j] * src[offset + t.offset0] +
                               inner_w1[j] * src[offset + t.offset1]);
            y[j] = t.outside ? fill : acc;
          }
        });
      });
}

OpBuild build_kernel(const OpContext& ctx, const ResizeSpec& spec) {
  const ValueMeta& x = ctx.input(0);
  if (x.dims.empty()) ctx.invalid("input must have rank >= 1 (got a scalar)");
  if (spec.linear && x.dtype != DType::f32 && x.dtype != DType::f64)
    ctx.unsupported("mode 'linear' needs float32 or float64 input, got {}", dtype_name(x.dtype));
  OpBuild b;
  b.outputs.push_back({x.dtype, spec.out, std::nullopt});
  auto taps = plan_taps(spec, x.dims);
  b.kernel = make_kernel(
      [taps = std::move(taps), out = spec.out, linear = spec.linear,
       extrapolation = spec.extrapolation](std::span<const Tensor> in, std::span<Tensor> outs) {
        if (product(out) == 0) return;
        visit_dtype(in[0].dtype(), [&](auto tag) {
          using T = decltype(tag);
          const T* src = in[0].data<T>();
          T* dst = outs[0].data<T>();
          if constexpr (std::is_floating_point_v<T>) {
            if (linear) return run_linear<T>(taps, out, src, dst, static_cast<T>(extrapolation));
          }
          run_nearest<T>(taps, out, src, dst, static_cast<T>(extrapolation));
        });
      });
  return b;
}

// Float values of input i (scales, roi), known at plan time; an empty tensor counts as absent
// (opsets 11-12 require the scales input even when sizes are given, and pass it empty).
std::vector<double> float_values(const OpContext& ctx, std::size_t i, std::string_view role) {
  if (!ctx.has_input(i)) return {};
  const Tensor& t = ctx.constant_input(i, role);
  if (t.dtype() != DType::f32 && t.dtype() != DType::f64)
    ctx.invalid("input {} ({}) must be float32 or float64, got {}", i, role, dtype_name(t.dtype()));
  return t.to_double_vector();
}

bool parse_linear(const OpContext& ctx) {
  const std::string mode = ctx.node().attr_string("mode", "nearest");
  if (mode == "cubic") ctx.unsupported("mode 'cubic' is not supported; nearest and linear are");
  if (mode != "nearest" && mode != "linear")
    ctx.invalid("mode '{}' is not one of nearest, linear, cubic", mode);
  return mode != "nearest";
}

// An output length computed in double from the model's scales or sizes; refused where it
// does not fit in int64 (converting such a double is undefined behaviour).
std::int64_t output_length(const OpContext& ctx, double length) {
  // 2^62: far beyond any tensor that fits in memory, and exactly representable.
  if (!(length >= 0 && length <= 0x1p62))
    ctx.invalid("an output length of {} is out of range: the scales or sizes are too large",
                length);
  return static_cast<std::int64_t>(length);
}

// Output dims from scales: floor(in * scale) (times the roi's extent for tf_crop_and_resize).
void apply_scales(const OpContext& ctx, ResizeSpec& spec, const Dims& in,
                  const std::vector<std::int64_t>& axes, const std::vector<double>& scales) {
  if (scales.size() != axes.size())
    ctx.invalid("scales has {} values for {} axes", scales.size(), axes.size());
  for (std::size_t i = 0; i < axes.size(); ++i) {
    const auto a = static_cast<std::size_t>(axes[i]);
    if (!(scales[i] > 0)) ctx.invalid("scales [{}] must be positive", fmt::join(scales, ", "));
    const double extent = spec.coordinates == Coordinates::tf_crop_and_resize
                              ? spec.roi_end[a] - spec.roi_start[a]
                              : 1.0;
    spec.scales[a] = scales[i];
    spec.out[a] = output_length(ctx, std::floor(static_cast<double>(in[a]) * extent * scales[i]));
  }
}

OpBuild build_resize(const OpContext& ctx) {
  const Node& node = ctx.node();
  const Dims& in = ctx.input(0).dims;
  const auto rank = static_cast<std::int64_t>(in.size());
  if (node.attr_int("antialias", 0) != 0)
    ctx.unsupported("antialias=1 is not supported; only antialias=0 is");
  ResizeSpec spec;
  spec.linear = parse_linear(ctx);
  spec.out = in;
  spec.scales.assign(in.size(), 1.0);
  spec.roi_start.assign(in.size(), 0.0);
  spec.roi_end.assign(in.size(), 1.0);

  std::vector<std::int64_t> axes(in.size());
  std::iota(axes.begin(), axes.end(), 0);
  if (node.has_attr("axes")) {  // opset 18
    axes = node.attr_ints("axes");
    for (auto& a : axes) a = ctx.axis(a, rank);
  }

  if (ctx.opset() < 11) {
    // Resize-10 is Upsample renamed: asymmetric coordinates, nearest rounds down.
    spec.coordinates = Coordinates::asymmetric;
    spec.rounding = Rounding::floor;
    apply_scales(ctx, spec, in, axes, float_values(ctx, 1, "scales"));
    return build_kernel(ctx, spec);
  }

  static const std::map<std::string, Coordinates> kCoordinates = {
      {"half_pixel", Coordinates::half_pixel},
      {"half_pixel_symmetric", Coordinates::half_pixel_symmetric},
      {"pytorch_half_pixel", Coordinates::pytorch_half_pixel},
      {"align_corners", Coordinates::align_corners},
      {"asymmetric", Coordinates::asymmetric},
      {"tf_half_pixel_for_nn", Coordinates::tf_half_pixel_for_nn},
      {"tf_crop_and_resize", Coordinates::tf_crop_and_resize}};
  static const std::map<std::string, Rounding> kRounding = {
      {"round_prefer_floor", Rounding::round_prefer_floor},
      {"round_prefer_ceil", Rounding::round_prefer_ceil},
      {"floor", Rounding::floor},
      {"ceil", Rounding::ceil}};
  const std::string coordinates = node.attr_string("coordinate_transformation_mode", "half_pixel");
  const std::string rounding = node.attr_string("nearest_mode", "round_prefer_floor");
  if (!kCoordinates.count(coordinates))
    ctx.invalid(
        "coordinate_transformation_mode '{}' is not one of half_pixel, half_pixel_symmetric, "
        "pytorch_half_pixel, align_corners, asymmetric, tf_half_pixel_for_nn, "
        "tf_crop_and_resize",
        coordinates);
  if (!kRounding.count(rounding))
    ctx.invalid(
        "nearest_mode '{}' is not one of round_prefer_floor, round_prefer_ceil, floor, ceil",
        rounding);
  spec.coordinates = kCoordinates.at(coordinates);
  spec.rounding = kRounding.at(rounding);
  spec.extrapolation = node.attr_float("extrapolation_value", 0.0f);

  if (spec.coordinates == Coordinates::tf_crop_and_resize) {
    const auto roi = float_values(ctx, 1, "roi");
    if (roi.size() != 2 * axes.size())
      ctx.invalid("roi has {} values; tf_crop_and_resize needs 2 per resized axis ({})", roi.size(),
                  2 * axes.size());
    for (std::size_t i = 0; i < axes.size(); ++i) {
      spec.roi_start[axes[i]] = roi[i];
      spec.roi_end[axes[i]] = roi[i + axes.size()];
    }
  }

  const auto scales = float_values(ctx, 2, "scales");
  std::vector<std::int64_t> sizes;
  if (ctx.has_input(3)) {
    const Tensor& t = ctx.constant_input(3, "sizes");
    if (t.dtype() != DType::i64) ctx.invalid("sizes must be int64, got {}", dtype_name(t.dtype()));
    sizes = t.to_int64_vector();
  }
  if (scales.empty() == sizes.empty())
    ctx.invalid("exactly one of scales and sizes must be given (got {} scales, {} sizes)",
                scales.size(), sizes.size());
  if (!scales.empty()) {
    apply_scales(ctx, spec, in, axes, scales);
    return build_kernel(ctx, spec);
  }

  if (sizes.size() != axes.size())
    ctx.invalid("sizes has {} values for {} axes", sizes.size(), axes.size());
  // Opset 18: not_larger / not_smaller keep the aspect ratio with one scale for all axes
  // (the smallest / largest of the per-axis ones), rounding the sizes it implies.
  const std::string policy = node.attr_string("keep_aspect_ratio_policy", "stretch");
  if (policy != "stretch" && policy != "not_larger" && policy != "not_smaller")
    ctx.invalid("keep_aspect_ratio_policy '{}' is not one of stretch, not_larger, not_smaller",
                policy);
  std::vector<double> ratios;
  for (std::size_t i = 0; i < axes.size(); ++i) {
    if (sizes[i] <= 0 || in[axes[i]] == 0)
      ctx.invalid("sizes [{}] must be positive for input {}", fmt::join(sizes, ", "),
                  to_string(in));
    ratios.push_back(static_cast<double>(sizes[i]) / static_cast<double>(in[axes[i]]));
  }
  for (std::size_t i = 0; i < axes.size(); ++i) {
    const auto a = static_cast<std::size_t>(axes[i]);
    if (policy == "stretch") {
      spec.scales[a] = ratios[i];
      spec.out[a] = sizes[i];
      continue;
    }
    spec.scales[a] = policy == "not_larger" ? *std::min_element(ratios.begin(), ratios.end())
                                            : *std::max_element(ratios.begin(), ratios.end());
    spec.out[a] = output_length(ctx, std::nearbyint(spec.scales[a] * static_cast<double>(in[a])));
  }
  return build_kernel(ctx, spec);
}

// Upsample (opsets 7..9, deprecated by Resize-10): scales as an attribute (7) or input 1
// (9); asymmetric coordinates, nearest rounds down.
OpBuild build_upsample(const OpContext& ctx) {
  const Dims& in = ctx.input(0).dims;
  ResizeSpec spec;
  spec.linear = parse_linear(ctx);
  spec.coordinates = Coordinates::asymmetric;
  spec.rounding = Rounding::floor;
  spec.out = in;
  spec.scales.assign(in.size(), 1.0);
  std::vector<std::int64_t> axes(in.size());
  std::iota(axes.begin(), axes.end(), 0);
  std::vector<double> scales;
  if (ctx.node().has_attr("scales")) {
    for (float s : ctx.node().attr_floats("scales")) scales.push_back(s);
  } else {
    scales = float_values(ctx, 1, "scales");
  }
  apply_scales(ctx, spec, in, axes, scales);
  return build_kernel(ctx, spec);
}

}  // namespace

void register_resize_ops(OpRegistry& registry) {
  registry.add("Resize", build_resize);
  registry.add("Upsample", build_upsample);
}

}  // namespace bitplan
