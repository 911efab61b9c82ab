// The export library: QDQ graph structure, numbers equal to the simulation's, opset rules,
// BatchNorm folding, formats that cannot express a spec, and output checks.
#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <set>

#include "executor/model.hpp"
#include "export/export.hpp"
#include "export_test_util.hpp"
#include "fashion_mnist.hpp"

namespace export_qdq_test {

namespace fs = std::filesystem;
using namespace bitplan;
using namespace bitplan::testing;

namespace {

const fs::path kSource = BITPLAN_SOURCE_DIR;

struct Fixture {
  fs::path path;
  LoadedModel loaded;
  std::unique_ptr<Dataset> dataset;
  QuantSimulator simulator;

  // Calibrates on the first 256 test images when the dataset is installed (plans with
  // static integer activations need it).
  explicit Fixture(const std::string& model, std::unique_ptr<Dataset> data = nullptr)
      : path(kSource / "models" / model),
        loaded(load_model(path)),
        dataset(std::move(data)),
        simulator(loaded.graph, model_file_hash(path), calibration()) {}

  CalibrationData calibration() const {
    CalibrationData c;
    if (!dataset) return c;
    c.dataset = dataset.get();
    c.indices.resize(256);
    std::iota(c.indices.begin(), c.indices.end(), 0);
    c.selection_id = "export test: first 256";
    return c;
  }

  ExportModel prepare(const QuantPlan& plan) { return prepare_export(simulator, plan, path); }
};

LayerQuant layer_quant(const std::string& weights, const std::string& activations) {
  LayerQuant q;
  q.weights = parse_quant_spec(weights);
  q.activations = parse_quant_spec(activations);
  return q;
}

std::string metadata(const onnx::ModelProto& m, const std::string& key) {
  for (const auto& e : m.metadata_props())
    if (e.key() == key) return e.value();
  return "";
}

std::int64_t default_opset(const onnx::ModelProto& m) {
  for (const auto& o : m.opset_import())
    if (o.domain().empty()) return o.version();
  return 0;
}

// Every quantized layer's DequantizeLinear gives the simulation's weights bit for bit.
void check_weights_equal_simulation(const onnx::ModelProto& m, const ExportModel& e) {
  for (const auto& l : e.layers) {
    if (l.quant.weights.format == FormatId::fp32) continue;
    const onnx::NodeProto* dq = find_node(m, l.layer.name + "/weight/DequantizeLinear");
    REQUIRE(dq != nullptr);
    const std::vector<float> weights = dequantize_linear(m, *dq);
    const auto simulated = l.simulated_weight.values<float>();
    REQUIRE(weights.size() == simulated.size());
    CHECK(std::memcmp(weights.data(), simulated.data(), simulated.size_bytes()) == 0);
    CHECK(find_node(m, l.layer.name)->input(1) == dq->output(0));
  }
}

}  // namespace

TEST_CASE("onnx-qdq W8A8: original nodes kept, QDQ where the simulation quantizes") {
  auto dataset = open_fashion_mnist_test();
  if (!dataset) {
    testing::skip(kFashionMnistMissing);
    return;
  }
  Fixture f("fmnist_mlp.onnx", std::move(dataset));
  QuantPlan plan = uniform_plan("W8A8", f.loaded.graph);
  plan.model_hash = model_file_hash(f.path);
  const ExportModel e = f.prepare(plan);
  REQUIRE(e.layers.size() == 3);
  const onnx::ModelProto m = parse_model(export_onnx_qdq(e));

  CHECK(default_opset(m) == 13);
  for (const auto& node : f.simulator.fp32_graph().nodes) CHECK(find_node(m, node.name));
  CHECK(metadata(m, "bitplan_version") == bitplan_version());
  CHECK(metadata(m, "bitplan_model_hash") == plan.model_hash);
  CHECK(metadata(m, "bitplan_plan").starts_with("bitplan_plan: 1"));
  CHECK(find_initializer(m, "net.1.weight") == nullptr);  // replaced by its codes

  check_weights_equal_simulation(m, e);
  const Graph simulated = f.simulator.build(plan, /*fuse=*/false);
  for (const auto& l : e.layers) {
    const onnx::NodeProto* dq = find_node(m, l.layer.name + "/weight/DequantizeLinear");
    CHECK(int_attribute(*dq, "axis", -1) == 0);  // Gemm transB: output channels first
    CHECK(find_initializer(m, dq->input(0))->data_type() == 3);  // INT8
    // The input's QuantizeLinear carries the FakeQuant node's scale and zero point.
    const onnx::NodeProto* q = find_node(m, l.layer.name + "/input_quant/QuantizeLinear");
    REQUIRE(q != nullptr);
    CHECK(q->input(0) == l.model_input);
    const Node& fake_quant =
        *std::find_if(simulated.nodes.begin(), simulated.nodes.end(),
                      [&](const Node& n) { return n.name == l.layer.name + "/input_quant"; });
    CHECK(values_of(*find_initializer(m, q->input(1)))[0] == fake_quant.attr_float("scale", 0));
    const onnx::TensorProto& zero_point = *find_initializer(m, q->input(2));
    CHECK(zero_point.data_type() == 2);  // UINT8
    CHECK(values_of(zero_point)[0] == fake_quant.attr_float("zero_point", -1));
    const onnx::NodeProto* dq_input = find_node(m, l.layer.name + "/input_quant/DequantizeLinear");
    CHECK(find_node(m, l.layer.name)->input(0) == dq_input->output(0));
  }

  SUBCASE("uint8 weights: the same values, offset by 128") {
    ExportModel offset = e;
    offset.uint8_weights = true;
    const onnx::ModelProto u = parse_model(export_onnx_qdq(offset));
    check_weights_equal_simulation(u, e);
    const onnx::NodeProto& dq = *find_node(u, "/net/net.1/Gemm/weight/DequantizeLinear");
    CHECK(find_initializer(u, dq.input(0))->data_type() == 2);  // UINT8
    CHECK(values_of(*find_initializer(u, dq.input(2)))[0] == 128);
  }
  SUBCASE("ort-overrides and json carry the same numbers") {
    const auto overrides = nlohmann::json::parse(export_ort_overrides(e));
    const ExportLayer& first = e.layers[0];
    const auto& weight = overrides.at("net.1.weight");
    CHECK(weight.size() == 256);
    CHECK(weight[0].at("quant_type") == "QInt8");
    CHECK(weight[0].at("axis") == 0);
    CHECK(weight[7].at("scale").get<float>() == first.weight_params.scale[7]);
    const auto& input = overrides.at(first.model_input)[0];
    CHECK(input.at("quant_type") == "QUInt8");
    CHECK(input.at("scale").get<float>() == first.input.scale);
    const auto dump = nlohmann::json::parse(export_json(e));
    CHECK(dump.at("layers")[0].at("weights").at("scale").size() == 256);
    CHECK(dump.at("layers")[0].at("activations").at("zero_point").get<float>() ==
          first.input.zero_point);
  }
}

TEST_CASE("onnx-qdq int4 block-wise weights: opset 21, packed INT4, blocked scales") {
  Fixture f("fmnist_mlp.onnx");
  const ExportModel e = f.prepare(uniform_plan("W4g16", f.loaded.graph));  // 784 = 49 x 16
  const onnx::ModelProto m = parse_model(export_onnx_qdq(e));
  CHECK(default_opset(m) == 21);
  CHECK(m.ir_version() == 10);
  check_weights_equal_simulation(m, e);
  const onnx::NodeProto& dq = *find_node(m, "/net/net.1/Gemm/weight/DequantizeLinear");
  CHECK(int_attribute(dq, "axis", -1) == 1);  // blocks run along K of W [N, K]
  CHECK(int_attribute(dq, "block_size", -1) == 16);
  const onnx::TensorProto& codes = *find_initializer(m, dq.input(0));
  CHECK(codes.data_type() == 22);  // INT4
  CHECK(codes.raw_data().size() == 256 * 784 / 2);
  const onnx::TensorProto& scale = *find_initializer(m, dq.input(1));
  CHECK(std::vector<std::int64_t>(scale.dims().begin(), scale.dims().end()) ==
        std::vector<std::int64_t>{256, 49});
}

TEST_CASE("onnx-qdq ViT at opset 21: ReduceMean axes become an input") {
  Fixture f("fmnist_vit.onnx");
  const ExportModel e = f.prepare(uniform_plan("W4A16", f.loaded.graph));
  const onnx::ModelProto m = parse_model(export_onnx_qdq(e));
  CHECK(default_opset(m) == 21);
  int reduce_means = 0;
  for (const auto& n : m.graph().node()) {
    if (n.op_type() != "ReduceMean") continue;
    ++reduce_means;
    CHECK(n.input_size() == 2);
    for (const auto& a : n.attribute()) CHECK(a.name() != "axes");
  }
  CHECK(reduce_means == 10);
  check_weights_equal_simulation(m, e);
  // fp16 inputs: a Cast to FLOAT16 and back in front of every layer.
  for (const auto& l : e.layers) {
    const onnx::NodeProto* cast = find_node(m, l.layer.name + "/input_quant/Cast");
    REQUIRE(cast != nullptr);
    CHECK(int_attribute(*cast, "to", 0) == 10);
  }
}

TEST_CASE("onnx-qdq: fp8, pow2, ternary and narrow grids are stored exactly") {
  auto dataset = open_fashion_mnist_test();
  if (!dataset) {
    testing::skip(kFashionMnistMissing);
    return;
  }
  Fixture f("fmnist_mlp.onnx", std::move(dataset));
  QuantPlan plan;
  plan.layers["/net/net.1/Gemm"] = layer_quant("fp8_e4m3/channel", "uint6/tensor/asym");
  plan.layers["/net/net.3/Gemm"] = layer_quant("pow2_4/channel", "fp8_e4m3/tensor");
  plan.layers["/net/net.5/Gemm"] = layer_quant("ternary/channel", "int8/tensor/sym");
  const ExportModel e = f.prepare(plan);
  const onnx::ModelProto m = parse_model(export_onnx_qdq(e));
  CHECK(default_opset(m) == 21);  // ternary codes are INT4
  check_weights_equal_simulation(m, e);
  const auto code_type = [&](const std::string& layer) {
    return find_initializer(m, find_node(m, layer + "/weight/DequantizeLinear")->input(0))
        ->data_type();
  };
  CHECK(code_type("/net/net.1/Gemm") == 17);  // FLOAT8E4M3FN
  CHECK(code_type("/net/net.3/Gemm") == 17);
  CHECK(code_type("/net/net.5/Gemm") == 22);  // INT4
  // uint6 in a uint8 container: a Clip to the 6-bit grid's range in front of the Quantize.
  const ExportLayer& first = e.layers[0];
  const onnx::NodeProto* clip = find_node(m, "/net/net.1/Gemm/input_quant/Clip");
  REQUIRE(clip != nullptr);
  CHECK(values_of(*find_initializer(m, clip->input(2)))[0] ==
        (63.f - first.input.zero_point) * first.input.scale);
  CHECK(find_node(m, "/net/net.5/Gemm/input_quant/Clip") == nullptr);  // int8: the whole type
}

TEST_CASE("onnx-qdq writes BatchNorm-folded layers folded, as the simulation quantized them") {
  // x [N, 1, 4, 4] -> Conv 'conv' (2 channels, 3x3, pad 1) -> BatchNormalization 'bn' -> y
  onnx::ModelProto model;
  model.set_ir_version(7);
  model.add_opset_import()->set_version(13);
  auto* g = model.mutable_graph();
  g->set_name("conv_bn");
  const auto add_float = [&](const std::string& name, std::vector<std::int64_t> dims,
                             std::vector<float> values) {
    auto* t = g->add_initializer();
    t->set_name(name);
    t->set_data_type(1);
    for (auto d : dims) t->add_dims(d);
    t->set_raw_data(std::string(reinterpret_cast<const char*>(values.data()), values.size() * 4));
  };
  std::vector<float> w(18);
  for (std::size_t i = 0; i < w.size(); ++i) w[i] = 0.1f * static_cast<float>(i) - 0.7f;
  add_float("w", {2, 1, 3, 3}, w);
  add_float("gamma", {2}, {1.5f, 0.5f});
  add_float("beta", {2}, {0.1f, -0.2f});
  add_float("mean", {2}, {0.3f, -0.1f});
  add_float("var", {2}, {2.0f, 0.25f});
  const auto value = [](onnx::ValueInfoProto* v, const std::string& name) {
    v->set_name(name);
    auto* t = v->mutable_type()->mutable_tensor_type();
    t->set_elem_type(1);
    t->mutable_shape()->add_dim()->set_dim_param("batch");
    for (int d : {0, 4, 4}) t->mutable_shape()->add_dim()->set_dim_value(d == 0 ? 1 : d);
  };
  value(g->add_input(), "x");
  value(g->add_output(), "y");
  g->mutable_output(0)
      ->mutable_type()
      ->mutable_tensor_type()
      ->mutable_shape()
      ->mutable_dim(1)
      ->set_dim_value(2);
  auto* conv = g->add_node();
  conv->set_name("conv");
  conv->set_op_type("Conv");
  for (const char* i : {"x", "w"}) conv->add_input(i);
  conv->add_output(std::string("conv_out"));
  auto* pads = conv->add_attribute();
  pads->set_name("pads");
  pads->set_type(onnx::AttributeProto::INTS);
  for (int i = 0; i < 4; ++i) pads->add_ints(1);
  auto* bn = g->add_node();
  bn->set_name("bn");
  bn->set_op_type("BatchNormalization");
  for (const char* i : {"conv_out", "gamma", "beta", "mean", "var"}) bn->add_input(i);
  bn->add_output(std::string("y"));
  const fs::path path = fs::temp_directory_path() / "bitplan_export_conv_bn.onnx";
  std::ofstream(path, std::ios::binary) << model.SerializeAsString();

  const LoadedModel loaded = load_model(path);
  QuantSimulator simulator(loaded.graph, model_file_hash(path), CalibrationData{});
  QuantPlan plan;
  plan.layers["conv"] = layer_quant("int4/channel/sym", "fp16");
  const ExportModel e = prepare_export(simulator, plan, path);
  REQUIRE(e.layers.size() == 1);
  CHECK(e.layers[0].folded_batchnorm == "bn");
  const onnx::ModelProto m = parse_model(export_onnx_qdq(e));
  CHECK(find_node(m, "bn") == nullptr);
  const onnx::NodeProto& exported_conv = *find_node(m, "conv");
  CHECK(exported_conv.output(0) == "y");
  CHECK(exported_conv.input(2) == "conv/bias_bnfolded");
  CHECK(find_initializer(m, "gamma") == nullptr);
  check_weights_equal_simulation(m, e);  // the codes are the folded weights' codes
  const std::vector<float> bias = values_of(*find_initializer(m, "conv/bias_bnfolded"));
  const auto folded = e.layers[0].folded_bias.values<float>();
  CHECK(std::equal(bias.begin(), bias.end(), folded.begin(), folded.end()));
}

TEST_CASE("specs a format cannot express are listed with the nearest spec; nothing is written") {
  Fixture f("fmnist_mlp.onnx");
  QuantPlan plan;
  plan.layers["/net/net.1/Gemm"] = layer_quant("kmeans4/channel", "fp32");
  plan.layers["/net/net.3/Gemm"] = layer_quant("fp4_e2m1/group32", "fp32");
  plan.layers["/net/net.5/Gemm"] = layer_quant("int8/channel/sym", "fp16");
  const ExportModel e = f.prepare(plan);

  const auto qdq = export_problems(e, ExportFormat::onnx_qdq);
  REQUIRE(qdq.size() == 2);
  CHECK(qdq[0].layer == "/net/net.1/Gemm");
  CHECK(qdq[0].tensor == "weights");
  CHECK(to_string(qdq[0].nearest) == "int4/channel/sym");
  CHECK(to_string(qdq[1].nearest) == "int4/group32/sym");
  CHECK(export_problems(e, ExportFormat::json).empty());

  // ONNX Runtime's quantizer: no codebooks, no block-wise weights, no fp16 inputs.
  const auto ort = export_problems(e, ExportFormat::ort_overrides);
  CHECK(ort.size() == 5);  // two weights, and all three layers' inputs
  const auto fp16_input = std::find_if(ort.begin(), ort.end(), [](const ExportProblem& p) {
    return p.layer == "/net/net.5/Gemm" && p.tensor == "activations";
  });
  REQUIRE(fp16_input != ort.end());
  CHECK(to_string(fp16_input->nearest) == "uint8/tensor/asym");

  const fs::path out = fs::temp_directory_path() / "bitplan_export_refused.onnx";
  fs::remove(out);
  CHECK_THROWS_WITH_AS(write_export(e, ExportFormat::onnx_qdq, out, false),
                       doctest::Contains("layer '/net/net.1/Gemm' weights kmeans4/channel"), Error);
  CHECK_FALSE(fs::exists(out));

  const QuantPlan nearest = nearest_expressible_plan(plan, qdq);
  CHECK(export_problems(f.prepare(nearest), ExportFormat::onnx_qdq).empty());
}

TEST_CASE("a per-token integer plan exports the simulated float weights, not the kernel's codes") {
  // The simulation computes W4g16A8t layers on the W4A8 kernel where the CPU has AVX2
  // (simulate.hpp); its graph then holds packed int8 codes in the layer's weight input, which
  // the export must not read as the layer's weights.
  Fixture f("fmnist_mlp.onnx");
  QuantPlan plan = uniform_plan("W4A8t", f.loaded.graph);
  for (auto& entry : plan.layers)  // K = 784: groups of 16
    entry.second.weights = parse_quant_spec("int4/group16/sym");
  const ExportModel e = f.prepare(plan);
  REQUIRE(e.layers.size() == 3);
  for (const ExportLayer& layer : e.layers) {
    CAPTURE(layer.layer.name);
    REQUIRE(layer.simulated_weight.dtype() == DType::f32);
    CHECK(layer.simulated_weight.dims() == layer.weight.dims());
    const Tensor& want = f.simulator.quantized_weight(layer.layer, layer.quant);
    CHECK(std::equal(want.data<float>(), want.data<float>() + want.numel(),
                     layer.simulated_weight.data<float>()));
    // int4 symmetric: codes are integers in [-7, 7].
    const float* codes = layer.weight_codes.data<float>();
    const bool on_grid = std::all_of(codes, codes + layer.weight_codes.numel(), [](float c) {
      return c == std::nearbyint(c) && c >= -7 && c <= 7;
    });
    CHECK(on_grid);
  }
}

TEST_CASE("per-token activations: not expressible; the nearest keeps the range source it can") {
  Fixture f("fmnist_mlp.onnx");
  QuantPlan plan = uniform_plan("W8A8t", f.loaded.graph);
  plan.layers.at("/net/net.5/Gemm").activations = parse_quant_spec("int8/token/sym");
  const ExportModel e = f.prepare(plan);

  // ONNX: DynamicQuantizeLinear is per tensor and uint8 asymmetric only.
  const auto qdq = export_problems(e, ExportFormat::onnx_qdq);
  REQUIRE(qdq.size() == 3);
  for (const auto& p : qdq) {
    CHECK(p.tensor == "activations");
    CHECK(p.why.find("no per-token") != std::string::npos);
  }
  CHECK(qdq[0].spec == "uint8/token/asym (dynamic)");
  CHECK(to_string(qdq[0].nearest) == "uint8/tensor/asym");
  CHECK(qdq[0].nearest_dynamic);
  CHECK(to_string(qdq[2].nearest) == "int8/tensor/sym");
  CHECK_FALSE(qdq[2].nearest_dynamic);
  const QuantPlan nearest = nearest_expressible_plan(plan, qdq);
  CHECK(nearest.layers.at("/net/net.1/Gemm").dynamic);
  CHECK_FALSE(nearest.layers.at("/net/net.5/Gemm").dynamic);
  // W8A8t's nearest is W8A8d, which the QDQ export writes with DynamicQuantizeLinear (no
  // calibration needed).
  const QuantPlan w8a8t = uniform_plan("W8A8t", f.loaded.graph);
  const QuantPlan w8a8d =
      nearest_expressible_plan(w8a8t, export_problems(f.prepare(w8a8t), ExportFormat::onnx_qdq));
  CHECK(w8a8d.layers == uniform_plan("W8A8d", f.loaded.graph).layers);
  CHECK(export_problems(f.prepare(w8a8d), ExportFormat::onnx_qdq).empty());

  // The static runtimes: the per-tensor spec with a calibrated range.
  for (const auto format : {ExportFormat::trt_precisions, ExportFormat::ort_overrides})
    for (const auto& p : export_problems(e, format))
      if (p.tensor == "activations") {
        CHECK(format_traits(p.nearest.format).has_scale());
        CHECK(p.nearest.granularity == Granularity::per_tensor);
        CHECK_FALSE(p.nearest_dynamic);
      }
  CHECK(export_problems(e, ExportFormat::json).empty());
}

TEST_CASE("write_export checks every output before writing") {
  Fixture f("fmnist_mlp.onnx");
  const ExportModel e = f.prepare(uniform_plan("W8", f.loaded.graph));
  const fs::path dir = fs::temp_directory_path() / "bitplan_export_write";
  fs::remove_all(dir);
  fs::create_directories(dir);

  std::ofstream(dir / "taken.onnx") << "old";
  CHECK_THROWS_WITH_AS(write_export(e, ExportFormat::onnx_qdq, dir / "taken.onnx", false),
                       doctest::Contains("exists; pass --force"), Error);
  write_export(e, ExportFormat::onnx_qdq, dir / "taken.onnx", true);
  CHECK(fs::file_size(dir / "taken.onnx") > 100000);

  CHECK_THROWS_WITH_AS(write_export(e, ExportFormat::json, dir / "no/such/out.json", false),
                       doctest::Contains("does not exist"), Error);
  // The precision list's QDQ model goes next to it, and both must be free.
  std::ofstream(dir / "trt.onnx") << "old";
  CHECK_THROWS_WITH_AS(write_export(e, ExportFormat::trt_precisions, dir / "trt.txt", false),
                       doctest::Contains("trt.onnx' exists"), Error);
  CHECK_FALSE(fs::exists(dir / "trt.txt"));

  for (const auto& entry : fs::directory_iterator(dir))
    CHECK(entry.path().filename().string().find(".tmp.") == std::string::npos);
  fs::remove_all(dir);
}

// Its own ctest entry (unit_export_unwritable_folder): as root it cannot run, and says so.
TEST_CASE("write_export refuses an unwritable folder") {
  Fixture f("fmnist_mlp.onnx");
  const ExportModel e = f.prepare(uniform_plan("W8", f.loaded.graph));
  const fs::path locked = fs::temp_directory_path() / "bitplan_export_locked";
  fs::remove_all(locked);
  fs::create_directories(locked);
  fs::permissions(locked, fs::perms::owner_read | fs::perms::owner_exec);
  if (::access(locked.c_str(), W_OK) == 0) {
    testing::skip("unwritable-folder check: running as root, which writes anywhere");
  } else {
    CHECK_THROWS_WITH_AS(write_export(e, ExportFormat::json, locked / "out.json", false),
                         doctest::Contains("is not writable"), Error);
  }
  fs::permissions(locked, fs::perms::owner_all);
  fs::remove_all(locked);
}

}  // namespace export_qdq_test
