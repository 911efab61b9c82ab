#include "executor/quant/gptq.hpp"

#include <fmt/format.h>

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.hpp"
#include "core/parallel.hpp"
#include "executor/quant/methods.hpp"

namespace bitplan {
namespace {

using RowMajorMatrixF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using RowMajorMatrixD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

}  // namespace

// What a group's solve needs: the column order and U, the upper Cholesky factor of the
// damped inverse Hessian in that order (H⁻¹ = Uᵀ U). Outside the anonymous namespace because
// GptqFactors (declared in the header) holds it.
struct GptqGroupFactor {
  std::vector<std::int64_t> order;  // order[i] = the column quantized i-th
  RowMajorMatrixD u;
  RowMajorMatrixF u_float;    // u for the fast path
  bool rtn_fallback = false;  // H was beyond repair: round to nearest
};

namespace {

GptqGroupFactor factor_group(std::span<const float> hessian, std::int64_t k,
                             const GptqOptions& options, std::string* warning) {
  GptqGroupFactor f;
  Eigen::MatrixXd h(k, k);
  for (std::int64_t a = 0; a < k; ++a)
    for (std::int64_t b = 0; b < k; ++b) h(a, b) = hessian[static_cast<std::size_t>(a * k + b)];
  if (!h.allFinite()) {
    f.rtn_fallback = true;
    if (warning)
      *warning =
          "the input Hessian has non-finite values (NaN or Inf activations on the calibration "
          "data); rounded to nearest";
    return f;
  }
  // Columns no input reaches: a unit diagonal, so they round to nearest and pass nothing on.
  for (std::int64_t i = 0; i < k; ++i)
    if (!(h(i, i) > 0)) {
      h.row(i).setZero();
      h.col(i).setZero();
      h(i, i) = 1;
    }
  f.order.resize(static_cast<std::size_t>(k));
  std::iota(f.order.begin(), f.order.end(), std::int64_t{0});
  if (options.act_order)
    std::stable_sort(f.order.begin(), f.order.end(),
                     [&](std::int64_t a, std::int64_t b) { return h(a, a) > h(b, b); });
  Eigen::MatrixXd permuted(k, k);
  for (std::int64_t a = 0; a < k; ++a)
    for (std::int64_t b = 0; b < k; ++b)
      permuted(a, b) =
          h(f.order[static_cast<std::size_t>(a)], f.order[static_cast<std::size_t>(b)]);
  const double mean_diagonal = permuted.diagonal().mean();
  // The asked damping, then 0.01, 0.1, 1 (those above it).
  std::vector<double> dampings = {options.damping};
  for (double lambda = 0.01; lambda <= 1.0 + 1e-12; lambda *= 10)
    if (lambda > options.damping) dampings.push_back(lambda);
  // U without forming H⁻¹: with J the reversal (J X J reverses rows and columns), factor
  // J H J = L Lᵀ; then H = (J L J)(J L J)ᵀ with J L J upper, so
  //   H⁻¹ = (J L J)⁻ᵀ (J L J)⁻¹,  U = (J L J)⁻¹ = J L⁻¹ J,
  // upper with a positive diagonal: one Cholesky and one triangular inverse (2/3 K³) instead
  // of a Cholesky, an inverse and a second Cholesky (about 8/3 K³).
  for (const double lambda : dampings) {
    Eigen::MatrixXd damped = permuted.reverse();
    damped.diagonal().array() += lambda * mean_diagonal;
    const Eigen::LLT<Eigen::MatrixXd> llt(damped);
    if (llt.info() == Eigen::Success) {
      Eigen::MatrixXd lower_inverse = Eigen::MatrixXd::Identity(k, k);
      llt.matrixL().solveInPlace(lower_inverse);
      if (lower_inverse.allFinite()) {
        f.u = lower_inverse.reverse();
        f.u.triangularView<Eigen::StrictlyLower>().setZero();
        f.u_float = f.u.cast<float>();
        if (lambda != options.damping && warning)
          *warning =
              fmt::format("the input Hessian needed damping {} (asked {}) to be positive definite",
                          lambda, options.damping);
        return f;
      }
    }
  }
  f.rtn_fallback = true;
  if (warning)
    *warning =
        "the input Hessian is not positive definite even with damping 1 (too few or "
        "degenerate calibration inputs); rounded to nearest";
  return f;
}

float level(const FormatTraits& f, const QuantParams& p, std::int64_t slice, float x) {
  const auto s = static_cast<std::size_t>(slice);
  const float zero_point = p.zero_point.empty() ? 0.f : p.zero_point[s];
  return f.dequantize(f.quantize(x, p.scale[s], zero_point), p.scale[s], zero_point);
}

struct Setup {
  const FormatTraits* format = nullptr;
  WeightRows rows;
  std::vector<std::int64_t> slices;
};

Setup setup(const QuantSpec& spec, const QuantParams& params, const Tensor& weights,
            const QuantizableLayer& layer, const GptqFactors& factors, const GptqOptions& options);

}  // namespace

struct GptqFactors {
  std::int64_t groups = 0, size = 0;
  std::vector<GptqGroupFactor> group;
};

namespace {

void check_options(const GptqOptions& options) {
  if (!(options.damping >= 0 && options.damping <= 1) || options.block < 1)
    fail_input("running GPTQ: damping {} must be in [0, 1] and the block {} at least 1",
               options.damping, options.block);
}

Setup setup(const QuantSpec& spec, const QuantParams& params, const Tensor& weights,
            const QuantizableLayer& layer, const GptqFactors& factors, const GptqOptions& options) {
  const std::string action =
      fmt::format("quantizing layer '{}' with '{}' by GPTQ", layer.name, to_string(spec));
  if (auto why = weight_method_refusal(WeightMethod::gptq, spec))
    fail_input("{}: {}", action, *why);
  check_options(options);
  Setup s;
  s.format = &format_traits(spec.format);
  s.rows = weight_rows(weights, layer, factors.groups, factors.size, action);
  s.slices = slice_indices(spec, weights.dims(), layer.reduction_axis);
  if (params.scale.size() !=
      static_cast<std::size_t>(slice_count(spec, weights.dims(), layer.reduction_axis)))
    fail_input("{}: {} scales for {} slices", action, params.scale.size(),
               slice_count(spec, weights.dims(), layer.reduction_axis));
  return s;
}

}  // namespace

std::shared_ptr<const GptqFactors> gptq_factors(const InputHessian& h, const GptqOptions& options,
                                                std::string* warning) {
  check_options(options);
  auto factors = std::make_shared<GptqFactors>();
  factors->groups = h.groups;
  factors->size = h.size;
  factors->group.resize(static_cast<std::size_t>(h.groups));
  std::vector<std::string> notes(static_cast<std::size_t>(h.groups));
  parallel_for(h.groups, 1, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t g = b; g < e; ++g)
      factors->group[static_cast<std::size_t>(g)] =
          factor_group(h.group(g), h.size, options, &notes[static_cast<std::size_t>(g)]);
  });
  for (std::size_t g = 0; g < notes.size(); ++g)
    if (!notes[g].empty() && warning) {
      *warning = h.groups > 1 ? fmt::format("group {} of {}: {}", g, h.groups, notes[g]) : notes[g];
      break;
    }
  return factors;
}

Tensor gptq_quantize(const QuantSpec& spec, const QuantParams& params, const Tensor& weights,
                     const QuantizableLayer& layer, const InputHessian& h,
                     const GptqOptions& options, std::string* warning) {
  return gptq_quantize(spec, params, weights, layer, *gptq_factors(h, options, warning), options);
}

Tensor gptq_quantize(const QuantSpec& spec, const QuantParams& params, const Tensor& weights,
                     const QuantizableLayer& layer, const GptqFactors& factors,
                     const GptqOptions& options) {
  const Setup s = setup(spec, params, weights, layer, factors, options);
  const WeightRows& v = s.rows;
  const std::int64_t k = v.k, block = options.block;
  Tensor out(DType::f32, weights.dims());
  const float* w = weights.data<float>();
  float* q = out.data<float>();
  // Rows in chunks: each chunk runs the whole column sweep with its own working copy.
  constexpr std::int64_t kChunk = 32;
  const std::int64_t chunks_per_group = (v.rows_per_group() + kChunk - 1) / kChunk;
  parallel_for(v.groups * chunks_per_group, 1, [&](std::int64_t t0, std::int64_t t1) {
    RowMajorMatrixF work, errors;
    for (std::int64_t t = t0; t < t1; ++t) {
      const std::int64_t g = t / chunks_per_group;
      const GptqGroupFactor& f = factors.group[static_cast<std::size_t>(g)];
      const std::int64_t r0 = g * v.rows_per_group() + (t % chunks_per_group) * kChunk;
      const std::int64_t n = std::min(kChunk, (g + 1) * v.rows_per_group() - r0);
      if (f.rtn_fallback) {
        for (std::int64_t r = r0; r < r0 + n; ++r)
          for (std::int64_t c = 0; c < k; ++c) {
            const std::int64_t at = v.flat(r, c);
            q[at] = level(*s.format, params, s.slices[static_cast<std::size_t>(at)], w[at]);
          }
        continue;
      }
      const RowMajorMatrixF& u = f.u_float;
      work.resize(n, k);
      for (std::int64_t r = 0; r < n; ++r)
        for (std::int64_t i = 0; i < k; ++i)
          work(r, i) = w[v.flat(r0 + r, f.order[static_cast<std::size_t>(i)])];
      for (std::int64_t i1 = 0; i1 < k; i1 += block) {
        const std::int64_t i2 = std::min(i1 + block, k);
        errors.setZero(n, i2 - i1);
        for (std::int64_t i = i1; i < i2; ++i) {
          const std::int64_t column = f.order[static_cast<std::size_t>(i)];
          for (std::int64_t r = 0; r < n; ++r) {
            const std::int64_t at = v.flat(r0 + r, column);
            const float x = work(r, i);
            const float level_x =
                level(*s.format, params, s.slices[static_cast<std::size_t>(at)], x);
            q[at] = level_x;
            if (std::isfinite(x) && std::isfinite(level_x))
              errors(r, i - i1) = (x - level_x) / u(i, i);
          }
          if (i + 1 < i2)
            work.block(0, i + 1, n, i2 - i - 1).noalias() -=
                errors.col(i - i1) * u.row(i).segment(i + 1, i2 - i - 1);
        }
        if (i2 < k) work.rightCols(k - i2).noalias() -= errors * u.block(i1, i2, i2 - i1, k - i2);
      }
    }
  });
  return out;
}

Tensor gptq_quantize_reference(const QuantSpec& spec, const QuantParams& params,
                               const Tensor& weights, const QuantizableLayer& layer,
                               const InputHessian& h, const GptqOptions& options) {
  const std::shared_ptr<const GptqFactors> factors = gptq_factors(h, options);
  const Setup s = setup(spec, params, weights, layer, *factors, options);
  const WeightRows& v = s.rows;
  Tensor out(DType::f32, weights.dims());
  const float* w = weights.data<float>();
  float* q = out.data<float>();
  for (std::int64_t r = 0; r < v.rows; ++r) {
    const GptqGroupFactor& f = factors->group[static_cast<std::size_t>(r / v.rows_per_group())];
    std::vector<double> row(static_cast<std::size_t>(v.k));
    for (std::int64_t i = 0; i < v.k; ++i)
      row[static_cast<std::size_t>(i)] = w[v.flat(r, f.order[static_cast<std::size_t>(i)])];
    for (std::int64_t i = 0; i < v.k; ++i) {
      const std::int64_t at = v.flat(r, f.order[static_cast<std::size_t>(i)]);
      const auto x = static_cast<float>(row[static_cast<std::size_t>(i)]);
      const float level_x = level(*s.format, params, s.slices[static_cast<std::size_t>(at)], x);
      q[at] = level_x;
      if (f.rtn_fallback || !std::isfinite(x) || !std::isfinite(level_x)) continue;
      const double error = (double(x) - level_x) / f.u(i, i);
      for (std::int64_t j = i + 1; j < v.k; ++j)
        row[static_cast<std::size_t>(j)] -= error * f.u(i, j);
    }
  }
  return out;
}

}  // namespace bitplan
