// Sliding-window geometry shared by Conv, ConvTranspose and the pools: kernel, strides,
// dilations and pads resolved from ONNX attributes (including auto_pad and ceil_mode) into
// explicit numbers once per plan.
#pragma once

#include <vector>

#include "executor/op_registry.hpp"

namespace bitplan {

struct WindowGeometry {
  Dims kernel, strides, dilations, pads_begin, pads_end, output;  // per spatial dim
};

// `input_spatial` are the spatial dims of the input; `kernel` the window (from the
// kernel_shape attribute or the weight shape).
WindowGeometry resolve_window(const OpContext& ctx, const Dims& input_spatial, const Dims& kernel,
                              bool allow_ceil_mode);

}  // namespace bitplan
