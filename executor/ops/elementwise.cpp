// Elementwise ops: unary maps, broadcasting binary arithmetic and comparisons, Where, Cast.
// Every kernel is a template over the element type instantiated through visit_dtype, with a
// plain loop over a contiguous run that the compiler vectorises, parallel over rows (TBB).
// Transcendental float32 maps (Gelu, Sigmoid, Tanh, Exp) run as oneDNN eltwise primitives
// instead: the compiler cannot vectorise a loop over libm's erf/exp/tanh, and a scalar erf
// made Gelu a fifth of MiniLM's time (docs/performance.md).
#include <cmath>
#include <limits>
#include <optional>
#include <type_traits>

#include "executor/op_registry.hpp"
#include "executor/ops/broadcast.hpp"
#include "executor/ops/onednn_common.hpp"

namespace bitplan {
namespace {

// ---------------------------------------------------------------- unary

template <typename T, typename Fn>
class UnaryKernel final : public Kernel {
 public:
  explicit UnaryKernel(Fn fn) : fn_(fn) {}
  void run(std::span<const Tensor> in, std::span<Tensor> out) override {
    const T* x = in[0].data<T>();
    T* y = out[0].data<T>();
    parallel_for(in[0].numel(), 16384, [&](std::int64_t b, std::int64_t e) {
      for (std::int64_t i = b; i < e; ++i) y[i] = fn_(x[i]);
    });
  }

 private:
  Fn fn_;
};

// The oneDNN eltwise algorithm (with its alpha and beta) that computes a unary op on float32.
struct VectorForm {
  dnnl::algorithm alg;
  float alpha = 0.f, beta = 0.f;
};
constexpr auto no_vector_form = [](const OpContext&) { return std::optional<VectorForm>(); };

// Registers a unary op over floating-point inputs. `make` receives the node and returns the
// element function (a generic lambda), so attributes are read once at plan time. `vector`
// returns the op's oneDNN form, which float32 inputs run with when oneDNN implements it;
// `make`'s function is the scalar fallback and the reference the unit tests compare with.
template <typename Make, typename Vector = decltype(no_vector_form)>
void add_unary_float(OpRegistry& r, std::string name, Make make, Vector vector = no_vector_form) {
  r.add(std::move(name), [make, vector](const OpContext& ctx) {
    const ValueMeta& x = ctx.input(0);
    OpBuild b;
    b.outputs.push_back({x.dtype, x.dims, {}});
    auto fn = make(ctx);
    if (x.dtype == DType::f32) {
      if (const std::optional<VectorForm> form = vector(ctx)) {
        b.kernel = onednn::eltwise_kernel(product(x.dims), form->alg, form->alpha, form->beta);
        if (b.kernel) return b;
      }
    }
    if (x.dtype == DType::f32)
      b.kernel = std::make_unique<UnaryKernel<float, decltype(fn)>>(fn);
    else if (x.dtype == DType::f64)
      b.kernel = std::make_unique<UnaryKernel<double, decltype(fn)>>(fn);
    else
      ctx.unsupported("input type {} is not supported; float32 and float64 are",
                      dtype_name(x.dtype));
    return b;
  });
}

// Unary ops defined for signed integers as well (Neg, Abs, Sign).
template <typename Make>
void add_unary_signed(OpRegistry& r, std::string name, Make make) {
  r.add(std::move(name), [make](const OpContext& ctx) {
    const ValueMeta& x = ctx.input(0);
    OpBuild b;
    b.outputs.push_back({x.dtype, x.dims, {}});
    auto fn = make(ctx);
    visit_dtype(x.dtype, [&](auto tag) {
      using T = decltype(tag);
      if constexpr (std::is_same_v<T, bool> || std::is_unsigned_v<T>)
        ctx.unsupported("input type {} is not supported; signed and floating types are",
                        dtype_name(x.dtype));
      else
        b.kernel = std::make_unique<UnaryKernel<T, decltype(fn)>>(fn);
    });
    return b;
  });
}

template <typename T>
T gelu_exact(T x) {
  return T(0.5) * x * (T(1) + std::erf(x * T(0.70710678118654752440)));
}
template <typename T>
T gelu_tanh(T x) {
  const T k = T(0.79788456080286535588);  // sqrt(2/pi)
  return T(0.5) * x * (T(1) + std::tanh(k * (x + T(0.044715) * x * x * x)));
}

// Clip's bounds: attributes before opset 11, optional constant inputs after.
std::pair<double, double> clip_bounds(const OpContext& ctx) {
  double lo = -INFINITY, hi = INFINITY;
  if (ctx.opset() < 11) {
    lo = ctx.node().attr_float("min", -INFINITY);
    hi = ctx.node().attr_float("max", INFINITY);
  } else {
    if (ctx.has_input(1)) lo = ctx.constant_input(1, "min").to_double_vector().at(0);
    if (ctx.has_input(2)) hi = ctx.constant_input(2, "max").to_double_vector().at(0);
  }
  return {lo, hi};
}

void register_unary(OpRegistry& r) {
  auto plain = [](auto fn) { return [fn](const OpContext&) { return fn; }; };
  add_unary_float(r, "Relu", plain([](auto x) { return x > 0 ? x : decltype(x)(0); }));
  auto vector = [](dnnl::algorithm alg) {
    return [alg](const OpContext&) { return std::optional<VectorForm>(VectorForm{alg}); };
  };
  add_unary_float(r, "Sigmoid",
                  plain([](auto x) { return decltype(x)(1) / (decltype(x)(1) + std::exp(-x)); }),
                  vector(dnnl::algorithm::eltwise_logistic));
  add_unary_float(r, "Tanh", plain([](auto x) { return std::tanh(x); }),
                  vector(dnnl::algorithm::eltwise_tanh));
  add_unary_float(r, "Exp", plain([](auto x) { return std::exp(x); }),
                  vector(dnnl::algorithm::eltwise_exp));
  add_unary_float(r, "Log", plain([](auto x) { return std::log(x); }));
  add_unary_float(r, "Sqrt", plain([](auto x) { return std::sqrt(x); }));
  add_unary_float(r, "Erf", plain([](auto x) { return std::erf(x); }));
  add_unary_float(r, "Reciprocal", plain([](auto x) { return decltype(x)(1) / x; }));
  add_unary_float(r, "Floor", plain([](auto x) { return std::floor(x); }));
  add_unary_float(r, "Ceil", plain([](auto x) { return std::ceil(x); }));
  // ONNX Round rounds halves to even, which nearbyint does in the default rounding mode.
  add_unary_float(r, "Round", plain([](auto x) { return std::nearbyint(x); }));
  add_unary_float(r, "Softplus", plain([](auto x) {
                    return std::log1p(std::exp(-std::abs(x))) + std::max(x, decltype(x)(0));
                  }));
  add_unary_float(r, "Softsign", plain([](auto x) { return x / (decltype(x)(1) + std::abs(x)); }));
  add_unary_float(r, "Sin", plain([](auto x) { return std::sin(x); }));
  add_unary_float(r, "Cos", plain([](auto x) { return std::cos(x); }));
  add_unary_signed(r, "Neg", plain([](auto x) { return static_cast<decltype(x)>(-x); }));
  add_unary_signed(r, "Abs",
                   plain([](auto x) { return static_cast<decltype(x)>(x < 0 ? -x : x); }));
  add_unary_signed(r, "Sign",
                   plain([](auto x) { return static_cast<decltype(x)>((x > 0) - (x < 0)); }));
  add_unary_float(r, "HardSwish", plain([](auto x) {
                    using T = decltype(x);
                    return x * std::clamp(x / T(6) + T(0.5), T(0), T(1));
                  }));
  add_unary_float(r, "LeakyRelu", [](const OpContext& ctx) {
    const float alpha = ctx.node().attr_float("alpha", 0.01f);
    return [alpha](auto x) { return x >= 0 ? x : static_cast<decltype(x)>(alpha) * x; };
  });
  add_unary_float(r, "Elu", [](const OpContext& ctx) {
    const float alpha = ctx.node().attr_float("alpha", 1.0f);
    return [alpha](auto x) {
      return x >= 0 ? x : static_cast<decltype(x)>(alpha) * (std::exp(x) - 1);
    };
  });
  add_unary_float(r, "Selu", [](const OpContext& ctx) {
    const float alpha = ctx.node().attr_float("alpha", 1.67326319217681884765625f);
    const float gamma = ctx.node().attr_float("gamma", 1.05070102214813232421875f);
    return [alpha, gamma](auto x) {
      using T = decltype(x);
      return static_cast<T>(gamma) * (x > 0 ? x : static_cast<T>(alpha) * (std::exp(x) - 1));
    };
  });
  add_unary_float(r, "HardSigmoid", [](const OpContext& ctx) {
    const float alpha = ctx.node().attr_float("alpha", 0.2f),
                beta = ctx.node().attr_float("beta", 0.5f);
    return [alpha, beta](auto x) {
      using T = decltype(x);
      return std::clamp(static_cast<T>(alpha) * x + static_cast<T>(beta), T(0), T(1));
    };
  });
  add_unary_float(r, "ThresholdedRelu", [](const OpContext& ctx) {
    const float alpha = ctx.node().attr_float("alpha", 1.0f);
    return [alpha](auto x) { return x > static_cast<decltype(x)>(alpha) ? x : decltype(x)(0); };
  });
  // Gelu (opset 20 semantics; also what bitplan's importer fuses decomposed GELUs into).
  add_unary_float(
      r, "Gelu",
      [](const OpContext& ctx) {
        const std::string approx = ctx.node().attr_string("approximate", "none");
        if (approx != "none" && approx != "tanh")
          ctx.invalid("approximate '{}' must be 'none' or 'tanh'", approx);
        const bool tanh = approx == "tanh";
        return [tanh](auto x) { return tanh ? gelu_tanh(x) : gelu_exact(x); };
      },
      [](const OpContext& ctx) {
        return std::optional<VectorForm>(
            VectorForm{ctx.node().attr_string("approximate", "none") == "tanh"
                           ? dnnl::algorithm::eltwise_gelu_tanh
                           : dnnl::algorithm::eltwise_gelu_erf});
      });
  r.add("Clip", [](const OpContext& ctx) {
    const ValueMeta& x = ctx.input(0);
    // Not a structured binding: clang 14 (the fuzz preset) cannot capture one in a lambda.
    const std::pair<double, double> bounds = clip_bounds(ctx);
    const double lo = bounds.first, hi = bounds.second;
    OpBuild b;
    b.outputs.push_back({x.dtype, x.dims, {}});
    visit_dtype(x.dtype, [&](auto tag) {
      using T = decltype(tag);
      if constexpr (std::is_same_v<T, bool>) {
        ctx.unsupported("bool inputs are not supported");
      } else {
        // Bounds outside T's range (e.g. the infinite defaults) saturate to it.
        const T tlo = lo <= static_cast<double>(std::numeric_limits<T>::lowest())
                          ? std::numeric_limits<T>::lowest()
                          : static_cast<T>(lo);
        const T thi = hi >= static_cast<double>(std::numeric_limits<T>::max())
                          ? std::numeric_limits<T>::max()
                          : static_cast<T>(hi);
        auto fn = [tlo, thi](T v) { return v < tlo ? tlo : (v > thi ? thi : v); };
        b.kernel = std::make_unique<UnaryKernel<T, decltype(fn)>>(fn);
      }
    });
    return b;
  });
}

// ---------------------------------------------------------------- binary / ternary

// out[i] = fn(a[i], b[i]) under broadcasting.
template <typename A, typename B, typename Out, typename Fn>
class BinaryKernel final : public Kernel {
 public:
  BinaryKernel(BroadcastPlan<2> plan, Fn fn) : plan_(std::move(plan)), fn_(fn) {}
  void run(std::span<const Tensor> in, std::span<Tensor> out) override {
    const A* a = in[0].data<A>();
    const B* b = in[1].data<B>();
    Out* y = out[0].data<Out>();
    const std::int64_t n = plan_.inner, sa = plan_.inner_stride[0], sb = plan_.inner_stride[1];
    plan_.parallel_rows([&](const std::array<std::int64_t, 2>& off, std::int64_t o) {
      const A* pa = a + off[0];
      const B* pb = b + off[1];
      Out* py = y + o;
      // Separate loops per stride pattern so each one vectorises.
      if (sa == 1 && sb == 1)
        for (std::int64_t i = 0; i < n; ++i) py[i] = fn_(pa[i], pb[i]);
      else if (sa == 1)
        for (std::int64_t i = 0; i < n; ++i) py[i] = fn_(pa[i], pb[0]);
      else if (sb == 1)
        for (std::int64_t i = 0; i < n; ++i) py[i] = fn_(pa[0], pb[i]);
      else
        for (std::int64_t i = 0; i < n; ++i) py[i] = fn_(pa[0], pb[0]);
    });
  }

 private:
  BroadcastPlan<2> plan_;
  Fn fn_;
};

Dims broadcast_or_fail(const OpContext& ctx, const std::vector<Dims>& dims) {
  auto out = broadcast_dims(dims);
  if (!out) {
    std::string shapes;
    for (const auto& d : dims) shapes += (shapes.empty() ? "" : " and ") + to_string(d);
    ctx.invalid("input shapes {} cannot be broadcast together", shapes);
  }
  return *out;
}

enum class Types { arithmetic, compare, logical };

// `fn` is a generic lambda; `types` says which element types it accepts and what it returns.
template <typename Fn>
void add_binary(OpRegistry& r, std::string name, Types types, Fn fn) {
  r.add(std::move(name), [types, fn](const OpContext& ctx) {
    const ValueMeta& a = ctx.input(0);
    const ValueMeta& b = ctx.input(1);
    if (a.dtype != b.dtype)
      ctx.invalid("inputs have different types {} and {}; ONNX requires the same type",
                  dtype_name(a.dtype), dtype_name(b.dtype));
    OpBuild out;
    const Dims dims = broadcast_or_fail(ctx, {a.dims, b.dims});
    BroadcastPlan<2> plan(dims, {a.dims, b.dims});
    visit_dtype(a.dtype, [&](auto tag) {
      using T = decltype(tag);
      if constexpr (std::is_same_v<T, bool>) {
        if (types != Types::logical && types != Types::compare)
          ctx.unsupported("bool inputs are not supported for arithmetic");
      } else if (types == Types::logical) {
        ctx.invalid("inputs must be bool, got {}", dtype_name(a.dtype));
      }
      using Out = std::conditional_t<std::is_same_v<T, bool>, bool, T>;
      if (types == Types::arithmetic) {
        out.outputs.push_back({a.dtype, dims, {}});
        auto op = [fn](Out x, Out y) { return static_cast<Out>(fn(x, y)); };
        out.kernel = std::make_unique<BinaryKernel<T, T, Out, decltype(op)>>(plan, op);
      } else {
        out.outputs.push_back({DType::boolean, dims, {}});
        auto op = [fn](T x, T y) { return static_cast<bool>(fn(x, y)); };
        out.kernel = std::make_unique<BinaryKernel<T, T, bool, decltype(op)>>(plan, op);
      }
    });
    return out;
  });
}

// Pow allows the exponent to have another type than the base.
OpBuild build_pow(const OpContext& ctx) {
  const ValueMeta& a = ctx.input(0);
  const ValueMeta& b = ctx.input(1);
  OpBuild out;
  const Dims dims = broadcast_or_fail(ctx, {a.dims, b.dims});
  BroadcastPlan<2> plan(dims, {a.dims, b.dims});
  out.outputs.push_back({a.dtype, dims, {}});
  // A constant float exponent of 2 or 3 (RMSNorm's mean of squares, tanh-GELU's cube) is a
  // product: std::pow's general path costs about 20 multiplies per element, and the product
  // is what powf returns for these exponents up to its last-bit rounding (ONNX Runtime
  // special-cases them the same way). Output dims are those of the broadcast, whose element
  // count is the base's when the exponent is a single value.
  if (a.dtype == DType::f32 && b.dtype == DType::f32 && b.constant && b.constant->numel() == 1 &&
      product(dims) == product(a.dims)) {
    const float exponent = b.constant->data<float>()[0];
    if (exponent == 2.f) {
      auto square = [](float x) { return x * x; };
      out.kernel = std::make_unique<UnaryKernel<float, decltype(square)>>(square);
      return out;
    }
    if (exponent == 3.f) {
      auto cube = [](float x) { return x * x * x; };
      out.kernel = std::make_unique<UnaryKernel<float, decltype(cube)>>(cube);
      return out;
    }
  }
  visit_dtype(a.dtype, [&](auto base_tag) {
    using A = decltype(base_tag);
    visit_dtype(b.dtype, [&](auto exp_tag) {
      using B = decltype(exp_tag);
      if constexpr (std::is_same_v<A, bool> || std::is_same_v<B, bool>) {
        ctx.unsupported("bool inputs are not supported");
      } else {
        auto op = [](A x, B y) {
          if constexpr (std::is_same_v<A, float> && std::is_same_v<B, float>)
            return std::pow(x, y);
          else
            return static_cast<A>(std::pow(static_cast<double>(x), static_cast<double>(y)));
        };
        out.kernel = std::make_unique<BinaryKernel<A, B, A, decltype(op)>>(plan, op);
      }
    });
  });
  return out;
}

template <typename T>
class WhereKernel final : public Kernel {
 public:
  explicit WhereKernel(BroadcastPlan<3> plan) : plan_(std::move(plan)) {}
  void run(std::span<const Tensor> in, std::span<Tensor> out) override {
    const bool* c = in[0].data<bool>();
    const T* x = in[1].data<T>();
    const T* y = in[2].data<T>();
    T* o = out[0].data<T>();
    const auto s = plan_.inner_stride;
    plan_.parallel_rows([&](const std::array<std::int64_t, 3>& off, std::int64_t oo) {
      for (std::int64_t i = 0; i < plan_.inner; ++i)
        o[oo + i] = c[off[0] + i * s[0]] ? x[off[1] + i * s[1]] : y[off[2] + i * s[2]];
    });
  }

 private:
  BroadcastPlan<3> plan_;
};

OpBuild build_where(const OpContext& ctx) {
  const ValueMeta& c = ctx.input(0);
  const ValueMeta& x = ctx.input(1);
  const ValueMeta& y = ctx.input(2);
  if (c.dtype != DType::boolean) ctx.invalid("condition must be bool, got {}", dtype_name(c.dtype));
  if (x.dtype != y.dtype)
    ctx.invalid("X and Y have different types {} and {}", dtype_name(x.dtype), dtype_name(y.dtype));
  const Dims dims = broadcast_or_fail(ctx, {c.dims, x.dims, y.dims});
  OpBuild out;
  out.outputs.push_back({x.dtype, dims, {}});
  BroadcastPlan<3> plan(dims, {c.dims, x.dims, y.dims});
  visit_dtype(x.dtype,
              [&](auto tag) { out.kernel = std::make_unique<WhereKernel<decltype(tag)>>(plan); });
  return out;
}

// Variadic Sum/Max/Min/Mean: folded pairwise into the output, which is then broadcast-shaped.
template <typename T>
class VariadicKernel final : public Kernel {
 public:
  VariadicKernel(std::vector<Dims> in_dims, Dims out_dims, int op)
      : out_dims_(std::move(out_dims)), op_(op) {
    for (const auto& d : in_dims) plans_.emplace_back(out_dims_, std::array<Dims, 2>{out_dims_, d});
  }
  void run(std::span<const Tensor> in, std::span<Tensor> out) override {
    T* y = out[0].data<T>();
    const std::int64_t n = out[0].numel();
    for (std::size_t k = 0; k < in.size(); ++k) {
      const T* x = in[k].data<T>();
      const auto& plan = plans_[k];
      plan.parallel_rows([&](const std::array<std::int64_t, 2>& off, std::int64_t o) {
        for (std::int64_t i = 0; i < plan.inner; ++i) {
          const T v = x[off[1] + i * plan.inner_stride[1]];
          T& acc = y[o + i];
          if (k == 0)
            acc = v;
          else if (op_ == 0 || op_ == 3)
            acc = acc + v;
          else if (op_ == 1)
            acc = std::max(acc, v);
          else
            acc = std::min(acc, v);
        }
      });
    }
    if (op_ == 3)
      for (std::int64_t i = 0; i < n; ++i) y[i] = static_cast<T>(y[i] / static_cast<T>(in.size()));
  }

 private:
  Dims out_dims_;
  int op_;  // 0 sum, 1 max, 2 min, 3 mean
  std::vector<BroadcastPlan<2>> plans_;
};

void add_variadic(OpRegistry& r, std::string name, int op) {
  r.add(std::move(name), [op](const OpContext& ctx) {
    std::vector<Dims> dims;
    for (std::size_t i = 0; i < ctx.num_inputs(); ++i) {
      if (ctx.input(i).dtype != ctx.input(0).dtype) ctx.invalid("inputs must share one type");
      dims.push_back(ctx.input(i).dims);
    }
    const Dims out_dims = broadcast_or_fail(ctx, dims);
    OpBuild b;
    b.outputs.push_back({ctx.input(0).dtype, out_dims, {}});
    visit_dtype(ctx.input(0).dtype, [&](auto tag) {
      using T = decltype(tag);
      if constexpr (std::is_same_v<T, bool>)
        ctx.unsupported("bool inputs are not supported");
      else
        b.kernel = std::make_unique<VariadicKernel<T>>(dims, out_dims, op);
    });
    return b;
  });
}

// ---------------------------------------------------------------- Cast / Not

template <typename From, typename To>
class CastKernel final : public Kernel {
 public:
  void run(std::span<const Tensor> in, std::span<Tensor> out) override {
    const From* x = in[0].data<From>();
    To* y = out[0].data<To>();
    parallel_for(in[0].numel(), 16384, [&](std::int64_t b, std::int64_t e) {
      for (std::int64_t i = b; i < e; ++i) y[i] = static_cast<To>(x[i]);
    });
  }
};

OpBuild build_cast(const OpContext& ctx) {
  const ValueMeta& x = ctx.input(0);
  // The importer maps ONNX type codes; here the attribute still holds the ONNX code.
  const std::int64_t to = ctx.node().attr_int("to", -1);
  DType target;
  switch (to) {
    case 1:
      target = DType::f32;
      break;
    case 2:
      target = DType::u8;
      break;
    case 3:
      target = DType::i8;
      break;
    case 6:
      target = DType::i32;
      break;
    case 7:
      target = DType::i64;
      break;
    case 9:
      target = DType::boolean;
      break;
    case 11:
      target = DType::f64;
      break;
    default:
      ctx.unsupported(
          "target type {} (ONNX code) is not supported; float, double, int64, int32, "
          "int8, uint8 and bool are",
          to);
  }
  OpBuild b;
  b.outputs.push_back({target, x.dims, {}});
  // A cast to the type the input already has changes nothing: a view, no kernel (exporters
  // leave such casts around mixed-precision blocks; runtimes drop them).
  if (target == x.dtype) {
    b.output_is_view_of_input = true;
    return b;
  }
  visit_dtype(x.dtype, [&](auto from) {
    visit_dtype(target, [&](auto to_tag) {
      b.kernel = std::make_unique<CastKernel<decltype(from), decltype(to_tag)>>();
    });
  });
  return b;
}

}  // namespace

void register_elementwise_ops(OpRegistry& r) {
  register_unary(r);
  add_binary(r, "Add", Types::arithmetic, [](auto x, auto y) { return x + y; });
  add_binary(r, "Sub", Types::arithmetic, [](auto x, auto y) { return x - y; });
  add_binary(r, "Mul", Types::arithmetic, [](auto x, auto y) { return x * y; });
  add_binary(r, "Div", Types::arithmetic, [](auto x, auto y) {
    // Integer division by zero is undefined in ONNX; return 0 rather than trap (SIGFPE).
    if constexpr (std::is_integral_v<decltype(y)>)
      return y == 0 ? decltype(x / y){0} : x / y;
    else
      return x / y;
  });
  add_binary(r, "Equal", Types::compare, [](auto x, auto y) { return x == y; });
  add_binary(r, "Less", Types::compare, [](auto x, auto y) { return x < y; });
  add_binary(r, "LessOrEqual", Types::compare, [](auto x, auto y) { return x <= y; });
  add_binary(r, "Greater", Types::compare, [](auto x, auto y) { return x > y; });
  add_binary(r, "GreaterOrEqual", Types::compare, [](auto x, auto y) { return x >= y; });
  add_binary(r, "And", Types::logical, [](auto x, auto y) { return x && y; });
  add_binary(r, "Or", Types::logical, [](auto x, auto y) { return x || y; });
  add_binary(r, "Xor", Types::logical, [](auto x, auto y) { return x != y; });
  r.add("Pow", build_pow);
  r.add("Where", build_where);
  r.add("Cast", build_cast);
  add_variadic(r, "Sum", 0);
  add_variadic(r, "Max", 1);
  add_variadic(r, "Min", 2);
  add_variadic(r, "Mean", 3);
  r.add("Not", [](const OpContext& ctx) {
    const ValueMeta& x = ctx.input(0);
    if (x.dtype != DType::boolean) ctx.invalid("input must be bool, got {}", dtype_name(x.dtype));
    OpBuild b;
    b.outputs.push_back({DType::boolean, x.dims, {}});
    auto fn = [](bool v) { return !v; };
    b.kernel = std::make_unique<UnaryKernel<bool, decltype(fn)>>(fn);
    return b;
  });
}

}  // namespace bitplan
