#include "executor/ops/window.hpp"

#include "core/checked.hpp"

namespace bitplan {

WindowGeometry resolve_window(const OpContext& ctx, const Dims& in, const Dims& kernel,
                              bool allow_ceil_mode) {
  const Node& node = ctx.node();
  const std::size_t n = in.size();
  WindowGeometry g;
  g.kernel = kernel;
  g.strides = node.attr_ints("strides", Dims(n, 1));
  g.dilations = node.attr_ints("dilations", Dims(n, 1));
  Dims pads = node.attr_ints("pads", Dims(2 * n, 0));
  if (g.kernel.size() != n || g.strides.size() != n || g.dilations.size() != n ||
      pads.size() != 2 * n)
    ctx.invalid(
        "kernel_shape {}, strides {}, dilations {} and pads {} must have {} (pads {}) "
        "entries for a {}-d input",
        to_string(g.kernel), to_string(g.strides), to_string(g.dilations), to_string(pads), n,
        2 * n, n);
  for (std::size_t i = 0; i < n; ++i)
    if (g.kernel[i] < 1 || g.strides[i] < 1 || g.dilations[i] < 1 || pads[i] < 0 || pads[i + n] < 0)
      ctx.invalid("kernel {}, strides {}, dilations {} must be >= 1 and pads {} >= 0",
                  to_string(g.kernel), to_string(g.strides), to_string(g.dilations),
                  to_string(pads));
  const std::string auto_pad = node.attr_string("auto_pad", "NOTSET");
  const bool ceil_mode = allow_ceil_mode && node.attr_int("ceil_mode", 0) != 0;
  g.pads_begin.assign(pads.begin(), pads.begin() + static_cast<std::ptrdiff_t>(n));
  g.pads_end.assign(pads.begin() + static_cast<std::ptrdiff_t>(n), pads.end());
  g.output.resize(n);
  // The attributes come from the model: every step is checked for overflow.
  const CheckedSizes sizes([&] {
    ctx.invalid(
        "kernel {}, strides {}, dilations {} and pads {} on input {}: the window "
        "arithmetic overflows 64 bits",
        to_string(g.kernel), to_string(g.strides), to_string(g.dilations), to_string(pads),
        to_string(in));
  });
  for (std::size_t i = 0; i < n; ++i) {
    const std::int64_t span =
        sizes.add(sizes.mul(g.kernel[i] - 1, g.dilations[i]), 1);  // window extent
    if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
      g.output[i] = sizes.add(in[i], g.strides[i] - 1) / g.strides[i];
      const std::int64_t total = std::max<std::int64_t>(
          0, sizes.add(sizes.mul(g.output[i] - 1, g.strides[i]), span) - in[i]);
      // SAME_UPPER puts the extra pad at the end, SAME_LOWER at the beginning.
      g.pads_begin[i] = auto_pad == "SAME_UPPER" ? total / 2 : total - total / 2;
      g.pads_end[i] = total - g.pads_begin[i];
    } else if (auto_pad == "VALID") {
      g.pads_begin[i] = g.pads_end[i] = 0;
      g.output[i] = (in[i] - span) / g.strides[i] + 1;
    } else if (auto_pad == "NOTSET") {
      const std::int64_t padded =
          sizes.add(sizes.add(in[i], g.pads_begin[i]), g.pads_end[i]) - span;
      if (ceil_mode) {
        g.output[i] = sizes.add(padded, g.strides[i] - 1) / g.strides[i] + 1;
        // The last window must start inside the input or its begin padding.
        if (sizes.mul(g.output[i] - 1, g.strides[i]) >= sizes.add(in[i], g.pads_begin[i]))
          --g.output[i];
      } else {
        g.output[i] = padded < 0 ? 0 : padded / g.strides[i] + 1;
      }
    } else {
      ctx.invalid("auto_pad '{}' must be NOTSET, SAME_UPPER, SAME_LOWER or VALID", auto_pad);
    }
    if (g.output[i] < 1)
      ctx.invalid("window {} (dilated extent {}) does not fit input size {} with pads {}+{}",
                  g.kernel[i], span, in[i], g.pads_begin[i], g.pads_end[i]);
  }
  return g;
}

}  // namespace bitplan
