// bitplan::FakeQuant: quantize -> dequantize of an activation with a fixed (calibrated)
// scale and zero point per tensor, or with ranges taken from each batch (dynamic): one per
// tensor, or one per token (`per_token`: a range per position of every axis but `axis`, the
// axis the consuming layer sums over).
#include <algorithm>
#include <cmath>

#include "core/parallel.hpp"
#include "executor/op_registry.hpp"
#include "executor/quant/quantizer.hpp"

namespace bitplan {
namespace {

// The input as [outer, dim, inner] around the reduction axis: token (o, i) holds the `dim`
// values x[o, :, i].
struct TokenShape {
  std::int64_t outer = 1, dim = 1, inner = 1;
};

class FakeQuantKernel final : public Kernel {
 public:
  FakeQuantKernel(FormatId format, bool symmetric, bool dynamic, bool per_token, TokenShape tokens,
                  AffineParams params)
      : format_(format),
        symmetric_(symmetric),
        dynamic_(dynamic),
        per_token_(per_token),
        tokens_(tokens),
        params_(params) {}

  void run(std::span<const Tensor> in, std::span<Tensor> out) override {
    const float* x = in[0].data<float>();
    float* y = out[0].data<float>();
    const std::int64_t n = in[0].numel();
    if (per_token_) {
      BITPLAN_ASSERT(tokens_.outer * tokens_.dim * tokens_.inner == n);
      fake_quantize_activation_per_token(format_, symmetric_, x, y, tokens_.outer, tokens_.dim,
                                         tokens_.inner);
      return;
    }
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
  bool symmetric_, dynamic_, per_token_;
  TokenShape tokens_;
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
  const bool per_token = ctx.node().attr_int("per_token", 0) != 0;
  const bool symmetric = ctx.node().attr_int("symmetric", 1) != 0;
  AffineParams params{ctx.node().attr_float("scale", 1.f),
                      ctx.node().attr_float("zero_point", 0.f)};
  if (!dynamic && !(std::isfinite(params.scale) && params.scale > 0))
    ctx.invalid("scale {} must be finite and positive", params.scale);
  TokenShape tokens;
  if (per_token) {
    // Static per-token scales would be one per row of a calibration batch, meaningless for
    // other inputs; the ranges must come from each batch.
    if (!dynamic)
      ctx.invalid("per_token = 1 needs dynamic = 1 (per-token ranges are taken at run time)");
    const FormatTraits& f = format_traits(format);
    if (!f.has_scale() || f.weights_only || f.block_size > 0)
      ctx.unsupported("per-token ranges need an integer or fp8 format, not {}", f.name);
    if (!symmetric && f.kind != FormatKind::integer)
      ctx.invalid("{} is symmetric by construction; symmetric = 0 applies to integer formats",
                  f.name);
    const auto rank = static_cast<std::int64_t>(x.dims.size());
    if (rank == 0) ctx.invalid("a per-token input needs at least one axis, got a scalar");
    const auto axis = static_cast<std::size_t>(ctx.axis(ctx.node().attr_int("axis", -1), rank));
    tokens = {product(Dims(x.dims.begin(), x.dims.begin() + static_cast<std::ptrdiff_t>(axis))),
              x.dims[axis],
              product(Dims(x.dims.begin() + static_cast<std::ptrdiff_t>(axis) + 1, x.dims.end()))};
  }
  OpBuild b;
  b.outputs.push_back({DType::f32, x.dims, {}});
  b.kernel =
      std::make_unique<FakeQuantKernel>(format, symmetric, dynamic, per_token, tokens, params);
  return b;
}

}  // namespace

void register_quant_ops(OpRegistry& r) {
  r.add("bitplan::FakeQuant", build_fake_quant);
}

}  // namespace bitplan
