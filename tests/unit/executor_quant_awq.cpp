// AWQ (executor/quant/awq.hpp): its exponent search against the same search done on the input
// vectors themselves, and the method in plans, the simulator, real execution and refusals.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <random>

#include "core/error.hpp"
#include "executor/evaluate.hpp"
#include "executor/kernels/isa.hpp"
#include "executor/metrics.hpp"
#include "executor/model.hpp"
#include "executor/quant/awq.hpp"
#include "executor/quant/simulate.hpp"
#include "fashion_mnist.hpp"

namespace fs = std::filesystem;
using namespace bitplan;

namespace {
const fs::path kAwqSource = BITPLAN_SOURCE_DIR;

// A MatMul y = x · W, W [K, N], reading "x".
struct MatMulLayer {
  Graph graph;
  QuantizableLayer layer;
};

MatMulLayer matmul_layer(const Tensor& weights) {
  MatMulLayer l;
  Node node;
  node.name = "fc";
  node.op_type = "MatMul";
  node.inputs = {"x", "w"};
  node.outputs = {"y"};
  l.graph.nodes.push_back(node);
  l.graph.initializers["w"] = weights;
  l.graph.opset = 13;
  l.layer = quantizable_layers(l.graph).at(0);
  return l;
}

// Inputs whose channels differ in magnitude by up to ~50x, as LLM activations do.
Tensor outlier_inputs(std::int64_t n, std::int64_t k, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  std::vector<float> channel(static_cast<std::size_t>(k));
  for (auto& c : channel) c = std::exp(1.3f * normal(rng));
  Tensor x(DType::f32, {n, k});
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t c = 0; c < k; ++c)
      x.data<float>()[i * k + c] = normal(rng) * channel[static_cast<std::size_t>(c)];
  return x;
}

Tensor normal_tensor(Dims dims, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  Tensor t(DType::f32, std::move(dims));
  for (std::int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = normal(rng);
  return t;
}

struct ReferenceChoice {
  double alpha = 0, error = 0;
  Tensor quantized;
};

// The reference's search written out on the vectors: for each α, s from mean|x| (the
// Hessian pass's sums, checked against the vectors below), W·s rounded by the reference
// quantizer, and the output error Σ_x Σ_n ((W' - W)ᵀ x)_n² in double with W' = Q · (1/s).
ReferenceChoice reference_search(const QuantSpec& spec, const Tensor& w, const Tensor& x,
                                 const std::vector<double>& magnitude, int grid) {
  const std::int64_t k = w.dim(0), n = w.dim(1), vectors = x.dim(0);
  ReferenceChoice best;
  for (int step = 0; step < grid; ++step) {
    const double alpha = double(step) / grid;
    std::vector<float> s(static_cast<std::size_t>(k), 1.f);
    if (step > 0) {
      std::vector<double> d(s.size());
      double lo = INFINITY, hi = 0;
      for (std::size_t i = 0; i < d.size(); ++i) {
        d[i] = std::max(std::pow(magnitude[i], alpha), 1e-4);
        lo = std::min(lo, d[i]);
        hi = std::max(hi, d[i]);
      }
      for (std::size_t i = 0; i < d.size(); ++i)
        s[i] = static_cast<float>(d[i] / std::sqrt(lo * hi));
    }
    Tensor scaled = w.clone();
    for (std::int64_t r = 0; r < k; ++r)
      for (std::int64_t c = 0; c < n; ++c)
        scaled.data<float>()[r * n + c] *= s[static_cast<std::size_t>(r)];
    Tensor q;
    fake_quantize_reference(spec, choose_weight_params(spec, scaled, 0), scaled, q, 0);
    double error = 0;
    for (std::int64_t v = 0; v < vectors; ++v)
      for (std::int64_t c = 0; c < n; ++c) {
        double dot = 0;
        for (std::int64_t r = 0; r < k; ++r) {
          const float effective = q.data<float>()[r * n + c] * (1.f / s[static_cast<std::size_t>(r)]);
          dot += (double(effective) - w.data<float>()[r * n + c]) * x.data<float>()[v * k + r];
        }
        error += dot * dot;
      }
    if (step == 0 || error < best.error) best = {alpha, error, q};
  }
  return best;
}

CalibrationData calibration_over(const Dataset& dataset, std::vector<std::int64_t> indices) {
  CalibrationData data;
  data.dataset = &dataset;
  data.indices = std::move(indices);
  data.selection_id = "awq-test";
  return data;
}
}  // namespace

TEST_CASE("AWQ's exponent search equals the same search on the input vectors") {
  const std::int64_t k = 64, n = 12;
  const MatMulLayer l = matmul_layer(normal_tensor({k, n}, 7));
  const Tensor x = outlier_inputs(300, k, 8);
  InputHessian h;
  accumulate_input_hessian(l.graph, l.layer, x, h);
  // The magnitudes AWQ weighs channels by: Σ|x| and max|x| per channel, as on the vectors.
  const InputHessian ref = input_hessian_reference(l.graph, l.layer, x);
  std::vector<double> magnitude(static_cast<std::size_t>(k));
  for (std::int64_t c = 0; c < k; ++c) {
    const auto at = static_cast<std::size_t>(c);
    CHECK(h.abs_sums[at] == doctest::Approx(ref.abs_sums[at]).epsilon(1e-6));
    CHECK(h.max_abs[at] == ref.max_abs[at]);
    magnitude[at] = h.abs_sums[at] / double(h.vectors);
  }
  for (const char* text : {"int4/group32/sym", "int3/channel/sym", "uint4/group16/asym"}) {
    CAPTURE(text);
    const QuantSpec spec = weight_spec_for(parse_quant_spec(text), l.layer);
    const AwqResult r = awq_quantize(spec, l.graph.initializers.at("w"), l.layer, h);
    const ReferenceChoice expected =
        reference_search(spec, l.graph.initializers.at("w"), x, magnitude, AwqOptions{}.grid);
    CHECK(r.alpha == doctest::Approx(expected.alpha));
    CHECK(r.error == doctest::Approx(expected.error).epsilon(1e-3));
    REQUIRE(r.quantized.numel() == expected.quantized.numel());
    int differing = 0;
    for (std::int64_t i = 0; i < r.quantized.numel(); ++i)
      differing += r.quantized.data<float>()[i] != expected.quantized.data<float>()[i];
    CHECK(differing == 0);
    // Outlier channels: scaling them beats round-to-nearest clearly.
    MESSAGE(std::string(text) << ": alpha " << r.alpha << ", output error " << r.error << " vs "
                 << r.rtn_error << " rounding to nearest");
    CHECK(r.alpha > 0);
    CHECK(r.error < 0.8 * r.rtn_error);
  }
  // A one-point grid is round-to-nearest, bit for bit.
  const QuantSpec spec = weight_spec_for(parse_quant_spec("int4/group32/sym"), l.layer);
  const AwqResult rtn = awq_quantize(spec, l.graph.initializers.at("w"), l.layer, h, AwqOptions{1});
  Tensor q;
  fake_quantize(spec, choose_weight_params(spec, l.graph.initializers.at("w"), 0),
                l.graph.initializers.at("w"), q, 0);
  CHECK(std::equal(q.data<float>(), q.data<float>() + q.numel(), rtn.quantized.data<float>()));
  CHECK(rtn.error == rtn.rtn_error);
}

TEST_CASE("AWQ in plans: weight-only, Gemm and MatMul, refused elsewhere with the rule") {
  CHECK(weight_method_from_name("awq") == WeightMethod::awq);
  CHECK(weight_method_traits(WeightMethod::awq).scales_inputs);
  CHECK_THROWS_WITH_AS(uniform_layer_quant("W4A8:awq"),
                       doctest::Contains("awq is weight-only"), Error);
  CHECK(!method_activation_refusal(WeightMethod::awq, parse_quant_spec("fp16")));
  CHECK(!weight_method_layer_refusal(WeightMethod::awq, "MatMul"));
  const auto conv = weight_method_layer_refusal(WeightMethod::awq, "Conv");
  REQUIRE(conv);
  CHECK(conv->find("linear layer") != std::string::npos);
  // A uniform shorthand applies it where it can: the ResNet's convolutions round to nearest.
  const LoadedModel resnet = load_model(kAwqSource / "models" / "fmnist_resnet.onnx");
  const QuantPlan plan = uniform_plan("W4:awq", resnet.graph);
  int awq_layers = 0;
  for (const auto& layer : quantizable_layers(resnet.graph)) {
    const WeightMethod m = plan.layers.at(layer.name).method;
    CHECK((m == WeightMethod::awq) == (layer.op_type == "Gemm" || layer.op_type == "MatMul"));
    awq_layers += m == WeightMethod::awq;
  }
  CHECK(awq_layers > 0);
}

TEST_CASE("AWQ in the simulator: a Mul by 1/s before the layer; real execution agrees") {
  const auto dataset = testing::open_fashion_mnist_test();
  if (!dataset) {
    testing::skip(testing::kFashionMnistMissing);
    return;
  }
  const auto calibration = select_indices({256, 3, 0}, dataset->size(), "calibration");
  const auto validation = select_indices({1000, 3, 256}, dataset->size(), "validation");
  // The MLP's Gemm layers: 3-bit weights in groups of 16, calibrated on 256 images.
  const LoadedModel mlp = load_model(kAwqSource / "models" / "fmnist_mlp.onnx");
  const EvalResult fp32 = evaluate(mlp.graph, *dataset, validation, EvalOptions{64, true});
  QuantSimulator mlp_simulator(mlp.graph, "mlp", calibration_over(*dataset, calibration));
  const auto kl_of = [&](const std::string& shorthand) {
    const EvalResult r = evaluate(mlp_simulator.build(uniform_plan(shorthand, mlp.graph)),
                                  *dataset, validation, EvalOptions{64, true});
    return compare_outputs(fp32.logits, r.logits, fp32.classes).kl_divergence;
  };
  const double kl_rtn = kl_of("W3g16"), kl_awq = kl_of("W3g16:awq");
  MESSAGE("fixture MLP W3g16: KL to fp32 " << kl_rtn << " (round to nearest), " << kl_awq
                                           << " (AWQ)");
  CHECK(kl_awq < 0.6 * kl_rtn);

  // The ViT's MatMuls read [batch, tokens, K] inputs: the Mul broadcasts 1/s over K.
  const LoadedModel model = load_model(kAwqSource / "models" / "fmnist_vit.onnx");
  QuantSimulator simulator(model.graph, "vit", calibration_over(*dataset, calibration));
  const QuantPlan awq = uniform_plan("W3g16:awq", model.graph);
  // Every AWQ layer reads its input through "<layer>/input_scaling", a Mul by 1/s.
  const Graph g = simulator.build(awq);
  int scaled = 0;
  for (const auto& node : g.nodes)
    if (node.name.ends_with("/input_scaling")) {
      CHECK(node.op_type == "Mul");
      ++scaled;
    }
  CHECK(scaled == std::count_if(awq.layers.begin(), awq.layers.end(), [](const auto& entry) {
          return entry.second.method == WeightMethod::awq;
        }));
  CHECK(scaled > 0);

  // Real execution: the W4A32 kernel on the scaled weights' codes after the same Mul.
  const auto real = simulator.build_int8(awq);
  if (kernels::cpu_isa() != kernels::Isa::scalar) CHECK(!real.w4a32_layers.empty());
  const EvalResult sim = evaluate(g, *dataset, validation, EvalOptions{64, true});
  const EvalResult run = evaluate(real.graph, *dataset, validation, EvalOptions{64, true});
  CHECK(compare_outputs(sim.logits, run.logits, sim.classes).top1_agreement >= 0.999);
}
