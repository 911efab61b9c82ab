// Reductions (ReduceMean/Sum/Max/Min/Prod/L2...) and the normalising ops built on a
// reduction over a contiguous block of axes: Softmax, LogSoftmax, LayerNormalization.
#include <cmath>
#include <limits>
#include <set>

#include "core/parallel.hpp"
#include "executor/op_registry.hpp"
#include "executor/ops/onednn_common.hpp"

namespace bitplan {
namespace {

enum class Reduce { sum, mean, max, min, prod, l1, l2, sum_square, log_sum_exp };

// Views the input as [outer, reduced, inner] when the reduced axes are one contiguous block
// (the common case: LayerNorm-like trailing axes, GlobalAveragePool-like spatial axes), and
// reduces with a general strided walk otherwise.
template <typename T>
class ReduceKernel final : public Kernel {
 public:
  ReduceKernel(Dims in_dims, std::vector<bool> reduced, Reduce op)
      : in_dims_(std::move(in_dims)), reduced_(std::move(reduced)), op_(op) {
    int first = -1, last = -1;
    for (std::size_t a = 0; a < reduced_.size(); ++a)
      if (reduced_[a]) {
        if (first < 0) first = static_cast<int>(a);
        last = static_cast<int>(a);
      }
    contiguous_ = true;
    for (int a = first; a <= last && first >= 0; ++a)
      contiguous_ = contiguous_ && (reduced_[a] || in_dims_[a] == 1);
    outer_ = reduced_count_ = inner_ = 1;
    for (std::size_t a = 0; a < in_dims_.size(); ++a) {
      if (first < 0 || static_cast<int>(a) < first)
        outer_ *= in_dims_[a];
      else if (static_cast<int>(a) <= last)
        reduced_count_ *= in_dims_[a];
      else
        inner_ *= in_dims_[a];
    }
  }

  void run(std::span<const Tensor> in, std::span<Tensor> out) override {
    const T* x = in[0].data<T>();
    T* y = out[0].data<T>();
    if (contiguous_) {
      parallel_for(outer_ * inner_,
                   std::max<std::int64_t>(1, 4096 / std::max<std::int64_t>(reduced_count_, 1)),
                   [&](std::int64_t b, std::int64_t e) {
                     for (std::int64_t idx = b; idx < e; ++idx) {
                       const std::int64_t o = idx / inner_, i = idx % inner_;
                       const T* base = x + o * reduced_count_ * inner_ + i;
                       y[idx] = reduce_strided(base, reduced_count_, inner_);
                     }
                   });
      return;
    }
    // General case: scatter-accumulate in input order into double accumulators.
    const std::int64_t n_out = out[0].numel();
    std::vector<double> acc(static_cast<std::size_t>(n_out), init());
    Dims out_strides(in_dims_.size(), 0);
    std::int64_t s = 1;
    for (std::size_t a = in_dims_.size(); a-- > 0;)
      if (!reduced_[a]) {
        out_strides[a] = s;
        s *= in_dims_[a];
      }
    Dims index(in_dims_.size(), 0);
    const std::int64_t n_in = in[0].numel();
    std::int64_t o = 0;
    for (std::int64_t k = 0; k < n_in; ++k) {
      accumulate(acc[static_cast<std::size_t>(o)], static_cast<double>(x[k]));
      for (std::size_t a = in_dims_.size(); a-- > 0;) {
        o += out_strides[a];
        if (++index[a] < in_dims_[a]) break;
        o -= out_strides[a] * in_dims_[a];
        index[a] = 0;
      }
    }
    for (std::int64_t k = 0; k < n_out; ++k)
      y[k] = finish(acc[static_cast<std::size_t>(k)], n_in / std::max<std::int64_t>(n_out, 1));
  }

 private:
  double init() const {
    switch (op_) {
      case Reduce::max:
        return -std::numeric_limits<double>::infinity();
      case Reduce::min:
        return std::numeric_limits<double>::infinity();
      case Reduce::prod:
        return 1.0;
      default:
        return 0.0;
    }
  }
  void accumulate(double& acc, double v) const {
    switch (op_) {
      case Reduce::max:
        acc = std::max(acc, v);
        break;
      case Reduce::min:
        acc = std::min(acc, v);
        break;
      case Reduce::prod:
        acc *= v;
        break;
      case Reduce::l1:
        acc += std::abs(v);
        break;
      case Reduce::l2:
      case Reduce::sum_square:
        acc += v * v;
        break;
      case Reduce::log_sum_exp:
        acc += std::exp(v);
        break;
      default:
        acc += v;
    }
  }
  T finish(double acc, std::int64_t count) const {
    switch (op_) {
      case Reduce::mean:
        return static_cast<T>(acc / static_cast<double>(std::max<std::int64_t>(count, 1)));
      case Reduce::l2:
        return static_cast<T>(std::sqrt(acc));
      case Reduce::log_sum_exp:
        return static_cast<T>(std::log(acc));
      default:
        return static_cast<T>(acc);
    }
  }
  T reduce_strided(const T* base, std::int64_t n, std::int64_t stride) const {
    if (op_ == Reduce::sum || op_ == Reduce::mean) {
      // float accumulation in the native type keeps the common path vectorised; use
      // double for float64 inputs naturally.
      using Acc = std::conditional_t<std::is_floating_point_v<T>, T, double>;
      Acc sum = 0;
      for (std::int64_t r = 0; r < n; ++r) sum += static_cast<Acc>(base[r * stride]);
      return op_ == Reduce::mean
                 ? static_cast<T>(sum / static_cast<Acc>(std::max<std::int64_t>(n, 1)))
                 : static_cast<T>(sum);
    }
    double acc = init();
    for (std::int64_t r = 0; r < n; ++r) accumulate(acc, static_cast<double>(base[r * stride]));
    return finish(acc, n);
  }

  Dims in_dims_;
  std::vector<bool> reduced_;
  Reduce op_;
  bool contiguous_ = true;
  std::int64_t outer_ = 1, reduced_count_ = 1, inner_ = 1;
};

// Opset at which each reduce op moved `axes` from an attribute to an input.
OpBuilder reduce_builder(Reduce op, std::int64_t axes_input_since) {
  return [op, axes_input_since](const OpContext& ctx) {
    const ValueMeta& x = ctx.input(0);
    const auto rank = static_cast<std::int64_t>(x.dims.size());
    std::vector<std::int64_t> axes;
    bool have_axes = false;
    if (ctx.opset() >= axes_input_since) {
      if (ctx.has_input(1)) {
        axes = ctx.constant_input(1, "axes").to_int64_vector();
        have_axes = true;
      }
    } else if (ctx.node().has_attr("axes")) {
      axes = ctx.node().attr_ints("axes");
      have_axes = true;
    }
    const bool keepdims = ctx.node().attr_int("keepdims", 1) != 0;
    const bool noop = ctx.node().attr_int("noop_with_empty_axes", 0) != 0;
    std::vector<bool> reduced(static_cast<std::size_t>(rank), false);
    if (axes.empty() && !(have_axes && noop) && !noop)
      std::fill(reduced.begin(), reduced.end(), true);
    for (auto a : axes) reduced[static_cast<std::size_t>(ctx.axis(a, rank))] = true;
    Dims out_dims;
    for (std::int64_t a = 0; a < rank; ++a) {
      if (!reduced[static_cast<std::size_t>(a)])
        out_dims.push_back(x.dims[a]);
      else if (keepdims)
        out_dims.push_back(1);
    }
    OpBuild b;
    b.outputs.push_back({x.dtype, out_dims, {}});
    visit_dtype(x.dtype, [&](auto tag) {
      using T = decltype(tag);
      if constexpr (std::is_same_v<T, bool>)
        ctx.unsupported("bool inputs are not supported");
      else
        b.kernel = std::make_unique<ReduceKernel<T>>(x.dims, reduced, op);
    });
    return b;
  };
}

// ------------------------------------------------------------ Softmax family

enum class SoftmaxKind { softmax, log_softmax, hardmax };

class SoftmaxKernel final : public Kernel {
 public:
  SoftmaxKernel(std::int64_t outer, std::int64_t n, std::int64_t inner, SoftmaxKind kind)
      : outer_(outer), n_(n), inner_(inner), kind_(kind) {}
  void run(std::span<const Tensor> in, std::span<Tensor> out) override {
    const float* x = in[0].data<float>();
    float* y = out[0].data<float>();
    parallel_for(outer_ * inner_, std::max<std::int64_t>(1, 2048 / std::max<std::int64_t>(n_, 1)),
                 [&](std::int64_t b, std::int64_t e) {
                   for (std::int64_t idx = b; idx < e; ++idx) {
                     const std::int64_t o = idx / inner_, i = idx % inner_;
                     const float* px = x + o * n_ * inner_ + i;
                     float* py = y + o * n_ * inner_ + i;
                     row(px, py);
                   }
                 });
  }

 private:
  void row(const float* x, float* y) const {
    const std::int64_t s = inner_;
    float mx = -INFINITY;
    std::int64_t arg = 0;
    for (std::int64_t j = 0; j < n_; ++j)
      if (x[j * s] > mx) {
        mx = x[j * s];
        arg = j;
      }
    if (kind_ == SoftmaxKind::hardmax) {
      for (std::int64_t j = 0; j < n_; ++j) y[j * s] = j == arg ? 1.f : 0.f;
      return;
    }
    // Subtracting the max keeps exp() from overflowing; the result is unchanged.
    float sum = 0;
    for (std::int64_t j = 0; j < n_; ++j) {
      const float e = std::exp(x[j * s] - mx);
      if (kind_ == SoftmaxKind::softmax) y[j * s] = e;
      sum += e;
    }
    if (kind_ == SoftmaxKind::softmax) {
      const float inv = 1.f / sum;
      for (std::int64_t j = 0; j < n_; ++j) y[j * s] *= inv;
    } else {
      const float log_sum = std::log(sum);
      for (std::int64_t j = 0; j < n_; ++j) y[j * s] = x[j * s] - mx - log_sum;
    }
  }
  std::int64_t outer_, n_, inner_;
  SoftmaxKind kind_;
};

OpBuilder softmax_builder(SoftmaxKind kind) {
  return [kind](const OpContext& ctx) {
    const ValueMeta& x = ctx.input(0);
    if (x.dtype != DType::f32)
      ctx.unsupported("input type {} is not supported; float32 is", dtype_name(x.dtype));
    const auto rank = static_cast<std::int64_t>(x.dims.size());
    // Before opset 13 the input is coerced to 2-D at `axis` (default 1); from 13 the op
    // normalises along one axis (default -1).
    const bool coerce = ctx.opset() < 13;
    const std::int64_t axis = ctx.axis(ctx.node().attr_int("axis", coerce ? 1 : -1), rank);
    std::int64_t outer = 1, n = 1, inner = 1;
    for (std::int64_t a = 0; a < rank; ++a) {
      if (a < axis)
        outer *= x.dims[a];
      else if (a == axis || coerce)
        n *= x.dims[a];
      else
        inner *= x.dims[a];
    }
    OpBuild b;
    b.outputs.push_back({x.dtype, x.dims, {}});
    // oneDNN's softmax vectorises the exponentials over contiguous rows; SoftmaxKernel (the
    // reference the unit tests compare it with) covers strided axes, Hardmax and LogSoftmax,
    // whose oneDNN form is off by up to 1.4e-6 absolute where the result is exactly 0 (its
    // log polynomial at 1): a token's log-probability must not move for speed.
    if (inner == 1 && kind == SoftmaxKind::softmax) b.kernel = onednn::softmax_kernel(outer, n);
    if (!b.kernel) b.kernel = std::make_unique<SoftmaxKernel>(outer, n, inner, kind);
    return b;
  };
}

// ------------------------------------------------------------ LayerNormalization

class LayerNormKernel final : public Kernel {
 public:
  LayerNormKernel(std::int64_t rows, std::int64_t n, float eps, bool scale_bcast, bool bias_bcast)
      : rows_(rows), n_(n), eps_(eps), scale_bcast_(scale_bcast), bias_bcast_(bias_bcast) {}
  void run(std::span<const Tensor> in, std::span<Tensor> out) override {
    const float* x = in[0].data<float>();
    const float* gamma = in[1].data<float>();
    const float* beta = in.size() > 2 && !in[2].empty() ? in[2].data<float>() : nullptr;
    float* y = out[0].data<float>();
    float* mean_out = out.size() > 1 && !out[1].empty() ? out[1].data<float>() : nullptr;
    float* inv_out = out.size() > 2 && !out[2].empty() ? out[2].data<float>() : nullptr;
    parallel_for(rows_, std::max<std::int64_t>(1, 4096 / n_), [&](std::int64_t b, std::int64_t e) {
      for (std::int64_t r = b; r < e; ++r) {
        const float* px = x + r * n_;
        float* py = y + r * n_;
        // Two passes (mean, then centred variance) are more accurate than E[x^2]-E[x]^2.
        float sum = 0;
        for (std::int64_t j = 0; j < n_; ++j) sum += px[j];
        const float mean = sum / static_cast<float>(n_);
        float var = 0;
        for (std::int64_t j = 0; j < n_; ++j) var += (px[j] - mean) * (px[j] - mean);
        const float inv = 1.f / std::sqrt(var / static_cast<float>(n_) + eps_);
        for (std::int64_t j = 0; j < n_; ++j)
          py[j] = (px[j] - mean) * inv * gamma[scale_bcast_ ? 0 : j] +
                  (beta ? beta[bias_bcast_ ? 0 : j] : 0.f);
        if (mean_out) mean_out[r] = mean;
        if (inv_out) inv_out[r] = inv;
      }
    });
  }

 private:
  std::int64_t rows_, n_;
  float eps_;
  bool scale_bcast_, bias_bcast_;
};

OpBuild build_layernorm(const OpContext& ctx) {
  const ValueMeta& x = ctx.input(0);
  if (x.dtype != DType::f32)
    ctx.unsupported("input type {} is not supported; float32 is", dtype_name(x.dtype));
  const auto rank = static_cast<std::int64_t>(x.dims.size());
  const std::int64_t axis = ctx.axis(ctx.node().attr_int("axis", -1), rank);
  std::int64_t rows = 1, n = 1;
  for (std::int64_t a = 0; a < rank; ++a) (a < axis ? rows : n) *= x.dims[a];
  const std::int64_t scale_n = product(ctx.input(1).dims);
  const std::int64_t bias_n = ctx.has_input(2) ? product(ctx.input(2).dims) : n;
  if ((scale_n != n && scale_n != 1) || (bias_n != n && bias_n != 1))
    ctx.unsupported(
        "scale ({} elements) and bias ({}) must cover the {} normalised elements or be "
        "one value",
        scale_n, bias_n, n);
  OpBuild b;
  b.outputs.push_back({x.dtype, x.dims, {}});
  Dims stat_dims = x.dims;
  for (std::int64_t a = axis; a < rank; ++a) stat_dims[a] = 1;
  for (std::size_t i = 1; i < ctx.node().outputs.size(); ++i)
    b.outputs.push_back({DType::f32, stat_dims, {}});
  b.kernel = std::make_unique<LayerNormKernel>(rows, n, ctx.node().attr_float("epsilon", 1e-5f),
                                               scale_n == 1, bias_n == 1);
  return b;
}

}  // namespace

void register_reduce_ops(OpRegistry& r) {
  r.add("ReduceMean", reduce_builder(Reduce::mean, 18));
  r.add("ReduceSum", reduce_builder(Reduce::sum, 13));
  r.add("ReduceMax", reduce_builder(Reduce::max, 18));
  r.add("ReduceMin", reduce_builder(Reduce::min, 18));
  r.add("ReduceProd", reduce_builder(Reduce::prod, 18));
  r.add("ReduceL1", reduce_builder(Reduce::l1, 18));
  r.add("ReduceL2", reduce_builder(Reduce::l2, 18));
  r.add("ReduceSumSquare", reduce_builder(Reduce::sum_square, 18));
  r.add("ReduceLogSumExp", reduce_builder(Reduce::log_sum_exp, 18));
  r.add("Softmax", softmax_builder(SoftmaxKind::softmax));
  r.add("LogSoftmax", softmax_builder(SoftmaxKind::log_softmax));
  r.add("Hardmax", softmax_builder(SoftmaxKind::hardmax));
  r.add("LayerNormalization", build_layernorm);
}

}  // namespace bitplan
