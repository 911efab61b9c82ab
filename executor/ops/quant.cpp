// bitplan::FakeQuant: quantize -> dequantize of an activation, per tensor, with a fixed
// (calibrated) scale and zero point, or with a range taken from each batch (dynamic).
#include <algorithm>
#include <cmath>

#include "core/parallel.hpp"
#include "executor/op_registry.hpp"
#include "executor/quant/quantizer.hpp"

namespace bitplan {
namespace {

class FakeQuantKernel final : public Kernel {
 public:
  FakeQuantKernel(FormatId format, bool symmetric, bool dynamic, AffineParams params)
      : format_(format), symmetric_(symmetric), dynamic_(dynamic), params_(params) {}

  void run(std::span<const Tensor> in, std::span<Tensor> out) override {
    const float* x = in[0].data<float>();
    float* y = out[0].data<float>();
    const std::int64_t n = in[0].numel();
    AffineParams p = params_;
    if (dynamic_) {
      // The batch's own finite range; non-finite values are left to the quantizer.
      float lo = INFINITY, hi = -INFINITY;
      for (std::int64_t i = 0; i < n; ++i)
        if (std::isfinite(x[i])) {
          lo = std::min(lo, x[i]);
          hi = std::max(hi, x[i]);
        }
      if (lo > hi) lo = hi = 0.f;
      p = affine_params_from_range(format_, symmetric_, lo, hi);
    }
    fake_quantize_activation_per_tensor(format_, p.scale, p.zero_point, x, y, n);
  }

 private:
  FormatId format_;
  bool symmetric_, dynamic_;
  AffineParams params_;
};

OpBuild build_fake_quant(const OpContext& ctx) {
  const ValueMeta& x = ctx.input(0);
  if (x.dtype != DType::f32) ctx.invalid("input must be float32, got {}", dtype_name(x.dtype));
  const std::int64_t id = ctx.node().attr_int("format", -1);
  const auto format = static_cast<FormatId>(id);
  bool known = false;
  for (const auto& t : all_formats()) known = known || t.id == format;
  if (!known) ctx.invalid("format id {} is not a bitplan format", id);
  const bool dynamic = ctx.node().attr_int("dynamic", 0) != 0;
  AffineParams params{ctx.node().attr_float("scale", 1.f),
                      ctx.node().attr_float("zero_point", 0.f)};
  if (!dynamic && !(std::isfinite(params.scale) && params.scale > 0))
    ctx.invalid("scale {} must be finite and positive", params.scale);
  OpBuild b;
  b.outputs.push_back({DType::f32, x.dims, {}});
  b.kernel = std::make_unique<FakeQuantKernel>(format, ctx.node().attr_int("symmetric", 1) != 0,
                                               dynamic, params);
  return b;
}

}  // namespace

void register_quant_ops(OpRegistry& r) {
  r.add("bitplan::FakeQuant", build_fake_quant);
}

}  // namespace bitplan
