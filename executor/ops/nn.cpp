// CNN ops that are not matrix products: pooling and inference-mode BatchNormalization.
// Pools work on any number of spatial dims; each output position walks its window.
#include <cmath>
#include <limits>

#include "core/parallel.hpp"
#include "executor/op_registry.hpp"
#include "executor/ops/window.hpp"

namespace bitplan {
namespace {

enum class Pool { max, average, lp };

// Input [N, C, spatial...]; one parallel task per (n, c) plane.
class PoolKernel final : public Kernel {
 public:
  PoolKernel(Dims in_dims, WindowGeometry g, Pool pool, bool count_include_pad, int storage_order,
             float p)
      : in_dims_(std::move(in_dims)),
        g_(std::move(g)),
        pool_(pool),
        count_include_pad_(count_include_pad),
        storage_order_(storage_order),
        p_(p) {
    spatial_.assign(in_dims_.begin() + 2, in_dims_.end());
    in_plane_ = product(spatial_);
    out_plane_ = product(g_.output);
  }

  void run(std::span<const Tensor> in, std::span<Tensor> out) override {
    const float* x = in[0].data<float>();
    float* y = out[0].data<float>();
    std::int64_t* indices =
        out.size() > 1 && !out[1].empty() ? out[1].data<std::int64_t>() : nullptr;
    const std::int64_t planes = in_dims_[0] * in_dims_[1];
    const std::size_t nd = spatial_.size();
    parallel_for(planes, 1, [&](std::int64_t pb, std::int64_t pe) {
      Dims opos(nd), kpos(nd);
      for (std::int64_t plane = pb; plane < pe; ++plane) {
        const float* px = x + plane * in_plane_;
        float* py = y + plane * out_plane_;
        std::fill(opos.begin(), opos.end(), 0);
        for (std::int64_t o = 0; o < out_plane_; ++o) {
          float acc = pool_ == Pool::max ? -std::numeric_limits<float>::infinity() : 0.f;
          std::int64_t best = -1, count = 0, window = 1;
          std::fill(kpos.begin(), kpos.end(), 0);
          // Window elements that fall in the padded area (for count_include_pad), clipped to
          // the input plus its end padding.
          for (std::size_t d = 0; d < nd; ++d) {
            const std::int64_t start = opos[d] * g_.strides[d] - g_.pads_begin[d];
            const std::int64_t end = std::min(start + (g_.kernel[d] - 1) * g_.dilations[d] + 1,
                                              spatial_[d] + g_.pads_end[d]);
            window *= (end - start + g_.dilations[d] - 1) / g_.dilations[d];
          }
          for (bool more = true; more;) {
            std::int64_t offset = 0;
            bool inside = true;
            for (std::size_t d = 0; d < nd; ++d) {
              const std::int64_t i =
                  opos[d] * g_.strides[d] - g_.pads_begin[d] + kpos[d] * g_.dilations[d];
              inside = inside && i >= 0 && i < spatial_[d];
              offset = offset * spatial_[d] + i;
            }
            if (inside) {
              const float v = px[offset];
              if (pool_ == Pool::max) {
                if (v > acc || best < 0) {
                  acc = v;
                  best = offset;
                }
              } else if (pool_ == Pool::lp) {
                acc += std::pow(std::abs(v), p_);
              } else {
                acc += v;
              }
              ++count;
            }
            more = false;
            for (std::size_t d = nd; d-- > 0;) {
              if (++kpos[d] < g_.kernel[d]) {
                more = true;
                break;
              }
              kpos[d] = 0;
            }
          }
          if (pool_ == Pool::average)
            acc /=
                static_cast<float>(count_include_pad_ ? window : std::max<std::int64_t>(count, 1));
          else if (pool_ == Pool::lp)
            acc = std::pow(acc, 1.f / p_);
          py[o] = acc;
          if (indices) indices[plane * out_plane_ + o] = plane * in_plane_ + column_major(best);
          for (std::size_t d = nd; d-- > 0;) {
            if (++opos[d] < g_.output[d]) break;
            opos[d] = 0;
          }
        }
      }
    });
  }

 private:
  // MaxPool's storage_order=1 reports indices in column-major order within the plane.
  std::int64_t column_major(std::int64_t offset) const {
    if (storage_order_ == 0 || offset < 0) return offset;
    std::int64_t result = 0, stride = 1;
    Dims idx(spatial_.size());
    for (std::size_t d = spatial_.size(); d-- > 0;) {
      idx[d] = offset % spatial_[d];
      offset /= spatial_[d];
    }
    for (std::size_t d = 0; d < spatial_.size(); ++d) {
      result += idx[d] * stride;
      stride *= spatial_[d];
    }
    return result;
  }

  Dims in_dims_;
  WindowGeometry g_;
  Pool pool_;
  bool count_include_pad_;
  int storage_order_;
  float p_;
  Dims spatial_;
  std::int64_t in_plane_ = 1, out_plane_ = 1;
};

// GlobalAveragePool: one contiguous mean per (n, c) plane.
class GlobalAverageKernel final : public Kernel {
 public:
  GlobalAverageKernel(std::int64_t planes, std::int64_t plane) : planes_(planes), plane_(plane) {}
  void run(std::span<const Tensor> in, std::span<Tensor> out) override {
    const float* x = in[0].data<float>();
    float* y = out[0].data<float>();
    const float inv = 1.f / static_cast<float>(plane_);
    parallel_for(planes_, std::max<std::int64_t>(1, 16384 / plane_),
                 [&](std::int64_t b, std::int64_t e) {
                   for (std::int64_t p = b; p < e; ++p) {
                     const float* px = x + p * plane_;
                     float sum = 0;
                     for (std::int64_t i = 0; i < plane_; ++i) sum += px[i];
                     y[p] = sum * inv;
                   }
                 });
  }

 private:
  std::int64_t planes_, plane_;
};

OpBuilder pool_builder(Pool pool, bool global) {
  return [pool, global](const OpContext& ctx) {
    const ValueMeta& x = ctx.input(0);
    if (x.dtype != DType::f32)
      ctx.unsupported("input type {} is not supported; float32 is", dtype_name(x.dtype));
    if (x.dims.size() < 3) ctx.invalid("input {} must be [N, C, spatial...]", to_string(x.dims));
    const Dims spatial(x.dims.begin() + 2, x.dims.end());
    WindowGeometry g;
    if (global) {
      g.kernel = spatial;
      g.strides = g.dilations = Dims(spatial.size(), 1);
      g.pads_begin = g.pads_end = Dims(spatial.size(), 0);
      g.output = Dims(spatial.size(), 1);
    } else {
      const Dims kernel = ctx.node().attr_ints("kernel_shape");
      if (kernel.empty()) ctx.invalid("kernel_shape is required");
      g = resolve_window(ctx, spatial, kernel, true);
    }
    Dims out_dims{x.dims[0], x.dims[1]};
    out_dims.insert(out_dims.end(), g.output.begin(), g.output.end());
    OpBuild b;
    b.outputs.push_back({DType::f32, out_dims, {}});
    if (pool == Pool::max && ctx.node().outputs.size() > 1)
      b.outputs.push_back({DType::i64, out_dims, {}});
    if (global && pool == Pool::average) {
      b.kernel = std::make_unique<GlobalAverageKernel>(x.dims[0] * x.dims[1], product(spatial));
      return b;
    }
    b.kernel = std::make_unique<PoolKernel>(
        x.dims, g, pool, ctx.node().attr_int("count_include_pad", 0) != 0,
        static_cast<int>(ctx.node().attr_int("storage_order", 0)),
        static_cast<float>(ctx.node().attr_int("p", 2)));
    return b;
  };
}

// Inference BatchNormalization: y = (x - mean) * scale / sqrt(var + eps) + bias per channel
// (dim 1), precomputed at plan time into y = x * k + c when the statistics are constant.
class BatchNormKernel final : public Kernel {
 public:
  BatchNormKernel(Dims dims, float eps) : dims_(std::move(dims)), eps_(eps) {}
  void run(std::span<const Tensor> in, std::span<Tensor> out) override {
    const std::int64_t n = dims_[0], c = dims_.size() > 1 ? dims_[1] : 1;
    const std::int64_t plane = dims_.size() > 2 ? product(Dims(dims_.begin() + 2, dims_.end())) : 1;
    const float* x = in[0].data<float>();
    const float *scale = in[1].data<float>(), *bias = in[2].data<float>(),
                *mean = in[3].data<float>(), *var = in[4].data<float>();
    float* y = out[0].data<float>();
    parallel_for(n * c, 1, [&](std::int64_t b, std::int64_t e) {
      for (std::int64_t p = b; p < e; ++p) {
        const std::int64_t ch = p % c;
        const float k = scale[ch] / std::sqrt(var[ch] + eps_);
        const float shift = bias[ch] - mean[ch] * k;
        const float* px = x + p * plane;
        float* py = y + p * plane;
        for (std::int64_t i = 0; i < plane; ++i) py[i] = px[i] * k + shift;
      }
    });
  }

 private:
  Dims dims_;
  float eps_;
};

OpBuild build_batchnorm(const OpContext& ctx) {
  const ValueMeta& x = ctx.input(0);
  if (x.dtype != DType::f32)
    ctx.unsupported("input type {} is not supported; float32 is", dtype_name(x.dtype));
  if (ctx.node().attr_int("training_mode", 0) != 0 || ctx.node().outputs.size() > 1)
    ctx.unsupported(
        "training mode (running statistics outputs) is not supported; bitplan runs inference");
  const std::int64_t channels = x.dims.size() > 1 ? x.dims[1] : 1;
  for (std::size_t i = 1; i < 5; ++i)
    if (product(ctx.input(i).dims) != channels)
      ctx.invalid("input {} has {} values, expected one per channel ({})", i,
                  product(ctx.input(i).dims), channels);
  OpBuild b;
  b.outputs.push_back({DType::f32, x.dims, {}});
  b.kernel = std::make_unique<BatchNormKernel>(x.dims, ctx.node().attr_float("epsilon", 1e-5f));
  return b;
}

// Dropout at inference is the identity (output 0 is a view of the input); the optional
// mask output is all true. Training mode would need random masks and is refused.
OpBuild build_dropout(const OpContext& ctx) {
  const ValueMeta& x = ctx.input(0);
  if (ctx.has_input(2)) {
    const Tensor& training = ctx.constant_input(2, "training_mode");
    if (training.numel() > 0 && training.to_int64_vector()[0] != 0)
      ctx.unsupported("training_mode=true is not supported; bitplan runs inference");
  }
  OpBuild b;
  b.outputs.push_back({x.dtype, x.dims, {}});
  b.output_is_view_of_input = true;
  if (ctx.node().outputs.size() > 1) {
    Tensor mask(DType::boolean, x.dims);
    std::fill_n(mask.data<bool>(), mask.numel(), true);
    b.outputs.push_back({DType::boolean, x.dims, std::move(mask)});
  }
  return b;
}

}  // namespace

void register_nn_ops(OpRegistry& r) {
  r.add("Dropout", build_dropout);
  r.add("MaxPool", pool_builder(Pool::max, false));
  r.add("AveragePool", pool_builder(Pool::average, false));
  r.add("LpPool", pool_builder(Pool::lp, false));
  r.add("GlobalMaxPool", pool_builder(Pool::max, true));
  r.add("GlobalAveragePool", pool_builder(Pool::average, true));
  r.add("BatchNormalization", build_batchnorm);
}

}  // namespace bitplan
