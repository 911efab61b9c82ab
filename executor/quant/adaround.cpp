#include "executor/quant/adaround.hpp"

#include <fmt/format.h>

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>

#include "core/error.hpp"
#include "core/parallel.hpp"
#include "executor/quant/methods.hpp"

namespace bitplan {
namespace {

constexpr double kZeta = 1.1, kGamma = -0.1;

template <typename T>
using RowMajor = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Rows of one Hessian group as the objective reads them (all [n][k] row-major but H).
template <typename T>
struct RowsView {
  std::int64_t n = 0, k = 0;
  const T *w = nullptr, *low = nullptr, *high = nullptr, *hessian = nullptr;
  T normalizer = 1;
};

// What one evaluation of the objective works in, n×k each, reused across iterations.
template <typename T>
struct Scratch {
  RowMajor<T> diff, product, soft, slope;
};

// L(v) and ∂L/∂v (derivation in adaround.hpp).
template <typename T>
double objective(const RowsView<T>& p, const T* v, double beta, double lambda, T* gradient,
                 Scratch<T>& scratch) {
  const std::int64_t size = p.n * p.k;
  RowMajor<T>&diff = scratch.diff, &product = scratch.product;
  diff.resize(p.n, p.k);
  scratch.soft.resize(p.n, p.k);
  scratch.slope.resize(p.n, p.k);
  T* soft = scratch.soft.data();
  T* slope = scratch.slope.data();
  for (std::int64_t i = 0; i < size; ++i) {
    const T sigma = T(1) / (T(1) + std::exp(-v[i]));
    const T stretched = sigma * T(kZeta - kGamma) + T(kGamma);
    const T h = std::clamp(stretched, T(0), T(1));
    soft[i] = h;
    slope[i] = stretched > 0 && stretched < 1 ? T(kZeta - kGamma) * sigma * (T(1) - sigma) : T(0);
    const T d = p.low[i] + h * (p.high[i] - p.low[i]) - p.w[i];
    // A non-finite weight stays non-finite on every grid: it moves no choice.
    diff.data()[i] = std::isfinite(d) ? d : T(0);
  }
  const Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>> hm(p.hessian, p.k, p.k);
  product.noalias() = diff * hm;  // D H (H symmetric: its row-major view is itself)
  double loss = double(product.cwiseProduct(diff).sum()) / double(p.normalizer);
  for (std::int64_t i = 0; i < size; ++i) {
    const T h = soft[i];
    T d_reg = 0;
    if (lambda > 0) {
      const T a = T(2) * h - T(1), magnitude = std::abs(a);
      // One pow per weight: |a|^β = |a|·|a|^(β−1).
      const double power = magnitude > 0 ? std::pow(double(magnitude), beta - 1) : 0.0;
      loss += lambda * (1.0 - double(magnitude) * power);
      d_reg = T(-2 * lambda * beta * power) * (a > 0 ? T(1) : T(-1));
    }
    gradient[i] =
        (T(2) * product.data()[i] / p.normalizer * (p.high[i] - p.low[i]) + d_reg) * slope[i];
  }
  return loss;
}

// The two levels a weight may take and its nearest, on slice `slice`'s grid.
struct Levels {
  float low, high, nearest;
};

Levels levels(const FormatTraits& f, const QuantParams& p, std::int64_t slice, float x) {
  const auto at = static_cast<std::size_t>(slice);
  const float scale = p.scale[at], zero_point = p.zero_point.empty() ? 0.f : p.zero_point[at];
  const float code = f.quantize(x, scale, zero_point);
  const float nearest = f.dequantize(code, scale, zero_point);
  if (!std::isfinite(x) || !std::isfinite(nearest) || !(scale > 0))
    return {nearest, nearest, nearest};
  // The code below x and the one above, each clamped: beyond the grid both are its end.
  const float below = nearest > x ? code - 1 : code;
  const auto clamp = [&](float c) { return std::clamp(c, float(f.qmin), float(f.qmax)); };
  return {f.dequantize(clamp(below), scale, zero_point),
          f.dequantize(clamp(below + 1), scale, zero_point), nearest};
}

void check_options(const AdaroundOptions& o) {
  if (o.iterations < 0 || !(o.learning_rate > 0) || !(o.lambda >= 0) || !(o.beta_end > 0) ||
      !(o.beta_start >= o.beta_end) || !(o.warmup >= 0 && o.warmup <= 1))
    fail_input(
        "running AdaRound: iterations {} must be >= 0, the learning rate {} > 0, lambda {} >= "
        "0, beta from {} down to {} > 0 and the warm-up {} in [0, 1]",
        o.iterations, o.learning_rate, o.lambda, o.beta_start, o.beta_end, o.warmup);
}

// d H dᵀ for each row d of `diff` (n×k): the rows' output errors.
Eigen::VectorXd row_errors(const RowMajor<float>& diff,
                           const Eigen::Map<const Eigen::MatrixXf>& h) {
  const RowMajor<float> product = diff * h;
  return product.cwiseProduct(diff).cast<double>().rowwise().sum();
}

}  // namespace

double adaround_h(double v) {
  return std::clamp(1 / (1 + std::exp(-v)) * (kZeta - kGamma) + kGamma, 0.0, 1.0);
}

double adaround_v_for(double fraction) {
  // σ(v) = p with p = (h − γ)/(ζ − γ) ∈ [1/12, 11/12] for h ∈ [0, 1]: v = log(p / (1 − p)).
  const double p = (std::clamp(fraction, 0.0, 1.0) - kGamma) / (kZeta - kGamma);
  return std::log(p / (1 - p));
}

double adaround_objective(const AdaroundRows& p, std::span<const double> v, double beta,
                          double lambda, std::span<double> gradient) {
  const auto size = static_cast<std::size_t>(p.rows * p.k);
  BITPLAN_ASSERT(p.weights.size() == size && p.low.size() == size && p.high.size() == size &&
                 p.hessian.size() == static_cast<std::size_t>(p.k * p.k) && v.size() == size &&
                 gradient.size() == size);
  Scratch<double> scratch;
  return objective(RowsView<double>{p.rows, p.k, p.weights.data(), p.low.data(), p.high.data(),
                                    p.hessian.data(), p.normalizer},
                   v.data(), beta, lambda, gradient.data(), scratch);
}

AdaroundResult adaround_quantize(const QuantSpec& spec, const QuantParams& params,
                                 const Tensor& weights, const QuantizableLayer& layer,
                                 const InputHessian& h, const AdaroundOptions& options,
                                 std::string* warning) {
  const std::string action =
      fmt::format("quantizing layer '{}' with '{}' by AdaRound", layer.name, to_string(spec));
  if (auto why = weight_method_refusal(WeightMethod::adaround, spec))
    fail_input("{}: {}", action, *why);
  check_options(options);
  const WeightRows v = weight_rows(weights, layer, h.groups, h.size, action);
  const std::vector<std::int64_t> slices =
      slice_indices(spec, weights.dims(), layer.reduction_axis);
  if (params.scale.size() !=
      static_cast<std::size_t>(slice_count(spec, weights.dims(), layer.reduction_axis)))
    fail_input("{}: {} scales for {} slices", action, params.scale.size(),
               slice_count(spec, weights.dims(), layer.reduction_axis));
  const FormatTraits& f = format_traits(spec.format);
  const float* w = weights.data<float>();
  const std::int64_t k = v.k;

  AdaroundResult result;
  result.rows = v.rows;
  result.quantized = Tensor(DType::f32, weights.dims());
  float* q = result.quantized.data<float>();
  std::vector<Levels> level(static_cast<std::size_t>(weights.numel()));
  for (std::int64_t i = 0; i < weights.numel(); ++i) {
    level[static_cast<std::size_t>(i)] =
        levels(f, params, slices[static_cast<std::size_t>(i)], w[i]);
    q[i] = level[static_cast<std::size_t>(i)].nearest;
  }
  if (!std::all_of(h.values.begin(), h.values.end(), [](float x) { return std::isfinite(x); })) {
    if (warning)
      *warning =
          "the input Hessian has non-finite values (NaN or Inf activations on the calibration "
          "data); rounded to nearest";
    result.rows_kept_rtn = v.rows;
    return result;
  }
  // u: mean over the weights of s² H_jj (adaround.hpp: the loss's unit).
  double normalizer = 0;
  for (std::int64_t r = 0; r < v.rows; ++r) {
    const std::span<const float> hg = h.group(r / v.rows_per_group());
    for (std::int64_t c = 0; c < k; ++c) {
      const double scale =
          params.scale[static_cast<std::size_t>(slices[static_cast<std::size_t>(v.flat(r, c))])];
      normalizer += scale * scale * hg[static_cast<std::size_t>(c * k + c)];
    }
  }
  normalizer /= double(std::max<std::int64_t>(v.rows * k, 1));
  if (!(normalizer > 0) || !std::isfinite(normalizer)) {
    result.rows_kept_rtn = v.rows;
    return result;  // no calibration input reaches the layer: nothing to trade off
  }

  // Blocks of rows, fixed whatever the thread count, each optimised on its own.
  constexpr std::int64_t kBlock = 16;
  const std::int64_t blocks_per_group = (v.rows_per_group() + kBlock - 1) / kBlock;
  const std::int64_t blocks = v.groups * blocks_per_group;
  std::vector<double> error(static_cast<std::size_t>(blocks)), rtn_error(error.size());
  std::vector<std::int64_t> kept(error.size());
  const int warm = static_cast<int>(std::lround(options.warmup * options.iterations));
  parallel_for(blocks, 1, [&](std::int64_t b0, std::int64_t b1) {
    RowMajor<float> wb, low, high, diff, rtn_diff;
    Scratch<float> scratch;
    std::vector<float> vs, gradient, m, s;
    for (std::int64_t b = b0; b < b1; ++b) {
      const std::int64_t g = b / blocks_per_group;
      const std::int64_t r0 = g * v.rows_per_group() + (b % blocks_per_group) * kBlock;
      const std::int64_t n = std::min(kBlock, (g + 1) * v.rows_per_group() - r0);
      wb.resize(n, k);
      low.resize(n, k);
      high.resize(n, k);
      vs.assign(static_cast<std::size_t>(n * k), 0.f);
      for (std::int64_t r = 0; r < n; ++r)
        for (std::int64_t c = 0; c < k; ++c) {
          const std::int64_t at = v.flat(r0 + r, c);
          const Levels& l = level[static_cast<std::size_t>(at)];
          wb(r, c) = w[at];
          low(r, c) = l.low;
          high(r, c) = l.high;
          // Start at the soft version of w/s: h(v) = frac(w/s), so w̃ = w.
          if (l.high > l.low)
            vs[static_cast<std::size_t>(r * k + c)] =
                static_cast<float>(adaround_v_for((double(w[at]) - l.low) / (l.high - l.low)));
        }
      const RowsView<float> view{n,
                                 k,
                                 wb.data(),
                                 low.data(),
                                 high.data(),
                                 h.group(g).data(),
                                 static_cast<float>(normalizer)};
      // Adam (β1 0.9, β2 0.999, ε 1e-8), bias-corrected steps.
      gradient.assign(vs.size(), 0.f);
      m.assign(vs.size(), 0.f);
      s.assign(vs.size(), 0.f);
      double power1 = 1, power2 = 1;
      for (int t = 0; t < options.iterations; ++t) {
        const bool regularised = t >= warm;
        const double progress =
            regularised ? double(t - warm) / std::max(options.iterations - warm, 1) : 0;
        const double beta =
            options.beta_end + (options.beta_start - options.beta_end) * (1 - progress);
        objective(view, vs.data(), beta, regularised ? options.lambda : 0.0, gradient.data(),
                  scratch);
        power1 *= 0.9;
        power2 *= 0.999;
        const auto step =
            static_cast<float>(options.learning_rate * std::sqrt(1 - power2) / (1 - power1));
        for (std::size_t i = 0; i < vs.size(); ++i) {
          m[i] = 0.9f * m[i] + 0.1f * gradient[i];
          s[i] = 0.999f * s[i] + 0.001f * gradient[i] * gradient[i];
          vs[i] -= step * m[i] / (std::sqrt(s[i]) + 1e-8f);
        }
      }
      // Hard rounding, then each row against round-to-nearest on the exact output error.
      diff.resize(n, k);
      rtn_diff.resize(n, k);
      for (std::int64_t r = 0; r < n; ++r)
        for (std::int64_t c = 0; c < k; ++c) {
          const std::int64_t at = v.flat(r0 + r, c);
          const float chosen =
              vs[static_cast<std::size_t>(r * k + c)] >= 0 ? high(r, c) : low(r, c);
          const float d = chosen - w[at], d_rtn = q[at] - w[at];
          diff(r, c) = std::isfinite(d) ? d : 0.f;
          rtn_diff(r, c) = std::isfinite(d_rtn) ? d_rtn : 0.f;
        }
      const Eigen::Map<const Eigen::MatrixXf> hm(h.group(g).data(), k, k);
      const Eigen::VectorXd e = row_errors(diff, hm), e_rtn = row_errors(rtn_diff, hm);
      const auto at_block = static_cast<std::size_t>(b);
      for (std::int64_t r = 0; r < n; ++r) {
        rtn_error[at_block] += e_rtn(r);
        if (!(e(r) < e_rtn(r))) {
          ++kept[at_block];
          error[at_block] += e_rtn(r);
          continue;
        }
        error[at_block] += e(r);
        for (std::int64_t c = 0; c < k; ++c) {
          const std::int64_t at = v.flat(r0 + r, c);
          if (std::isfinite(w[at]))
            q[at] = vs[static_cast<std::size_t>(r * k + c)] >= 0 ? high(r, c) : low(r, c);
        }
      }
    }
  });
  for (std::size_t b = 0; b < error.size(); ++b) {
    result.error += error[b];
    result.rtn_error += rtn_error[b];
    result.rows_kept_rtn += kept[b];
  }
  return result;
}

}  // namespace bitplan
