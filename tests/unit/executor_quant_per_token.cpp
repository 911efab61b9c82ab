// Dynamic per-token activation quantization: the kernel against a per-token reference, the
// plan schema (uniform shorthands, YAML, static per-token refused) and the simulator.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>

#include "backends/device.hpp"
#include "executor/kernels/isa.hpp"
#include "executor/model.hpp"
#include "executor/plan.hpp"
#include "executor/quant/simulate.hpp"

namespace executor_quant_per_token_test {

namespace fs = std::filesystem;
using namespace bitplan;

namespace {
const fs::path kSource = BITPLAN_SOURCE_DIR;
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

Tensor random_tensor(Dims dims, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.5f, 2.f);
  Tensor t(DType::f32, std::move(dims));
  for (std::int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = normal(rng);
  return t;
}

// The definition, token by token: its values along `axis`, their finite min/max (0, 0 when
// none), affine_params_from_range, then the format's reference rounding per element.
Tensor reference(const Tensor& x, int axis, FormatId format, bool symmetric) {
  const FormatTraits& f = format_traits(format);
  const Dims& d = x.dims();
  const std::int64_t dim = d[static_cast<std::size_t>(axis)];
  const std::int64_t inner = product(Dims(d.begin() + axis + 1, d.end()));
  const std::int64_t outer = x.numel() / (dim * inner);
  Tensor y(DType::f32, d);
  const float* in = x.data<float>();
  float* out = y.data<float>();
  for (std::int64_t o = 0; o < outer; ++o)
    for (std::int64_t i = 0; i < inner; ++i) {
      const auto at = [&](std::int64_t k) { return (o * dim + k) * inner + i; };
      float lo = kInf, hi = -kInf;
      for (std::int64_t k = 0; k < dim; ++k)
        if (std::isfinite(in[at(k)])) {
          lo = std::min(lo, in[at(k)]);
          hi = std::max(hi, in[at(k)]);
        }
      if (lo > hi) lo = hi = 0.f;
      const AffineParams p = affine_params_from_range(format, symmetric, lo, hi);
      for (std::int64_t k = 0; k < dim; ++k) {
        const float v = in[at(k)];
        out[at(k)] = f.kind == FormatKind::integer
                         ? f.dequantize(f.quantize(v, p.scale, p.zero_point), p.scale, p.zero_point)
                         : f.round_to_format(v / p.scale) * p.scale;
      }
    }
  return y;
}

// A graph of one bitplan::FakeQuant node, planned for x's shape and run once.
Tensor run_fake_quant(const Tensor& x, std::int64_t axis, FormatId format, bool symmetric,
                      bool per_token = true) {
  Graph g;
  g.name = "per_token";
  g.opset = 13;
  Dims dims = x.dims();
  dims[0] = -1;
  g.inputs.push_back({"x", DType::f32, dims, {}});
  g.outputs.push_back({"y", DType::f32, dims, {}});
  Node fq{"fq", "FakeQuant", "bitplan", {"x"}, {"y"}, {}};
  fq.attrs["format"] = static_cast<std::int64_t>(format);
  fq.attrs["symmetric"] = static_cast<std::int64_t>(symmetric);
  fq.attrs["dynamic"] = std::int64_t{1};
  fq.attrs["per_token"] = static_cast<std::int64_t>(per_token);
  fq.attrs["axis"] = axis;
  g.nodes = {fq};
  ExecutionPlan plan(g, PlanOptions{x.dim(0)});
  const Tensor view = plan.run(std::span<const Tensor>(&x, 1))[0];  // the plan's buffer
  Tensor y(DType::f32, view.dims());
  std::memcpy(y.raw(), view.raw(), view.nbytes());
  return y;
}

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.dims() == b.dims() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

fs::path write_temp(const std::string& name, const std::string& text) {
  const fs::path p = fs::temp_directory_path() / ("bitplan_per_token_test_" + name);
  std::ofstream(p) << text;
  return p;
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST_CASE("per-token fake quantization equals the per-token reference bit for bit") {
  struct Format {
    FormatId id;
    bool symmetric;
  };
  for (const Format format : {Format{FormatId::uint8, false}, Format{FormatId::int8, true},
                              Format{FormatId::uint4, false}, Format{FormatId::int4, false},
                              Format{FormatId::fp8_e4m3, true}}) {
    CAPTURE(format_traits(format.id).name);
    CAPTURE(format.symmetric);
    SUBCASE("MatMul input [B, T, K]: rows along the last axis") {
      const Tensor x = random_tensor({3, 17, 48}, 1);
      CHECK(same_bits(run_fake_quant(x, -1, format.id, format.symmetric),
                      reference(x, 2, format.id, format.symmetric)));
    }
    SUBCASE("Conv input [N, C, H, W]: one token per pixel, over C (tiles of 64 and a rest)") {
      const Tensor x = random_tensor({2, 12, 9, 9}, 2);
      CHECK(same_bits(run_fake_quant(x, 1, format.id, format.symmetric),
                      reference(x, 1, format.id, format.symmetric)));
    }
    SUBCASE("Gemm input with transA [K, M]: tokens are columns") {
      const Tensor x = random_tensor({40, 5}, 3);
      CHECK(same_bits(run_fake_quant(x, 0, format.id, format.symmetric),
                      reference(x, 0, format.id, format.symmetric)));
    }
  }
}

TEST_CASE("per-token: the activation kernel is the quantizer's per_token slicing") {
  // The same definition reached another way: parameters fitted per slice of a per_token
  // spec (one group spanning the reduction axis) and the element-wise reference.
  Tensor x = random_tensor({6, 20, 70}, 9);
  const float specials[] = {kNaN, kInf, -kInf, 0.f, -0.f, 1e-40f, 3e38f, -7e35f};
  for (std::size_t k = 0; k < std::size(specials); ++k) x.data<float>()[k * 977] = specials[k];
  for (const char* text : {"uint8/token/asym", "int8/token/sym", "fp8_e4m3/token"})
    for (int axis : {0, 1, 2}) {
      CAPTURE(text);
      CAPTURE(axis);
      const QuantSpec spec = parse_quant_spec(text);
      Tensor expected;
      fake_quantize_reference(spec, choose_weight_params(spec, x, axis), x, expected, axis);
      const Dims& d = x.dims();
      const std::int64_t dim = d[static_cast<std::size_t>(axis)];
      const std::int64_t inner = product(Dims(d.begin() + axis + 1, d.end()));
      Tensor y(DType::f32, d);
      fake_quantize_activation_per_token(spec.format, spec.symmetric, x.data<float>(),
                                         y.data<float>(), x.numel() / (dim * inner), dim, inner);
      CHECK(same_bits(y, expected));
    }
}

TEST_CASE("per-token: one token is the dynamic per-tensor path; tokens differ from it") {
  const Tensor one = random_tensor({1, 64}, 4);
  CHECK(same_bits(run_fake_quant(one, -1, FormatId::uint8, false),
                  run_fake_quant(one, -1, FormatId::uint8, false, false)));
  Tensor many = random_tensor({4, 64}, 5);
  for (std::int64_t k = 0; k < 64; ++k) many.data<float>()[k] *= 100.f;  // an outlier row
  const Tensor per_token = run_fake_quant(many, -1, FormatId::uint8, false);
  const Tensor per_tensor = run_fake_quant(many, -1, FormatId::uint8, false, false);
  double err_token = 0, err_tensor = 0;
  for (std::int64_t i = 64; i < many.numel(); ++i) {  // the rows without the outlier
    err_token += std::abs(per_token.data<float>()[i] - many.data<float>()[i]);
    err_tensor += std::abs(per_tensor.data<float>()[i] - many.data<float>()[i]);
  }
  CHECK(err_token * 20 < err_tensor);
}

TEST_CASE("per-token: zero-range tokens, NaN and Inf") {
  // Row 0: all zeros (padding); row 1: one constant; row 2: a NaN and an Inf among values;
  // row 3: all NaN; row 4: ordinary values.
  Tensor x = random_tensor({5, 16}, 6);
  float* v = x.data<float>();
  std::fill_n(v, 16, 0.f);
  std::fill_n(v + 16, 16, -2.75f);
  v[32 + 3] = kNaN;
  v[32 + 7] = kInf;
  v[32 + 8] = -kInf;
  std::fill_n(v + 48, 16, kNaN);
  for (const auto& [format, symmetric] :
       {std::pair{FormatId::uint8, false}, std::pair{FormatId::int8, true},
        std::pair{FormatId::fp8_e5m2, true}}) {
    const auto format_name = format_traits(format).name;  // CAPTURE cannot take a binding
    CAPTURE(format_name);
    const Tensor y = run_fake_quant(x, -1, format, symmetric);
    CHECK(same_bits(y, reference(x, 1, format, symmetric)));
    const float* q = y.data<float>();
    for (int k = 0; k < 16; ++k) CHECK(q[k] == 0.f);  // zeros stay exact zeros, no NaN scale
    for (int k = 16; k < 32; ++k) CHECK(std::isfinite(q[k]));
    CHECK(std::abs(q[16] + 2.75f) <= 2.75f / 100);  // the constant is on its own grid
    CHECK(std::isnan(q[32 + 3]));                   // NaN stays NaN
    // ±Inf saturate to the ends of the row's grid, which its finite values set: [lo, hi]
    // widened to 0 (asymmetric) or ±max|x| (symmetric).
    float lo = 0.f, hi = 0.f;
    for (int k = 32; k < 48; ++k)
      if (std::isfinite(v[k])) lo = std::min(lo, v[k]), hi = std::max(hi, v[k]);
    if (symmetric) hi = std::max(-lo, hi), lo = -hi;
    CHECK(q[32 + 7] == doctest::Approx(hi).epsilon(0.02));
    CHECK(q[32 + 8] == doctest::Approx(lo).epsilon(0.02));
    for (int k = 48; k < 64; ++k) CHECK(std::isnan(q[k]));
    for (int k = 64; k < 80; ++k) CHECK(std::isfinite(q[k]));
  }
}

TEST_CASE("per-token ranges are the finite min and max, on every row length") {
  // What the per-token kernels quantize each row with (per_token_params): the range of the
  // row's finite values, NaN and ±Inf skipped wherever they sit, as affine_params_from_range
  // turns it into a scale and zero point.
  std::mt19937 rng(17);
  std::normal_distribution<float> normal(0.f, 3.f);
  std::uniform_int_distribution<int> special(0, 9);
  for (std::int64_t n = 1; n <= 40; ++n)
    for (int trial = 0; trial < 8; ++trial) {
      std::vector<float> row(static_cast<std::size_t>(n));
      float lo = std::numeric_limits<float>::infinity(), hi = -lo;
      for (float& v : row) {
        const int kind = special(rng);
        v = kind == 0 ? kNaN : kind == 1 ? kInf : kind == 2 ? -kInf : normal(rng);
        if (std::isfinite(v)) lo = std::min(lo, v), hi = std::max(hi, v);
      }
      if (!(lo <= hi)) lo = hi = 0.f;
      for (const auto& [format, symmetric] :
           {std::pair{FormatId::uint8, false}, std::pair{FormatId::int8, true}}) {
        const AffineParams got = per_token_params(format, symmetric, row.data(), n);
        const AffineParams want = affine_params_from_range(format, symmetric, lo, hi);
        CHECK_MESSAGE((got.scale == want.scale && got.zero_point == want.zero_point),
                      "n " << n << " trial " << trial << ": scale " << got.scale << " vs "
                           << want.scale << ", zero point " << got.zero_point << " vs "
                           << want.zero_point);
      }
    }
}

TEST_CASE("per-token ranges: formats without a scale, and static per-token nodes, are refused") {
  const Tensor x = random_tensor({2, 8}, 7);
  CHECK(error_of([&] { run_fake_quant(x, -1, FormatId::fp16, true); }).find("integer or fp8") !=
        std::string::npos);
  Graph g;
  g.name = "static_per_token";
  g.opset = 13;
  g.inputs.push_back({"x", DType::f32, {-1, 8}, {}});
  g.outputs.push_back({"y", DType::f32, {-1, 8}, {}});
  Node fq{"fq", "FakeQuant", "bitplan", {"x"}, {"y"}, {}};
  fq.attrs["format"] = static_cast<std::int64_t>(FormatId::uint8);
  fq.attrs["symmetric"] = std::int64_t{0};
  fq.attrs["scale"] = 0.1f;
  fq.attrs["per_token"] = std::int64_t{1};
  g.nodes = {fq};
  CHECK(error_of([&] { ExecutionPlan plan(g, PlanOptions{2}); }).find("needs dynamic") !=
        std::string::npos);
}

TEST_CASE("per-token plans: shorthands, YAML round trip, static per-token refused") {
  const LoadedModel mlp = load_model(kSource / "models/fmnist_mlp.onnx");
  const auto layers = quantizable_layers(mlp.graph);
  REQUIRE(layers.size() == 3);
  const std::string first = layers[0].name, second = layers[1].name, last = layers[2].name;

  SUBCASE("W8A8t is dynamic per token, W8A8d dynamic per tensor, W8A8 static") {
    const LayerQuant t = uniform_plan("W8A8t", mlp.graph).layers.at(first);
    CHECK(to_string(t.activations) == "uint8/token/asym");
    CHECK(t.dynamic);
    const LayerQuant d = uniform_plan("W4A8d", mlp.graph).layers.at(first);
    CHECK(to_string(d.weights) == "int4/channel/sym");
    CHECK(to_string(d.activations) == "uint8/tensor/asym");
    CHECK(d.dynamic);
    CHECK_FALSE(uniform_plan("W8A8", mlp.graph).layers.at(first).dynamic);
    CHECK(error_of([&] { uniform_plan("W4A16t", mlp.graph); }).find("'t' asks for run-time") !=
          std::string::npos);
    CHECK(error_of([&] { uniform_plan("W8A8x", mlp.graph); }).find("W<bits>") != std::string::npos);
  }
  SUBCASE("round trip: per-token defaults, a per-tensor dynamic and a static override") {
    const auto path = write_temp(
        "ok.yaml",
        "bitplan_plan: 1\n"
        "defaults: {weights: int8/channel/sym, activations: uint8/token/asym, dynamic: true}\n"
        "layers:\n"
        "  " +
            second +
            ": {activations: int8/tensor/sym}\n"
            "  " +
            last + ": {activations: uint8/tensor/asym, dynamic: false}\n");
    const QuantPlan plan = load_plan(path, mlp.graph, "");
    REQUIRE(plan.layers.size() == 3);
    CHECK(to_string(plan.layers.at(first).activations) == "uint8/token/asym");
    CHECK(plan.layers.at(first).dynamic);
    CHECK(to_string(plan.layers.at(second).activations) == "int8/tensor/sym");
    CHECK(plan.layers.at(second).dynamic);
    CHECK_FALSE(plan.layers.at(last).dynamic);
    const std::string yaml = plan_to_yaml(plan);
    CHECK(yaml.find("activations: uint8/token/asym, dynamic: true") != std::string::npos);
    CHECK(load_plan(write_temp("again.yaml", yaml), mlp.graph, "").layers == plan.layers);
  }
  SUBCASE("static per-token names the layer, the spec and the rule") {
    const auto path = write_temp("static.yaml",
                                 "bitplan_plan: 1\n"
                                 "defaults: {weights: int8/channel/sym, activations: "
                                 "uint8/token/asym, dynamic: true}\n"
                                 "layers:\n"
                                 "  " +
                                     last + ": {dynamic: false}\n");
    const std::string e = error_of([&] { load_plan(path, mlp.graph, ""); });
    CHECK(e.find("line 4") != std::string::npos);
    CHECK(e.find(last + ".activations 'uint8/token/asym' is per token with a static range") !=
          std::string::npos);
    CHECK(e.find("dynamic: true") != std::string::npos);
    CHECK(e.find("'uint8/tensor/asym' for a calibrated range") != std::string::npos);

    // Plans built in code meet the same rule in the simulator.
    QuantPlan plan = uniform_plan("W8A8t", mlp.graph);
    plan.layers.at(first).dynamic = false;
    QuantSimulator simulator(mlp.graph, "", CalibrationData{});
    CHECK(error_of([&] {
            simulator.build(plan);
          }).find("layer '" + first + "' with 'uint8/token/asym'") != std::string::npos);
  }
  SUBCASE("per-token weights are refused") {
    const auto path = write_temp(
        "weights.yaml", "bitplan_plan: 1\nlayers:\n  " + first + ": {weights: int8/token/sym}\n");
    CHECK(error_of([&] {
            load_plan(path, mlp.graph, "");
          }).find("per token is an activation granularity") != std::string::npos);
  }
}

TEST_CASE("simulated per-token plans: nodes, the Conv axis, and the INT8 path's reason") {
  const LoadedModel resnet = load_model(kSource / "models/fmnist_resnet.onnx");
  QuantSimulator simulator(resnet.graph, "", CalibrationData{});  // dynamic: no calibration
  const Graph g = simulator.build(uniform_plan("W8A8t", resnet.graph));
  int conv = 0, gemm = 0, w8a8 = 0;
  for (const auto& n : g.nodes) {
    w8a8 += n.op_type == "W8A8MatMul";
    if (n.op_type == "FakeQuant") {
      CHECK(n.attr_int("per_token", 0) == 1);
      CHECK(n.attr_int("dynamic", 0) == 1);
      (n.attr_int("axis", 0) == 1 ? conv : gemm) += 1;
    }
  }
  CHECK(conv == 9);
  // The Gemm: a FakeQuant before it, or, where the kernel list runs W8A8t on the W8A8 kernel
  // (AVX-512 VNNI), that kernel's node, which quantizes each row itself (simulate.hpp).
  const bool vnni =
      kernels::isa_of_onednn(query_cpu().capabilities.onednn_isa) == kernels::Isa::avx512_vnni;
  CHECK(gemm == (vnni ? 0 : 1));
  CHECK(w8a8 == (vnni ? 1 : 0));
  // It runs, finite, and close to fp32.
  const Tensor x = random_tensor({2, 1, 28, 28}, 8);
  ExecutionPlan quantized(g, PlanOptions{2}), reference(resnet.graph, PlanOptions{2});
  const Tensor yq = quantized.run(std::span<const Tensor>(&x, 1))[0];
  const Tensor yr = reference.run(std::span<const Tensor>(&x, 1))[0];
  double err = 0, norm = 0;
  for (std::int64_t i = 0; i < yq.numel(); ++i) {
    REQUIRE(std::isfinite(yq.data<float>()[i]));
    err += std::pow(yq.data<float>()[i] - yr.data<float>()[i], 2);
    norm += std::pow(yr.data<float>()[i], 2);
  }
  CHECK(10 * std::log10(norm / err) > 20);  // SQNR in dB

  const auto int8 = simulator.build_int8(uniform_plan("W7A8t", resnet.graph));
  CHECK(int8.int8_layers.empty());
  for (const auto& [layer, why] : int8.why_simulated)
    CHECK(why.find("dynamic per-token") != std::string::npos);
}

}  // namespace executor_quant_per_token_test
