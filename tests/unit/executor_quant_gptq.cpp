// GPTQ (executor/quant/gptq.hpp) and the input Hessians it reads (executor/quant/hessian.hpp):
// each against its reference, against numbers from the paper's algorithm in numpy
// (tools/reference/gptq_reference.py), and in the simulator, plans and caches.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <random>

#include "core/error.hpp"
#include "executor/evaluate.hpp"
#include "executor/metrics.hpp"
#include "executor/model.hpp"
#include "executor/quant/bias_correction.hpp"
#include "executor/quant/gptq.hpp"
#include "executor/quant/simulate.hpp"
#include "fashion_mnist.hpp"
#include "tests/temp_dir.hpp"

namespace executor_quant_gptq_test {

namespace fs = std::filesystem;
using namespace bitplan;

namespace {
const fs::path kSource = BITPLAN_SOURCE_DIR;

Tensor tensor_of(Dims dims, const std::vector<float>& values) {
  Tensor t(DType::f32, std::move(dims));
  std::copy(values.begin(), values.end(), t.data<float>());
  return t;
}

// A Gemm with transB (W [N, K]) or a MatMul (W [K, N]) reading "x".
struct Layer {
  Graph graph;
  QuantizableLayer layer;
};

Layer linear_layer(const std::string& op, const Tensor& weights) {
  Layer l;
  Node node;
  node.name = "fc";
  node.op_type = op;
  node.inputs = {"x", "w"};
  node.outputs = {"y"};
  if (op == "Gemm") node.attrs["transB"] = std::int64_t{1};
  l.graph.nodes.push_back(node);
  l.graph.initializers["w"] = weights;
  l.graph.opset = 13;
  l.layer = quantizable_layers(l.graph).at(0);
  return l;
}

Layer conv_layer(const Tensor& weights, std::int64_t group, Dims strides, Dims pads,
                 Dims dilations) {
  Layer l;
  Node node;
  node.name = "conv";
  node.op_type = "Conv";
  node.inputs = {"x", "w"};
  node.outputs = {"y"};
  node.attrs["group"] = group;
  node.attrs["strides"] = strides;
  node.attrs["pads"] = pads;
  node.attrs["dilations"] = dilations;
  l.graph.nodes.push_back(node);
  l.graph.initializers["w"] = weights;
  l.graph.opset = 13;
  l.layer = quantizable_layers(l.graph).at(0);
  return l;
}

Tensor random_tensor(Dims dims, std::uint32_t seed, float scale = 1.f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.f, scale);
  Tensor t(DType::f32, std::move(dims));
  for (std::int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = normal(rng);
  return t;
}

// Σ over input vectors of ||(W - Q) x||² = Σ_rows dᵀ H d, for W [N, K] rows.
double output_error(const Tensor& w, const Tensor& q, const InputHessian& h) {
  const std::int64_t k = h.size, rows = w.numel() / k;
  double total = 0;
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t a = 0; a < k; ++a)
      for (std::int64_t b = 0; b < k; ++b)
        total += double(w.data<float>()[r * k + a] - q.data<float>()[r * k + a]) *
                 h.values[static_cast<std::size_t>(a * k + b)] *
                 double(w.data<float>()[r * k + b] - q.data<float>()[r * k + b]);
  return total;
}

// Correlated inputs: a few directions carry most of the energy, as in real activations.
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

CalibrationData calibration_on(const Dataset& dataset, std::vector<std::int64_t> indices,
                               fs::path cache_dir = {}) {
  CalibrationData data;
  data.dataset = &dataset;
  data.indices = std::move(indices);
  data.selection_id = "test";
  data.cache_dir = std::move(cache_dir);
  return data;
}
}  // namespace

TEST_CASE("input Hessians match their reference: MatMul rows, Gemm transA columns, Conv windows") {
  {
    const Layer l = linear_layer("MatMul", random_tensor({6, 3}, 1));
    const Tensor x = random_tensor({2, 5, 6}, 2);  // [batch, tokens, K]: 10 vectors
    InputHessian fast;
    accumulate_input_hessian(l.graph, l.layer, x, fast);
    const InputHessian ref = input_hessian_reference(l.graph, l.layer, x);
    CHECK(fast.vectors == 10);
    CHECK(ref.vectors == 10);
    REQUIRE(fast.values.size() == ref.values.size());
    for (std::size_t i = 0; i < ref.values.size(); ++i)
      CHECK(fast.values[i] == doctest::Approx(ref.values[i]).epsilon(1e-5));
  }
  {
    Layer l = linear_layer("Gemm", random_tensor({3, 4}, 3));
    l.graph.nodes[0].attrs["transA"] = std::int64_t{1};
    l.layer = quantizable_layers(l.graph).at(0);
    const Tensor a = random_tensor({4, 7}, 4);  // A [K, M]: each column a vector
    InputHessian fast;
    accumulate_input_hessian(l.graph, l.layer, a, fast);
    const InputHessian ref = input_hessian_reference(l.graph, l.layer, a);
    CHECK(fast.vectors == 7);
    for (std::size_t i = 0; i < ref.values.size(); ++i)
      CHECK(fast.values[i] == doctest::Approx(ref.values[i]).epsilon(1e-5));
  }
  // Two groups, stride 2, padding, dilation 2: K = 3 channels x 3 x 2 window positions.
  const Layer conv = conv_layer(random_tensor({4, 3, 3, 2}, 5), 2, {2, 1}, {1, 0, 2, 1}, {2, 1});
  const Tensor x = random_tensor({2, 6, 7, 5}, 6);
  InputHessian fast;
  accumulate_input_hessian(conv.graph, conv.layer, x, fast);
  accumulate_input_hessian(conv.graph, conv.layer, x, fast);  // a second batch adds up
  const InputHessian ref = input_hessian_reference(conv.graph, conv.layer, x);
  CHECK(fast.groups == 2);
  CHECK(fast.size == 18);
  CHECK(fast.vectors == 2 * ref.vectors);
  REQUIRE(fast.values.size() == ref.values.size());
  for (std::size_t i = 0; i < ref.values.size(); ++i)
    CHECK(fast.values[i] == doctest::Approx(2 * ref.values[i]).epsilon(1e-5));
  // Padding reaches the window: some vectors hold zeros, so H is not simply a sum of
  // full patches; the reference builds them one element at a time.
  // Output 3 x 5 per sample: (7 + 1 + 2 - 5) / 2 + 1 and (5 + 0 + 1 - 2) / 1 + 1.
  CHECK(ref.vectors == 2 * 3 * 5);

  const std::string why =
      input_hessian_refusal(QuantizableLayer{"up", "ConvTranspose", "w", "x", 1, 0, 1});
  CHECK(why.find("ConvTranspose") != std::string::npos);
}

TEST_CASE("GPTQ matches the paper's algorithm in numpy on a small case") {
  // tools/reference/gptq_reference.py: the same W and X, int4/channel/sym, act-order,
  // damping 0.01, block 128 and block 3 give these codes.
  std::vector<float> w(32), x(16 * 8);
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 8; ++c)
      w[static_cast<std::size_t>(r * 8 + c)] = float(((r * 8 + c) * 37 % 23) - 11) / 16.f;
  for (int n = 0; n < 16; ++n)
    for (int c = 0; c < 8; ++c)
      x[static_cast<std::size_t>(n * 8 + c)] =
          float(((n * 8 + c) * 13 % 17) - 8) / 8.f + float(c % 3) * float((n * 5) % 7 - 3) / 4.f;
  const std::vector<int> expected = {-7, 2,  -4, 5, -1, -6, 3,  -3, 6, 0,  -6, 4,  -3, 7, 0,  -6,
                                     4,  -1, 7,  2, -4, 4,  -1, -7, 2, -5, 6,  -1, -7, 3, -4, 6};
  const Layer l = linear_layer("Gemm", tensor_of({4, 8}, w));
  InputHessian h;
  accumulate_input_hessian(l.graph, l.layer, tensor_of({16, 8}, x), h);
  const QuantSpec spec = weight_spec_for(parse_quant_spec("int4/channel/sym"), l.layer);
  const Tensor& weights = l.graph.initializers.at("w");
  const QuantParams params = choose_weight_params(spec, weights, 1);
  for (const std::int64_t block : {std::int64_t{128}, std::int64_t{3}}) {
    CAPTURE(block);
    GptqOptions options;
    options.block = block;
    const Tensor fast = gptq_quantize(spec, params, weights, l.layer, h, options);
    const Tensor ref = gptq_quantize_reference(spec, params, weights, l.layer, h, options);
    for (std::size_t i = 0; i < expected.size(); ++i) {
      const float scale = params.scale[i / 8];
      CHECK(std::nearbyint(fast.data<float>()[i] / scale) == expected[i]);
      CHECK(std::nearbyint(ref.data<float>()[i] / scale) == expected[i]);
    }
  }
  Tensor rtn;
  fake_quantize(spec, params, weights, rtn, 1);
  GptqOptions options;
  const Tensor q = gptq_quantize(spec, params, weights, l.layer, h, options);
  // numpy: output error 0.188538 (round to nearest) vs 0.125313 (GPTQ).
  CHECK(output_error(weights, rtn, h) == doctest::Approx(0.188538).epsilon(1e-4));
  CHECK(output_error(weights, q, h) == doctest::Approx(0.125313).epsilon(1e-4));
}

TEST_CASE("GPTQ equals round-to-nearest bit for bit when the inputs are uncorrelated") {
  // A diagonal Hessian: the inverse's Cholesky factor is diagonal, so no error moves.
  const Tensor weights = random_tensor({24, 64}, 7);
  for (const std::string spec_text :
       {"int4/channel/sym", "int3/group16/asym", "int8/tensor/sym", "ternary/channel"}) {
    CAPTURE(spec_text);
    for (const std::string op : {"Gemm", "MatMul"}) {
      CAPTURE(op);
      const Tensor w = op == "Gemm"
                           ? weights
                           : tensor_of({64, 24}, std::vector<float>(weights.values<float>().begin(),
                                                                    weights.values<float>().end()));
      const Layer l = linear_layer(op, w);
      InputHessian h;
      h.size = 64;
      h.vectors = 1;
      h.values.assign(64 * 64, 0.f);
      for (int i = 0; i < 64; ++i) h.values[static_cast<std::size_t>(i * 65)] = float(1 + i % 5);
      const QuantSpec spec = weight_spec_for(parse_quant_spec(spec_text), l.layer);
      const QuantParams params = choose_weight_params(spec, w, l.layer.reduction_axis);
      Tensor rtn;
      fake_quantize(spec, params, w, rtn, l.layer.reduction_axis);
      const Tensor q = gptq_quantize(spec, params, w, l.layer, h, GptqOptions{});
      CHECK(std::memcmp(q.data<float>(), rtn.data<float>(),
                        sizeof(float) * static_cast<std::size_t>(w.numel())) == 0);
    }
  }
}

TEST_CASE(
    "GPTQ lowers the output error of correlated inputs, and its fast path follows the reference") {
  const std::int64_t k = 96, n = 40;
  const Tensor weights = random_tensor({n, k}, 11, 0.5f);
  const Layer l = linear_layer("Gemm", weights);
  InputHessian h;
  accumulate_input_hessian(l.graph, l.layer, correlated_inputs(400, k, 12), h);
  for (const std::string spec_text :
       {"int4/channel/sym", "int4/group32/sym", "int3/group32/asym", "int2/channel/asym"}) {
    CAPTURE(spec_text);
    const QuantSpec spec = weight_spec_for(parse_quant_spec(spec_text), l.layer);
    const QuantParams params = choose_weight_params(spec, weights, 1);
    Tensor rtn;
    fake_quantize(spec, params, weights, rtn, 1);
    for (const bool act_order : {true, false}) {
      CAPTURE(act_order);
      GptqOptions options;
      options.act_order = act_order;
      options.block = 32;  // several lazy blocks
      const Tensor fast = gptq_quantize(spec, params, weights, l.layer, h, options);
      const Tensor ref = gptq_quantize_reference(spec, params, weights, l.layer, h, options);
      const double e_rtn = output_error(weights, rtn, h), e_fast = output_error(weights, fast, h),
                   e_ref = output_error(weights, ref, h);
      MESSAGE(spec_text << std::string(act_order ? " act-order" : "") << ": output error RTN "
                        << e_rtn << ", GPTQ " << e_fast << " (reference " << e_ref << ")");
      CHECK(e_fast < 0.75 * e_rtn);
      // float lazy blocks vs double column updates: a level may flip where a value sits
      // within rounding noise of a decision point; the bound is on the outcome.
      std::int64_t differ = 0;
      for (std::int64_t i = 0; i < weights.numel(); ++i)
        differ += fast.data<float>()[i] != ref.data<float>()[i];
      CHECK(differ <= weights.numel() / 200);
      CHECK(e_fast == doctest::Approx(e_ref).epsilon(0.02));
      // Every value is a level of its slice's grid.
      Tensor again;
      fake_quantize(spec, params, fast, again, 1);
      CHECK(std::memcmp(again.data<float>(), fast.data<float>(),
                        sizeof(float) * static_cast<std::size_t>(fast.numel())) == 0);
    }
  }
}

TEST_CASE("GPTQ on degenerate Hessians: no inputs, fewer vectors than columns, NaN weights") {
  const Tensor weights = random_tensor({8, 32}, 21);
  const Layer l = linear_layer("Gemm", weights);
  const QuantSpec spec = weight_spec_for(parse_quant_spec("int4/channel/sym"), l.layer);
  const QuantParams params = choose_weight_params(spec, weights, 1);
  Tensor rtn;
  fake_quantize(spec, params, weights, rtn, 1);
  // No vector at all: every column is unreached, so every weight rounds to nearest.
  InputHessian zero;
  zero.size = 32;
  zero.values.assign(32 * 32, 0.f);
  const Tensor q0 = gptq_quantize(spec, params, weights, l.layer, zero, GptqOptions{});
  CHECK(std::memcmp(q0.data<float>(), rtn.data<float>(), sizeof(float) * 256) == 0);
  // 3 vectors for 32 columns: H has rank 3; damping makes it definite, nothing is NaN.
  InputHessian low;
  accumulate_input_hessian(l.graph, l.layer, random_tensor({3, 32}, 22), low);
  std::string warning;
  const Tensor q1 = gptq_quantize(spec, params, weights, l.layer, low, GptqOptions{}, &warning);
  for (std::int64_t i = 0; i < q1.numel(); ++i) CHECK(std::isfinite(q1.data<float>()[i]));
  CHECK(warning.empty());
  // Undamped, a rank-3 Hessian is singular: GPTQ raises the damping and says so.
  GptqOptions undamped;
  undamped.damping = 0;
  const Tensor q2 = gptq_quantize(spec, params, weights, l.layer, low, undamped, &warning);
  for (std::int64_t i = 0; i < q2.numel(); ++i) CHECK(std::isfinite(q2.data<float>()[i]));
  CHECK(warning.find("needed damping 0.01 (asked 0)") != std::string::npos);
  // A NaN in the Hessian (a NaN activation) cannot be damped away: round to nearest, warned.
  InputHessian broken = low;
  broken.values[34] = broken.values[65] = std::nanf("");  // H[1][2] and H[2][1]
  warning.clear();
  const Tensor q4 = gptq_quantize(spec, params, weights, l.layer, broken, GptqOptions{}, &warning);
  CHECK(std::memcmp(q4.data<float>(), rtn.data<float>(), sizeof(float) * 256) == 0);
  CHECK(warning.find("non-finite values") != std::string::npos);
  // A NaN weight stays NaN and passes no error on: its row's other weights stay finite.
  Tensor with_nan = weights.clone();
  with_nan.data<float>()[5] = std::nanf("");
  const Tensor q3 = gptq_quantize(spec, choose_weight_params(spec, with_nan, 1), with_nan, l.layer,
                                  low, GptqOptions{});
  CHECK(std::isnan(q3.data<float>()[5]));
  for (std::int64_t i = 0; i < 32; ++i)
    if (i != 5) CHECK(std::isfinite(q3.data<float>()[i]));
}

TEST_CASE("weight methods: names, refusals with the rule, plans and uniform shorthands") {
  CHECK(weight_method_from_name("gptq") == WeightMethod::gptq);
  CHECK_THROWS_WITH_AS(parse_weight_method("gtpq", "reading x"),
                       doctest::Contains("unknown weight method 'gtpq'; methods: rtn, gptq"),
                       Error);
  CHECK(!weight_method_refusal(WeightMethod::gptq, parse_quant_spec("int4/group128/sym")));
  CHECK(!weight_method_refusal(WeightMethod::gptq, parse_quant_spec("fp32")));
  const auto codebook =
      weight_method_refusal(WeightMethod::gptq, parse_quant_spec("kmeans4/channel"));
  REQUIRE(codebook);
  CHECK(codebook->find("codebook") != std::string::npos);
  CHECK(weight_method_refusal(WeightMethod::gptq, parse_quant_spec("fp8_e4m3/channel")));

  const LoadedModel model = load_model(kSource / "models" / "fmnist_mlp.onnx");
  const QuantPlan plan = uniform_plan("W4g16A8:gptq", model.graph);
  REQUIRE(!plan.layers.empty());
  for (const auto& entry : plan.layers) CHECK(entry.second.method == WeightMethod::gptq);
  CHECK_THROWS_WITH_AS(uniform_plan("W4:awqq", model.graph),
                       doctest::Contains("unknown weight method 'awqq'"), Error);
  CHECK_THROWS_WITH_AS(uniform_plan("bf16:gptq", model.graph), doctest::Contains("floating-point"),
                       Error);
  // Plans store the method and read it back; rtn is the default and is not written.
  test::TempDir dir;
  save_plan(dir.path() / "plan.yaml", plan);
  const std::string text = plan_to_yaml(plan);
  CHECK(text.find("method: gptq") != std::string::npos);
  const QuantPlan back = load_plan(dir.path() / "plan.yaml", model.graph, "");
  CHECK(back.layers == plan.layers);
  CHECK(plan_to_yaml(uniform_plan("W4", model.graph)).find("method") == std::string::npos);
  dir.write("bad.yaml", "bitplan_plan: 1\ndefaults: {weights: kmeans4/channel, method: gptq}\n");
  CHECK_THROWS_WITH_AS(load_plan(dir.path() / "bad.yaml", model.graph, ""),
                       doctest::Contains("method 'gptq' with weights 'kmeans4/channel'"), Error);
}

TEST_CASE("GPTQ in the simulator: closer to fp32 than round-to-nearest, cached on disk") {
  const auto dataset = testing::open_fashion_mnist_test();
  if (!dataset) {
    testing::skip(testing::kFashionMnistMissing);
    return;
  }
  const auto calibration = select_indices({256, 3, 0}, dataset->size(), "calibration");
  const auto validation = select_indices({1000, 3, 256}, dataset->size(), "validation");
  test::TempDir cache;
  for (const std::string model_name : {"fmnist_mlp", "fmnist_resnet"}) {
    CAPTURE(model_name);
    const LoadedModel model = load_model(kSource / "models" / (model_name + ".onnx"));
    const EvalResult fp32 = evaluate(model.graph, *dataset, validation, EvalOptions{64, true});
    const auto kl_of = [&](QuantSimulator& simulator, const std::string& shorthand) {
      const EvalResult r = evaluate(simulator.build(uniform_plan(shorthand, model.graph)), *dataset,
                                    validation, EvalOptions{64, true});
      return compare_outputs(fp32.logits, r.logits, fp32.classes).kl_divergence;
    };
    QuantSimulator simulator(model.graph, model_name,
                             calibration_on(*dataset, calibration, cache.path()));
    const double kl_rtn = kl_of(simulator, "W3"), kl_gptq = kl_of(simulator, "W3:gptq");
    MESSAGE(model_name << " W3 per channel: KL to fp32 " << kl_rtn << " (round to nearest), "
                       << kl_gptq << " (GPTQ)");
    CHECK(kl_gptq < 0.7 * kl_rtn);
    CHECK(fs::exists(cache.path() / "hessians"));
    CHECK(fs::exists(cache.path() / "weights"));
    // A second simulator reads the codes back: the same graph, bit for bit.
    QuantSimulator again(model.graph, model_name,
                         calibration_on(*dataset, calibration, cache.path()));
    const Graph a = simulator.build(uniform_plan("W3:gptq", model.graph));
    const Graph b = again.build(uniform_plan("W3:gptq", model.graph));
    // Not a structured binding: clang 14 cannot capture one in CAPTURE's lambda.
    for (const auto& entry : a.initializers) {
      CAPTURE(entry.first);
      const Tensor& other = b.initializers.at(entry.first);
      CHECK(std::memcmp(entry.second.raw(), other.raw(), entry.second.nbytes()) == 0);
    }
  }
}

TEST_CASE("bias correction: the bias absorbs (W - Q)·E[x], exactly the mean shift on the data") {
  // Gemm with transB, W [2, 3]; three input vectors with mean (1, 2, -1).
  const Tensor weights = tensor_of({2, 3}, {0.50f, -0.25f, 1.0f, 0.3f, 0.7f, -0.9f});
  const Layer l = linear_layer("Gemm", weights);
  InputHessian h;
  accumulate_input_hessian(l.graph, l.layer, tensor_of({3, 3}, {1, 2, -1, 0, 3, -2, 2, 1, 0}), h);
  const Tensor quantized = tensor_of({2, 3}, {0.5f, 0.f, 1.f, 0.25f, 0.75f, -1.f});
  const Tensor delta = bias_correction_delta(l.layer, weights, quantized, h);
  // Row 0: (0, -0.25, 0)·(1, 2, -1) = -0.5; row 1: (0.05, -0.05, 0.1)·(1, 2, -1) = -0.15.
  CHECK(delta.data<float>()[0] == doctest::Approx(-0.5));
  CHECK(delta.data<float>()[1] == doctest::Approx(-0.15));
  // Gemm C: absent -> Δ / beta as [N]; one value -> broadcast; [1, N] keeps its shape.
  QuantizableLayer gemm = l.layer;
  gemm.gemm_beta = 2.f;
  const Tensor none = corrected_bias(gemm, nullptr, delta);
  CHECK(none.dims() == Dims{2});
  CHECK(none.data<float>()[1] == doctest::Approx(-0.075));
  const Tensor row = tensor_of({1, 2}, {1.f, 2.f});
  const Tensor corrected = corrected_bias(gemm, &row, delta);
  CHECK(corrected.dims() == Dims{1, 2});
  CHECK(corrected.data<float>()[0] == doctest::Approx(0.75));
  CHECK(row.data<float>()[0] == 1.f);  // the model's bias is not changed in place
  const Tensor column = tensor_of({2, 1}, {1.f, 2.f});
  CHECK_THROWS_WITH_AS(corrected_bias(gemm, &column, delta),
                       doctest::Contains("does not end in the 2 output channels"), Error);
  // Which layers take it.
  CHECK(!bias_correction_refusal("Conv", 1.f));
  CHECK(bias_correction_refusal("Gemm", 0.f));
  const auto matmul = bias_correction_refusal("MatMul", 1.f);
  REQUIRE(matmul);
  CHECK(matmul->find("separate Add") != std::string::npos);
}

TEST_CASE("bias correction in plans and the simulator") {
  const LoadedModel vit = load_model(kSource / "models" / "fmnist_vit.onnx");
  // Uniform shorthands correct the layers with a bias slot; a MatMul keeps its bias.
  const QuantPlan plan = uniform_plan("W4A8:gptq+bc", vit.graph);
  for (const auto& layer : quantizable_layers(vit.graph)) {
    CAPTURE(layer.name);
    CHECK(plan.layers.at(layer.name).method == WeightMethod::gptq);
    CHECK(plan.layers.at(layer.name).bias_correction == (layer.op_type != "MatMul"));
  }
  CHECK(uniform_layer_quant("W8A8:bc").method == WeightMethod::rtn);
  CHECK(uniform_layer_quant("W8A8:bc").bias_correction);
  CHECK_THROWS_WITH_AS(uniform_layer_quant("W8A8:+bc"),
                       doctest::Contains("unknown weight method ''"), Error);
  test::TempDir dir;
  save_plan(dir.path() / "plan.yaml", plan);
  CHECK(plan_to_yaml(plan).find("bias_correction: true") != std::string::npos);
  CHECK(load_plan(dir.path() / "plan.yaml", vit.graph, "").layers == plan.layers);

  const auto dataset = testing::open_fashion_mnist_test();
  if (!dataset) {
    testing::skip(testing::kFashionMnistMissing);
    return;
  }
  const auto calibration = select_indices({256, 3, 0}, dataset->size(), "calibration");
  const auto validation = select_indices({2000, 3, 256}, dataset->size(), "validation");
  const LoadedModel model = load_model(kSource / "models" / "fmnist_mobilenetv2.onnx");
  const EvalResult fp32 = evaluate(model.graph, *dataset, validation, EvalOptions{64, true});
  QuantSimulator simulator(model.graph, "mnv2", calibration_on(*dataset, calibration));
  const auto kl_of = [&](const std::string& shorthand) {
    const EvalResult r = evaluate(simulator.build(uniform_plan(shorthand, model.graph)), *dataset,
                                  validation, EvalOptions{64, true});
    return compare_outputs(fp32.logits, r.logits, fp32.classes).kl_divergence;
  };
  const double plain = kl_of("W4A8"), corrected = kl_of("W4A8:bc");
  MESSAGE("fixture MobileNetV2 W4A8: KL to fp32 " << plain << ", with bias correction "
                                                  << corrected);
  CHECK(corrected < 0.9 * plain);
  // Real execution carries the same corrected biases: it agrees with the simulation.
  const QuantPlan bc = uniform_plan("W7A8:bc", model.graph);
  const auto real = simulator.build_int8(bc);
  const EvalResult sim = evaluate(simulator.build(bc), *dataset, validation, EvalOptions{64, true});
  const EvalResult run = evaluate(real.graph, *dataset, validation, EvalOptions{64, true});
  CHECK(compare_outputs(sim.logits, run.logits, sim.classes).top1_agreement >= 0.999);
}

}  // namespace executor_quant_gptq_test
