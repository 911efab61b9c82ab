// AdaRound (executor/quant/adaround.hpp): its objective against a straightforward one built
// from an explicit input matrix X, its gradient against finite differences, its rounding
// against round-to-nearest's output error, and in the simulator, plans and caches.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <random>

#include "core/error.hpp"
#include "executor/evaluate.hpp"
#include "executor/metrics.hpp"
#include "executor/model.hpp"
#include "executor/quant/adaround.hpp"
#include "executor/quant/simulate.hpp"
#include "fashion_mnist.hpp"
#include "tests/temp_dir.hpp"

namespace executor_quant_adaround_test {

namespace fs = std::filesystem;
using namespace bitplan;

namespace {
const fs::path kSource = BITPLAN_SOURCE_DIR;

Tensor random_tensor(Dims dims, std::uint32_t seed, float scale = 1.f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.f, scale);
  Tensor t(DType::f32, std::move(dims));
  for (std::int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = normal(rng);
  return t;
}

// Correlated inputs [n, k]: a few directions carry most of the energy, as in activations.
Tensor correlated_inputs(std::int64_t n, std::int64_t k, std::uint32_t seed) {
  const Tensor z = random_tensor({n, k}, seed);
  const Tensor mix = random_tensor({k, k}, seed + 1, 0.3f);
  Tensor x(DType::f32, {n, k});
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t c = 0; c < k; ++c) {
      float s = z.data<float>()[i * k + c] * (c % 7 == 0 ? 4.f : 1.f);
      for (std::int64_t d = 0; d < k; ++d)
        s += z.data<float>()[i * k + d] * mix.data<float>()[d * k + c];
      x.data<float>()[i * k + c] = s;
    }
  return x;
}

struct Layer {
  Graph graph;
  QuantizableLayer layer;
};

Layer single_node(const std::string& op, const Tensor& weights,
                  std::map<std::string, AttrValue> attrs = {}) {
  Layer l;
  Node node;
  node.name = "layer";
  node.op_type = op;
  node.inputs = {"x", "w"};
  node.outputs = {"y"};
  node.attrs = std::move(attrs);
  if (op == "Gemm") node.attrs["transB"] = std::int64_t{1};
  l.graph.nodes.push_back(node);
  l.graph.initializers["w"] = weights;
  l.graph.opset = 13;
  l.layer = quantizable_layers(l.graph).at(0);
  return l;
}

Tensor transposed(const Tensor& t) {
  Tensor out(DType::f32, {t.dim(1), t.dim(0)});
  for (std::int64_t r = 0; r < t.dim(0); ++r)
    for (std::int64_t c = 0; c < t.dim(1); ++c)
      out.data<float>()[c * t.dim(0) + r] = t.data<float>()[r * t.dim(1) + c];
  return out;
}

// ‖(Q − W) Xᵀ‖²_F with X [vectors, K] and W, Q [N, K], summed from the vectors themselves.
double explicit_output_error(const Tensor& w, const Tensor& q, const Tensor& x) {
  const std::int64_t n = w.dim(0), k = w.dim(1);
  double total = 0;
  for (std::int64_t m = 0; m < x.dim(0); ++m)
    for (std::int64_t r = 0; r < n; ++r) {
      double y = 0;
      for (std::int64_t c = 0; c < k; ++c)
        y += (double(q.data<float>()[r * k + c]) - w.data<float>()[r * k + c]) *
             x.data<float>()[m * k + c];
      total += y * y;
    }
  return total;
}

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.dims() == b.dims() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

// Every value a level of its slice: quantizing it again changes no bit.
bool on_grid(const QuantSpec& spec, const QuantParams& params, const Tensor& q, int axis) {
  Tensor again;
  fake_quantize(spec, params, q, again, axis);
  return same_bits(again, q);
}
}  // namespace

TEST_CASE("AdaRound's objective is ‖(W̃ − W) X‖²/u + λ·reg, and its gradient is the derivative") {
  // Straightforward reference: 3 rows of 5 weights, 12 explicit input vectors, the soft
  // weights w̃ = s·(⌊w/s⌋ + h(v)) of a symmetric grid with step s = 0.25 (no clamp reached).
  const std::int64_t n = 3, k = 5, vectors = 12;
  const Tensor w = random_tensor({n, k}, 1, 0.6f);
  const Tensor x = random_tensor({vectors, k}, 2);
  const double s = 0.25, u = 0.7, lambda = 0.1, beta = 5;
  AdaroundRows p;
  p.rows = n;
  p.k = k;
  p.normalizer = u;
  p.hessian.assign(static_cast<std::size_t>(k * k), 0.0);
  for (std::int64_t m = 0; m < vectors; ++m)
    for (std::int64_t a = 0; a < k; ++a)
      for (std::int64_t b = 0; b < k; ++b)
        p.hessian[static_cast<std::size_t>(a * k + b)] +=
            double(x.data<float>()[m * k + a]) * x.data<float>()[m * k + b];
  std::vector<double> v(static_cast<std::size_t>(n * k));
  for (std::int64_t i = 0; i < n * k; ++i) {
    const double wi = w.data<float>()[i];
    p.weights.push_back(wi);
    p.low.push_back(s * std::floor(wi / s));
    p.high.push_back(s * (std::floor(wi / s) + 1));
    v[static_cast<std::size_t>(i)] = std::sin(double(i) * 1.7) * 1.9;  // h inside (0, 1)
  }
  const auto reference = [&](const std::vector<double>& at) {
    double reconstruction = 0, regulariser = 0;
    for (std::int64_t m = 0; m < vectors; ++m)
      for (std::int64_t r = 0; r < n; ++r) {
        double y = 0;
        for (std::int64_t c = 0; c < k; ++c) {
          const auto i = static_cast<std::size_t>(r * k + c);
          const double sigma = 1 / (1 + std::exp(-at[i]));
          const double h = std::clamp(sigma * 1.2 - 0.1, 0.0, 1.0);
          y += (s * (std::floor(p.weights[i] / s) + h) - p.weights[i]) * x.data<float>()[m * k + c];
        }
        reconstruction += y * y;
      }
    for (const double vi : at)
      regulariser +=
          1 -
          std::pow(std::abs(2 * std::clamp(1.2 / (1 + std::exp(-vi)) - 0.1, 0.0, 1.0) - 1), beta);
    return reconstruction / u + lambda * regulariser;
  };
  std::vector<double> gradient(v.size());
  const double loss = adaround_objective(p, v, beta, lambda, gradient);
  CHECK(loss == doctest::Approx(reference(v)).epsilon(1e-10));
  // Central differences: O(ε²) error, far below the tolerance at ε = 1e-5.
  for (std::size_t i = 0; i < v.size(); ++i) {
    CAPTURE(i);
    std::vector<double> up = v, down = v;
    up[i] += 1e-5;
    down[i] -= 1e-5;
    const double numeric = (reference(up) - reference(down)) / 2e-5;
    CHECK(gradient[i] == doctest::Approx(numeric).epsilon(1e-5).scale(1e-3));
  }
  // The start: h(v) = frac(w/s) makes w̃ = w, so only the regulariser is left.
  std::vector<double> start(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) {
    const double fraction = p.weights[i] / s - std::floor(p.weights[i] / s);
    start[i] = adaround_v_for(fraction);
    CHECK(adaround_h(start[i]) == doctest::Approx(fraction).epsilon(1e-12));
  }
  CHECK(adaround_objective(p, start, beta, 0, gradient) == doctest::Approx(0).scale(1e-12));
}

TEST_CASE("AdaRound beats round-to-nearest on correlated inputs, on the grid, deterministic") {
  const std::int64_t n = 20, k = 48;
  const Tensor weights = random_tensor({n, k}, 11, 0.5f);
  const Tensor x = correlated_inputs(200, k, 12);
  const Layer gemm = single_node("Gemm", weights);
  const Layer matmul = single_node("MatMul", transposed(weights));
  InputHessian h;
  accumulate_input_hessian(gemm.graph, gemm.layer, x, h);
  AdaroundOptions options;
  options.iterations = 300;
  for (const std::string spec_text : {"int4/channel/sym", "int3/group16/asym", "ternary/channel"}) {
    CAPTURE(spec_text);
    const QuantSpec spec = weight_spec_for(parse_quant_spec(spec_text), gemm.layer);
    const QuantParams params = choose_weight_params(spec, weights, 1);
    Tensor rtn;
    fake_quantize(spec, params, weights, rtn, 1);
    const AdaroundResult r = adaround_quantize(spec, params, weights, gemm.layer, h, options);
    const double e_rtn = explicit_output_error(weights, rtn, x),
                 e_ada = explicit_output_error(weights, r.quantized, x);
    MESSAGE(spec_text << ": output error round to nearest " << e_rtn << ", AdaRound " << e_ada
                      << " (" << r.rows_kept_rtn << " of " << r.rows << " rows kept rtn)");
    CHECK(e_ada < 0.8 * e_rtn);
    CHECK(r.error == doctest::Approx(e_ada).epsilon(1e-3));
    CHECK(r.rtn_error == doctest::Approx(e_rtn).epsilon(1e-3));
    CHECK(on_grid(spec, params, r.quantized, 1));
    // Each weight takes a neighbour of its value: the level below or the one above
    // (or a weight beyond the grid stays at its end, as round-to-nearest puts it).
    for (std::int64_t i = 0; i < weights.numel(); ++i) {
      const float q = r.quantized.data<float>()[i], wi = weights.data<float>()[i];
      const float scale = params.scale[static_cast<std::size_t>(
          slice_indices(spec, weights.dims(), 1)[static_cast<std::size_t>(i)])];
      CHECK((std::abs(q - wi) <= scale * 1.0001f || q == rtn.data<float>()[i]));
    }
    // Deterministic: a second run, and the same rows stored as a MatMul's columns.
    CHECK(same_bits(adaround_quantize(spec, params, weights, gemm.layer, h, options).quantized,
                    r.quantized));
    const QuantSpec matmul_spec = weight_spec_for(parse_quant_spec(spec_text), matmul.layer);
    const Tensor& wt = matmul.graph.initializers.at("w");
    const AdaroundResult rt = adaround_quantize(
        matmul_spec, choose_weight_params(matmul_spec, wt, 0), wt, matmul.layer, h, options);
    CHECK(same_bits(transposed(rt.quantized), r.quantized));
  }
  // Refused with the rule on a grid it cannot walk; a NaN Hessian rounds to nearest, warned.
  CHECK_THROWS_WITH_AS(
      adaround_quantize(parse_quant_spec("kmeans4/channel"), {}, weights, gemm.layer, h, options),
      doctest::Contains("adaround rounds onto a scaled integer grid"), Error);
  const QuantSpec spec = weight_spec_for(parse_quant_spec("int4/channel/sym"), gemm.layer);
  const QuantParams params = choose_weight_params(spec, weights, 1);
  Tensor rtn;
  fake_quantize(spec, params, weights, rtn, 1);
  InputHessian broken = h;
  broken.values[3] = std::nanf("");
  std::string warning;
  CHECK(same_bits(
      adaround_quantize(spec, params, weights, gemm.layer, broken, options, &warning).quantized,
      rtn));
  CHECK(warning.find("non-finite") != std::string::npos);
}

TEST_CASE("AdaRound on a grouped Conv, through its im2col Hessian") {
  // Two groups, 4 output channels, K = 3 channels x 3 x 3 per group.
  const Tensor weights = random_tensor({4, 3, 3, 3}, 31, 0.4f);
  std::map<std::string, AttrValue> attrs;
  attrs["group"] = std::int64_t{2};
  attrs["strides"] = Dims{1, 1};
  attrs["pads"] = Dims{1, 1, 1, 1};
  attrs["dilations"] = Dims{1, 1};
  const Layer conv = single_node("Conv", weights, attrs);
  InputHessian h;
  accumulate_input_hessian(conv.graph, conv.layer, random_tensor({2, 6, 8, 8}, 32), h);
  REQUIRE(h.groups == 2);
  const QuantSpec spec = weight_spec_for(parse_quant_spec("int3/channel/sym"), conv.layer);
  const QuantParams params = choose_weight_params(spec, weights, 1);
  AdaroundOptions options;
  options.iterations = 200;
  const AdaroundResult r = adaround_quantize(spec, params, weights, conv.layer, h, options);
  MESSAGE("grouped Conv int3: output error round to nearest " << r.rtn_error << ", AdaRound "
                                                              << r.error);
  CHECK(r.error < r.rtn_error);
  CHECK(on_grid(spec, params, r.quantized, 1));
}

TEST_CASE("AdaRound in plans and the simulator: closer to fp32 than rtn, cached on disk") {
  CHECK(weight_method_from_name("adaround") == WeightMethod::adaround);
  CHECK(static_cast<int>(WeightMethod::adaround) == 4);
  const LoadedModel model = load_model(kSource / "models" / "fmnist_resnet.onnx");
  const QuantPlan plan = uniform_plan("W4A8:adaround+bc", model.graph);
  for (const auto& entry : plan.layers) {
    CHECK(entry.second.method == WeightMethod::adaround);
    CHECK(entry.second.bias_correction);
  }
  CHECK(plan_to_yaml(plan).find("method: adaround") != std::string::npos);
  CHECK_THROWS_WITH_AS(uniform_plan("bf16:adaround", model.graph),
                       doctest::Contains("floating-point"), Error);

  const auto dataset = testing::open_fashion_mnist_test();
  if (!dataset) {
    testing::skip(testing::kFashionMnistMissing);
    return;
  }
  const auto calibration = select_indices({64, 3, 0}, dataset->size(), "calibration");
  const auto validation = select_indices({100, 3, 256}, dataset->size(), "validation");
  test::TempDir cache;
  const auto calibration_data = [&] {
    CalibrationData data;
    data.dataset = dataset.get();
    data.indices = calibration;
    data.selection_id = "test";
    data.cache_dir = cache.path();
    return data;
  };
  const EvalResult fp32 = evaluate(model.graph, *dataset, validation, EvalOptions{64, true});
  QuantSimulator simulator(model.graph, "fmnist_resnet", calibration_data());
  simulator.adaround_options.iterations = 100;  // the test's budget; the default is 1000
  const auto kl_of = [&](const std::string& shorthand) {
    const EvalResult r = evaluate(simulator.build(uniform_plan(shorthand, model.graph)), *dataset,
                                  validation, EvalOptions{64, true});
    return compare_outputs(fp32.logits, r.logits, fp32.classes).kl_divergence;
  };
  const double kl_rtn = kl_of("W3"), kl_ada = kl_of("W3:adaround");
  MESSAGE("fmnist_resnet W3 per channel: KL to fp32 " << kl_rtn << " (round to nearest), " << kl_ada
                                                      << " (AdaRound, 100 iterations)");
  CHECK(kl_ada < 0.7 * kl_rtn);
  CHECK(fs::exists(cache.path() / "weights"));
  // A second simulator reads the codes back: the same graph, bit for bit.
  QuantSimulator again(model.graph, "fmnist_resnet", calibration_data());
  again.adaround_options.iterations = 100;
  const Graph a = simulator.build(uniform_plan("W3:adaround", model.graph));
  const Graph b = again.build(uniform_plan("W3:adaround", model.graph));
  for (const auto& entry : a.initializers) {
    CAPTURE(entry.first);
    CHECK(same_bits(entry.second, b.initializers.at(entry.first)));
  }
}

}  // namespace executor_quant_adaround_test
