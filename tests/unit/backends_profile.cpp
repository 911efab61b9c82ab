// Latency measurement and cost models: layer workloads (keys and MACs checked by hand),
// hardware profiles on disk (round trip and every kind of malformed file), the oneDNN CPU
// profiler on the smallest fixture, and the latency / size / BOPs cost models against
// hand-computed values and synthetic profiles. No timing thresholds: measured values are
// only checked for structure (present, finite, non-negative, counted).
#include <doctest/doctest.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <string>

#include "backends/cpu/onednn_profiler.hpp"
#include "backends/cuda/errors.hpp"
#include "backends/cuda/workloads.hpp"
#include "backends/device.hpp"
#include "backends/hw_profile.hpp"
#include "backends/workload.hpp"
#include "core/error.hpp"
#include "cost_models/cost_model.hpp"
#include "data/dataset.hpp"
#include "data/npy.hpp"
#include "executor/kernels/isa.hpp"
#include "executor/model.hpp"
#include "executor/plan.hpp"
#include "executor/quant/formats.hpp"
#include "executor/quant/simulate.hpp"
#include "tests/temp_dir.hpp"

namespace backends_profile_test {

using namespace bitplan;
namespace fs = std::filesystem;

namespace {

const fs::path kModels = fs::path(BITPLAN_SOURCE_DIR) / "models";

const LoadedModel& mlp() {
  static const LoadedModel model = load_model(kModels / "fmnist_mlp.onnx");
  return model;
}

const LoadedModel& vit() {
  static const LoadedModel model = load_model(kModels / "fmnist_vit.onnx");
  return model;
}

const LoadedModel& resnet() {
  static const LoadedModel model = load_model(kModels / "fmnist_resnet.onnx");
  return model;
}

std::vector<LayerWorkload> workloads_of(const Graph& graph, std::int64_t batch) {
  const ExecutionPlan plan(graph, PlanOptions{batch});
  return layer_workloads(graph, plan);
}

const LayerWorkload& by_layer(const std::vector<LayerWorkload>& ws, const std::string& layer) {
  for (const auto& w : ws)
    if (w.layer == layer) return w;
  FAIL("no workload for layer " << layer);
  return ws.front();  // unreachable
}

Tensor filled(Dims dims, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.f, 1.f);
  Tensor t(DType::f32, std::move(dims));
  for (std::int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = dist(rng);
  return t;
}

// One Conv layer with the given attributes on an input of [batch, c, h, w] (or [batch, c, w]).
Graph conv_graph(Dims input, Dims weight, Dims output, std::map<std::string, AttrValue> attrs) {
  Graph g;
  g.name = "conv";
  g.opset = 13;
  input[0] = -1;
  output[0] = -1;
  g.inputs.push_back({"x", DType::f32, input, {}});
  g.outputs.push_back({"y", DType::f32, output, {}});
  g.initializers["w"] = filled(weight, 1);
  Node conv{"the_conv", "Conv", "", {"x", "w"}, {"y"}, {}};
  conv.attrs = std::move(attrs);
  g.nodes.push_back(conv);
  return g;
}

// The message of the bitplan::Error `f` throws, and its kind.
template <typename F>
std::pair<ErrorKind, std::string> error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return {e.kind(), e.what()};
  }
  FAIL("expected a bitplan::Error");
  return {ErrorKind::internal, ""};
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& name)
      : path(fs::temp_directory_path() / (name + "_" + std::to_string(::getpid()))) {
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  fs::path write(const std::string& name, const std::string& text) const {
    std::ofstream(path / name) << text;
    return path / name;
  }
};

LayerQuant spec(const std::string& weights, const std::string& activations, bool dynamic = false) {
  LayerQuant q;
  q.weights = parse_quant_spec(weights);
  q.activations = parse_quant_spec(activations);
  q.dynamic = dynamic;
  return q;
}

}  // namespace

// --- Workloads -------------------------------------------------------------------------------

TEST_CASE("workloads of fmnist_resnet: keys and MACs by hand, batch scales N") {
  const Graph& g = resnet().graph;
  const auto b1 = workloads_of(g, 1);
  const auto b8 = workloads_of(g, 8);
  // 9 convolutions (stem, 3 x 2 block convs, 2 downsamples) and the classifier.
  REQUIRE(b1.size() == 10);
  REQUIRE(b8.size() == 10);
  CHECK(b1.front().layer == "/conv1/Conv");
  CHECK(b1.back().layer == "/fc/Gemm");

  // Stem: 1 -> 16 channels, 3x3, stride 1, pads 1 on every side, 28x28 -> 28x28.
  const LayerWorkload& stem = b1.front();
  CHECK(stem.op == "conv");
  CHECK(stem.key == "conv:n1:c1:h28:w28:k16:r3:s3:st1x1:p1x1x1x1:d1x1:g1");
  CHECK(stem.out_h == 28);
  CHECK(stem.out_w == 28);
  CHECK(stem.macs == 16 * 28 * 28 * 1 * 3 * 3);  // 112896
  CHECK(stem.input_elements == 1 * 28 * 28);
  CHECK(stem.output_elements == 16 * 28 * 28);
  CHECK(stem.weight_elements == 16 * 1 * 3 * 3);
  CHECK(b8.front().key == "conv:n8:c1:h28:w28:k16:r3:s3:st1x1:p1x1x1x1:d1x1:g1");
  CHECK(b8.front().macs == 8 * stem.macs);

  // A 1x1 stride-2 downsample: no padding, 28x28 -> 14x14.
  const LayerWorkload& down = by_layer(b1, "/layer2/downsample/downsample.0/Conv");
  CHECK(down.key == "conv:n1:c16:h28:w28:k32:r1:s1:st2x2:p0x0x0x0:d1x1:g1");
  CHECK(down.macs == 32 * 14 * 14 * 16);
  // A 3x3 stride-2 conv with pads 1.
  const LayerWorkload& l2c1 = by_layer(b1, "/layer2/conv1/Conv");
  CHECK(l2c1.key == "conv:n1:c16:h28:w28:k32:r3:s3:st2x2:p1x1x1x1:d1x1:g1");
  CHECK(l2c1.macs == 32 * 14 * 14 * 16 * 9);

  // Classifier: Y[1, 10] = X[1, 64] W; M holds the batch.
  const LayerWorkload& fc = b1.back();
  CHECK(fc.op == "gemm");
  CHECK(fc.key == "gemm:m1:n10:k64");
  CHECK(fc.m == 1);
  CHECK(fc.gemm_n == 10);
  CHECK(fc.gemm_k == 64);
  CHECK(fc.macs == 640);
  CHECK(fc.weight_elements == 640);
  CHECK(b8.back().key == "gemm:m8:n10:k64");
  CHECK(b8.back().m == 8);
  CHECK(b8.back().macs == 8 * 640);

  // Every layer: the same geometry at batch 8 except N / M, and 8x the MACs.
  std::int64_t total = 0;
  for (std::size_t i = 0; i < b1.size(); ++i) {
    CAPTURE(b1[i].layer);
    CHECK(b8[i].layer == b1[i].layer);
    CHECK(b8[i].macs == 8 * b1[i].macs);
    CHECK(b8[i].weight_elements == b1[i].weight_elements);
    CHECK(b8[i].output_elements == 8 * b1[i].output_elements);
    std::string k1 = b1[i].key, k8 = b8[i].key;
    const std::string tag = b1[i].op == "conv" ? "conv:n" : "gemm:m";
    CHECK(k1.rfind(tag + "1:", 0) == 0);
    CHECK(k8.rfind(tag + "8:", 0) == 0);
    CHECK(k1.substr(tag.size() + 1) == k8.substr(tag.size() + 1));
    total += b1[i].macs;
  }
  // bitplan inspect's total (9.35M MACs): every MAC of this model is in a quantizable layer.
  CHECK(total ==
        112896 + 2 * 1806336 + 100352 + 903168 + 1806336 + 100352 + 903168 + 1806336 + 640);
}

TEST_CASE("workloads of fmnist_mlp: three Gemms (transB), M = batch") {
  const Graph& g = mlp().graph;
  const auto b1 = workloads_of(g, 1);
  const auto b8 = workloads_of(g, 8);
  REQUIRE(b1.size() == 3);
  REQUIRE(b8.size() == 3);
  const std::vector<std::string> keys1{"gemm:m1:n256:k784", "gemm:m1:n128:k256",
                                       "gemm:m1:n10:k128"};
  const std::vector<std::string> keys8{"gemm:m8:n256:k784", "gemm:m8:n128:k256",
                                       "gemm:m8:n10:k128"};
  const std::vector<std::int64_t> macs1{784 * 256, 256 * 128, 128 * 10};
  for (std::size_t i = 0; i < 3; ++i) {
    CHECK(b1[i].key == keys1[i]);
    CHECK(b8[i].key == keys8[i]);
    CHECK(b1[i].macs == macs1[i]);
    CHECK(b8[i].macs == 8 * macs1[i]);
    CHECK(b1[i].input_elements == b1[i].gemm_k);
    CHECK(b8[i].input_elements == 8 * b8[i].gemm_k);
  }
  CHECK(b1[0].layer == "/net/net.1/Gemm");
  CHECK(b1[2].layer == "/net/net.5/Gemm");
}

TEST_CASE("conv workloads resolve auto_pad, explicit pads, dilation, groups and 1-D") {
  const Dims x{1, 3, 8, 8}, w{4, 3, 3, 3};
  SUBCASE("SAME_UPPER: the odd pixel at the end, same key as the explicit pads") {
    // out = ceil(8 / 2) = 4; total pad = (4 - 1) * 2 + 3 - 8 = 1 per dim.
    const Graph g = conv_graph(
        x, w, {1, 4, 4, 4},
        {{"auto_pad", std::string("SAME_UPPER")}, {"strides", std::vector<std::int64_t>{2, 2}}});
    const auto ws = workloads_of(g, 1);
    REQUIRE(ws.size() == 1);
    CHECK(ws[0].key == "conv:n1:c3:h8:w8:k4:r3:s3:st2x2:p0x0x1x1:d1x1:g1");
    CHECK(ws[0].out_h == 4);
    CHECK(ws[0].macs == 4 * 4 * 4 * 3 * 9);
    const Graph explicit_pads = conv_graph(x, w, {1, 4, 4, 4},
                                           {{"pads", std::vector<std::int64_t>{0, 0, 1, 1}},
                                            {"strides", std::vector<std::int64_t>{2, 2}}});
    CHECK(workloads_of(explicit_pads, 1)[0].key == ws[0].key);
  }
  SUBCASE("SAME_LOWER: the odd pixel at the beginning") {
    const Graph g = conv_graph(
        x, w, {1, 4, 4, 4},
        {{"auto_pad", std::string("SAME_LOWER")}, {"strides", std::vector<std::int64_t>{2, 2}}});
    CHECK(workloads_of(g, 1)[0].key == "conv:n1:c3:h8:w8:k4:r3:s3:st2x2:p1x1x0x0:d1x1:g1");
  }
  SUBCASE("SAME_UPPER with stride 1 pads evenly; VALID pads nothing") {
    const Graph same = conv_graph(x, w, {1, 4, 8, 8}, {{"auto_pad", std::string("SAME_UPPER")}});
    CHECK(workloads_of(same, 1)[0].key == "conv:n1:c3:h8:w8:k4:r3:s3:st1x1:p1x1x1x1:d1x1:g1");
    const Graph valid = conv_graph(x, w, {1, 4, 6, 6}, {{"auto_pad", std::string("VALID")}});
    const auto ws = workloads_of(valid, 2);
    CHECK(ws[0].key == "conv:n2:c3:h8:w8:k4:r3:s3:st1x1:p0x0x0x0:d1x1:g1");
    CHECK(ws[0].macs == 2 * 4 * 6 * 6 * 3 * 9);
  }
  SUBCASE("explicit asymmetric pads keep ONNX order [top, left, bottom, right]") {
    // out_h = (8 + 1 + 3 - 3) / 2 + 1 = 5, out_w = (8 + 2 + 4 - 3) / 2 + 1 = 6.
    const Graph g = conv_graph(x, w, {1, 4, 5, 6},
                               {{"pads", std::vector<std::int64_t>{1, 2, 3, 4}},
                                {"strides", std::vector<std::int64_t>{2, 2}}});
    const auto ws = workloads_of(g, 1);
    CHECK(ws[0].key == "conv:n1:c3:h8:w8:k4:r3:s3:st2x2:p1x2x3x4:d1x1:g1");
    CHECK(ws[0].out_h == 5);
    CHECK(ws[0].out_w == 6);
    CHECK(ws[0].macs == 4 * 5 * 6 * 3 * 9);
  }
  SUBCASE("dilation and SAME_UPPER use the dilated kernel") {
    // Dilated kernel 5: total pad = (8 - 1) * 1 + 5 - 8 = 4 -> 2 and 2.
    const Graph g = conv_graph(
        x, w, {1, 4, 8, 8},
        {{"auto_pad", std::string("SAME_UPPER")}, {"dilations", std::vector<std::int64_t>{2, 2}}});
    CHECK(workloads_of(g, 1)[0].key == "conv:n1:c3:h8:w8:k4:r3:s3:st1x1:p2x2x2x2:d2x2:g1");
  }
  SUBCASE("grouped (depthwise) conv: each output sums C/G inputs") {
    const Graph g =
        conv_graph(x, {6, 1, 3, 3}, {1, 6, 8, 8},
                   {{"pads", std::vector<std::int64_t>{1, 1, 1, 1}}, {"group", std::int64_t{3}}});
    const auto ws = workloads_of(g, 1);
    CHECK(ws[0].key == "conv:n1:c3:h8:w8:k6:r3:s3:st1x1:p1x1x1x1:d1x1:g3");
    CHECK(ws[0].macs == 6 * 8 * 8 * 1 * 9);
  }
  SUBCASE("1-D conv is described as 2-D with unit height") {
    const Graph g =
        conv_graph({1, 3, 10}, {4, 3, 3}, {1, 4, 10}, {{"pads", std::vector<std::int64_t>{1, 1}}});
    const auto ws = workloads_of(g, 1);
    REQUIRE(ws.size() == 1);
    CHECK(ws[0].key == "conv:n1:c3:h1:w10:k4:r1:s3:st1x1:p0x1x0x1:d1x1:g1");
    CHECK(ws[0].macs == 4 * 10 * 3 * 3);
  }
}

TEST_CASE("write_workloads_json: the document external profilers read") {
  const TempDir dir("bitplan_workloads_json");
  const auto ws = workloads_of(resnet().graph, 2);
  const ExecutionPlan plan(resnet().graph, PlanOptions{2});
  const auto ops = op_workloads(resnet().graph, plan);
  write_workloads_json(dir.path / "w.json", "fmnist_resnet.onnx", 2, {"fp32", "int8"}, ws, ops);
  std::ifstream in(dir.path / "w.json");
  const nlohmann::json doc = nlohmann::json::parse(in);
  CHECK(doc["bitplan_workloads"] == 1);
  CHECK(doc["model"] == "fmnist_resnet.onnx");
  CHECK(doc["batch"] == 2);
  CHECK(doc["precisions"] == nlohmann::json({"fp32", "int8"}));
  REQUIRE(doc["layers"].size() == ws.size());
  const auto& stem = doc["layers"][0];
  CHECK(stem["name"] == "/conv1/Conv");
  CHECK(stem["key"] == ws[0].key);
  CHECK(stem["n"] == 2);
  CHECK(stem["pad"] == nlohmann::json({1, 1, 1, 1}));
  CHECK(stem["stride"] == nlohmann::json({1, 1}));
  CHECK(stem["out_h"] == 28);
  const auto& fc = doc["layers"][ws.size() - 1];
  CHECK(fc["op"] == "gemm");
  CHECK(fc["m"] == 2);
  CHECK(fc["n"] == 10);
  CHECK(fc["k"] == 64);
  CHECK(fc["output_elements"] == 20);
  REQUIRE(doc["ops"].size() == ops.size());
  REQUIRE(!ops.empty());
  CHECK(doc["ops"][0]["name"] == ops[0].node);
  CHECK(doc["ops"][0]["key"] == ops[0].key);
  CHECK(doc["ops"][0]["layers_before"] == ops[0].layers_before);
}

// --- Hardware profiles on disk ----------------------------------------------------------------

TEST_CASE("hardware profile: save then load gives back every field") {
  const TempDir dir("bitplan_hw_profile_rt");
  HwProfile p;
  p.target = "cpu-test: \"quoted\" #1";
  p.backend = "onednn";
  p.device = {{"name", "Test CPU @ 2.0GHz"}, {"vnni", "no"}, {"threads", "2"}};
  p.libraries = {{"onednn", "2.6.3"}};
  p.timing = {{"warmup_runs", "3"}, {"clock", "steady_clock: around each step"}};
  p.ceilings = {{"gemm_fp32_gflops", 95.1, "GFLOP/s", "oneDNN matmul 1024^3, best of 1 s"},
                {"memory_bandwidth_gbs", 0.1, "GB/s", ""}};
  p.entries.push_back({"conv:n1:c1:h28:w28:k16:r3:s3:st1x1:p1x1x1x1:d1x1:g1", "fp32", 12.5, 0.3,
                       200, "oneDNN fp32 (bitplan executor)", ""});
  p.entries.push_back({"gemm:m1:n10:k64", "int8", 1.0 / 3.0, 0.0, 7, "", ""});
  p.entries.push_back(
      {"gemm:m1:n10:k64", "bf16", 0, 0, 0, "", "no kernel: needs AVX-512 (avx512_core)"});
  p.conversions.push_back({"fp32", "int8", 802816, 3.2, 0.1});
  p.models.push_back({"5f0cdeadbeef0123", "fmnist_resnet.onnx", 8, 40.2, 1.0, 512.0, ""});
  p.models.push_back({"00000000000000ff", "m.onnx", 1, 0.0, 0.0, 0.7, "input=1x28x28"});
  const fs::path file = dir.path / "p.yaml";
  save_hw_profile(file, p);
  const HwProfile q = load_hw_profile(file);

  CHECK(q.target == p.target);
  CHECK(q.backend == "onednn");
  CHECK(q.device == p.device);
  CHECK(q.libraries == p.libraries);
  CHECK(q.timing == p.timing);
  REQUIRE(q.ceilings.size() == 2);
  for (std::size_t i = 0; i < 2; ++i) {
    CHECK(q.ceilings[i].name == p.ceilings[i].name);
    CHECK(q.ceilings[i].value == p.ceilings[i].value);  // doubles survive exactly
    CHECK(q.ceilings[i].unit == p.ceilings[i].unit);
    CHECK(q.ceilings[i].how == p.ceilings[i].how);
  }
  REQUIRE(q.entries.size() == 3);
  for (std::size_t i = 0; i < 3; ++i) {
    CAPTURE(i);
    CHECK(q.entries[i].key == p.entries[i].key);
    CHECK(q.entries[i].precision == p.entries[i].precision);
    CHECK(q.entries[i].median_us == p.entries[i].median_us);
    CHECK(q.entries[i].iqr_us == p.entries[i].iqr_us);
    CHECK(q.entries[i].repeats == p.entries[i].repeats);
    CHECK(q.entries[i].implementation == p.entries[i].implementation);
    CHECK(q.entries[i].unsupported == p.entries[i].unsupported);
  }
  REQUIRE(q.conversions.size() == 1);
  CHECK(q.conversions[0].from == "fp32");
  CHECK(q.conversions[0].to == "int8");
  CHECK(q.conversions[0].elements == 802816);
  CHECK(q.conversions[0].median_us == 3.2);
  CHECK(q.conversions[0].iqr_us == 0.1);
  REQUIRE(q.models.size() == 2);
  for (std::size_t i = 0; i < 2; ++i) {
    CHECK(q.models[i].model_hash == p.models[i].model_hash);
    CHECK(q.models[i].model == p.models[i].model);
    CHECK(q.models[i].batch == p.models[i].batch);
    CHECK(q.models[i].other_us == p.models[i].other_us);
    CHECK(q.models[i].other_iqr_us == p.models[i].other_iqr_us);
    CHECK(q.models[i].total_fp32_us == p.models[i].total_fp32_us);
    CHECK(q.models[i].inputs == p.models[i].inputs);
  }
  // Lookups on the loaded profile.
  REQUIRE(q.find("gemm:m1:n10:k64", "bf16") != nullptr);
  CHECK(!q.find("gemm:m1:n10:k64", "bf16")->unsupported.empty());
  CHECK(q.find("gemm:m1:n10:k64", "fp16") == nullptr);
  REQUIRE(q.find_model("5f0cdeadbeef0123", 8, "") != nullptr);
  CHECK(q.find_model("5f0cdeadbeef0123", 1, "") == nullptr);
  CHECK(q.find_ceiling("memory_bandwidth_gbs")->value == 0.1);
  CHECK(q.find_ceiling("nope") == nullptr);

  // Saving what was loaded writes the same text.
  save_hw_profile(dir.path / "again.yaml", q);
  std::ifstream a(file), b(dir.path / "again.yaml");
  const std::string ta((std::istreambuf_iterator<char>(a)), {});
  const std::string tb((std::istreambuf_iterator<char>(b)), {});
  CHECK(ta == tb);
}

TEST_CASE("hardware profile: put replaces the same key/precision and model/batch") {
  HwProfile p;
  p.put(ProfileEntry{"k", "fp32", 1, 0, 3, "", ""});
  p.put(ProfileEntry{"k", "int8", 2, 0, 3, "", ""});
  p.put(ProfileEntry{"k", "fp32", 5, 0, 9, "", ""});
  REQUIRE(p.entries.size() == 2);
  CHECK(p.find("k", "fp32")->median_us == 5);
  CHECK(p.find("k", "fp32")->repeats == 9);
  p.put(ModelOverhead{"h", "m", 1, 1, 0, 2, ""});
  p.put(ModelOverhead{"h", "m", 8, 1, 0, 2, ""});
  p.put(ModelOverhead{"h", "m", 1, 7, 0, 2, ""});
  // Another input shape (a token model at another sequence) is another entry.
  p.put(ModelOverhead{"h", "m", 1, 3, 0, 2, "input_ids=1"});
  REQUIRE(p.models.size() == 3);
  CHECK(p.find_model("h", 1, "")->other_us == 7);
  CHECK(p.find_model("h", 1, "input_ids=1")->other_us == 3);
  CHECK(p.find_model("h", 1, "input_ids=128") == nullptr);
}

TEST_CASE("hardware profile: malformed files fail with the file, line and rule") {
  const TempDir dir("bitplan_hw_profile_bad");
  const std::string head = "bitplan_hw_profile: 1\ntarget: t\nbackend: onednn\n";
  auto load_error = [&](const std::string& name, const std::string& text) {
    const fs::path file = dir.write(name, text);
    const auto [kind, message] = error_of([&] { load_hw_profile(file); });
    CHECK(kind == ErrorKind::invalid_input);
    CHECK(contains(message, file.string()));
    return message;
  };
  SUBCASE("YAML syntax error") {
    const std::string m = load_error("syntax.yaml", head + "entries: [{key: k\n");
    CHECK(contains(m, "line "));
    CHECK(contains(m, "YAML syntax error"));
  }
  SUBCASE("another schema version") {
    const std::string m = load_error("v2.yaml", "bitplan_hw_profile: 2\ntarget: t\n");
    CHECK(contains(m, "line 1, column 21"));
    CHECK(contains(m, "schema version 2"));
  }
  SUBCASE("not a profile at all") {
    CHECK(contains(load_error("other.yaml", "model: x.onnx\n"), "bitplan_hw_profile"));
    CHECK(contains(load_error("list.yaml", "- 1\n- 2\n"), "bitplan_hw_profile"));
  }
  SUBCASE("missing top-level field") {
    const std::string m = load_error("nobackend.yaml", "bitplan_hw_profile: 1\ntarget: t\n");
    CHECK(contains(m, "missing field 'backend'"));
    CHECK(contains(m, "line 1"));
  }
  SUBCASE("unknown backend") {
    const std::string m =
        load_error("backend.yaml", "bitplan_hw_profile: 1\ntarget: t\nbackend: tpu\n");
    CHECK(contains(m, "line 3, column 10"));
    CHECK(contains(m, "'tpu'"));
  }
  SUBCASE("entry without its precision") {
    const std::string m = load_error(
        "noprec.yaml", head +
                           "entries:\n  - {key: gemm:m1:n10:k64, precision: fp32, median_us: 1}\n"
                           "  - {key: gemm:m1:n10:k64, median_us: 3}\n");
    CHECK(contains(m, "line 6, column 5"));
    CHECK(contains(m, "missing field 'precision'"));
  }
  SUBCASE("a measured entry needs its median") {
    const std::string m = load_error(
        "nomedian.yaml", head + "entries:\n  - {key: gemm:m1:n10:k64, precision: fp32}\n");
    CHECK(contains(m, "line 5"));
    CHECK(contains(m, "missing field 'median_us'"));
  }
  SUBCASE("negative median") {
    const std::string m = load_error(
        "negative.yaml",
        head + "entries:\n  - {key: gemm:m1:n10:k64, precision: fp32, median_us: -2.5}\n");
    CHECK(contains(m, "line 5, column 56"));
    CHECK(contains(m, "median_us must be a finite number >= 0, got -2.5"));
    const std::string c = load_error(
        "negconv.yaml",
        head + "conversions:\n  - {from: fp32, to: int8, elements: 10, median_us: -1}\n");
    CHECK(contains(c, "line 5"));
    CHECK(contains(c, "median_us"));
  }
  SUBCASE("wrong types") {
    const std::string m = load_error(
        "type.yaml",
        head + "entries:\n  - {key: gemm:m1:n10:k64, precision: fp32, median_us: fast}\n");
    CHECK(contains(m, "line 5"));
    CHECK(contains(m, "'median_us' has the wrong type"));
    CHECK(contains(load_error("entries.yaml", head + "entries: 3\n"), "'entries' must be a list"));
    CHECK(contains(load_error("device.yaml", head + "device: [a, b]\n"), "line 4"));
  }
  SUBCASE("an unsupported entry needs no median") {
    const fs::path file = dir.write(
        "ok.yaml",
        head + "entries:\n  - {key: gemm:m1:n10:k64, precision: bf16, unsupported: why}\n");
    const HwProfile p = load_hw_profile(file);
    REQUIRE(p.entries.size() == 1);
    CHECK(p.entries[0].unsupported == "why");
  }
  SUBCASE("a missing file names the file") {
    const auto [kind, message] = error_of([&] { load_hw_profile(dir.path / "absent.yaml"); });
    CHECK(kind == ErrorKind::invalid_input);
    CHECK(contains(message, "absent.yaml"));
  }
}

TEST_CASE("median_and_iqr: type-7 quantiles, exact values") {
  std::vector<double> empty;
  CHECK(median_and_iqr(empty).median == 0);
  CHECK(median_and_iqr(empty).iqr == 0);
  std::vector<double> one{5};
  CHECK(median_and_iqr(one).median == 5);
  CHECK(median_and_iqr(one).iqr == 0);
  std::vector<double> four{4, 1, 3, 2};  // q25 = 1.75, q50 = 2.5, q75 = 3.25
  const Spread s4 = median_and_iqr(four);
  CHECK(s4.median == 2.5);
  CHECK(s4.iqr == 1.5);
  CHECK(four == std::vector<double>{1, 2, 3, 4});  // sorted in place
  std::vector<double> five{9, 1, 5, 3, 7};         // q25 = 3, q75 = 7
  const Spread s5 = median_and_iqr(five);
  CHECK(s5.median == 5);
  CHECK(s5.iqr == 4);
  std::vector<double> two{10, 2};  // q25 = 4, q50 = 6, q75 = 8
  const Spread s2 = median_and_iqr(two);
  CHECK(s2.median == 6);
  CHECK(s2.iqr == 4);
  std::vector<double> ties{3, 3, 3, 3, 100};  // an outlier moves neither
  const Spread st = median_and_iqr(ties);
  CHECK(st.median == 3);
  CHECK(st.iqr == 0);
}

// --- The oneDNN CPU profiler -------------------------------------------------------------------

TEST_CASE("profile_model_onednn on fmnist_mlp: every key, every precision, then nothing new") {
  const Graph& g = mlp().graph;
  const std::string hash = model_file_hash(kModels / "fmnist_mlp.onnx");
  CpuProfileOptions options;
  options.min_repeats = 3;
  options.warmup_runs = 1;
  options.budget_seconds = 0.05;
  HwProfile profile;
  profile.target = "test";
  describe_cpu_target(profile, options);
  CHECK(profile.backend == "onednn");
  CHECK(profile.device.count("name"));
  CHECK(profile.timing.at("min_repeats") == "3");
  std::vector<std::string> progress;
  profile_model_onednn(g, "fmnist_mlp.onnx", hash, options, profile,
                       [&](const std::string& s) { progress.push_back(s); });
  CHECK(!progress.empty());

  const auto ws = workloads_of(g, 1);
  REQUIRE(ws.size() == 3);
  // fp32, int8 (between float layers), int8_chained (between int8 layers), bf16, w4a32, w4a8,
  // w3a8, w2a8, w8a8 per key
  CHECK(profile.entries.size() == 9 * ws.size());
  const bool bf16_isa =
      contains(query_cpu().onednn_isa, "avx512") || contains(query_cpu().onednn_isa, "amx");
  for (const auto& w : ws) {
    CAPTURE(w.key);
    const ProfileEntry* fp32 = profile.find(w.key, "fp32");
    REQUIRE(fp32 != nullptr);
    CHECK(fp32->unsupported.empty());
    CHECK(std::isfinite(fp32->median_us));
    CHECK(fp32->median_us > 0);
    CHECK(fp32->iqr_us >= 0);
    CHECK(fp32->repeats >= options.min_repeats);
    CHECK(!fp32->implementation.empty());
    const ProfileEntry* int8 = profile.find(w.key, "int8");
    REQUIRE(int8 != nullptr);
    if (int8->unsupported.empty()) {
      CHECK(int8->median_us > 0);
      CHECK(int8->repeats >= options.min_repeats);
      CHECK(contains(int8->implementation, "s8"));
      // Chaining saves the input quantization and the output reorder, never adds time.
      const ProfileEntry* chained = profile.find(w.key, "int8_chained");
      REQUIRE(chained != nullptr);
      CHECK(chained->median_us > 0);
      CHECK(chained->median_us <= int8->median_us);
    }
    const ProfileEntry* bf16 = profile.find(w.key, "bf16");
    REQUIRE(bf16 != nullptr);
    CHECK(!bf16->unsupported.empty());  // no bf16 execution path on the CPU executor
    if (!bf16_isa) CHECK(contains(bf16->unsupported, "AVX-512"));
    // The MLP's Gemms run on the W4A32 kernel wherever oneDNN's ISA is AVX2 or wider.
    const ProfileEntry* w4 = profile.find(w.key, "w4a32");
    REQUIRE(w4 != nullptr);
    if (contains(query_cpu().onednn_isa, "avx2") || contains(query_cpu().onednn_isa, "avx512")) {
      CHECK(w4->unsupported.empty());
      CHECK(w4->median_us > 0);
      CHECK(contains(w4->implementation, "W4A32"));
    }
    // And on the W4A8 kernel under W4A8t.
    const ProfileEntry* w4a8 = profile.find(w.key, "w4a8");
    REQUIRE(w4a8 != nullptr);
    if (contains(query_cpu().onednn_isa, "avx2") || contains(query_cpu().onednn_isa, "avx512")) {
      CHECK(w4a8->unsupported.empty());
      CHECK(w4a8->median_us > 0);
      CHECK(contains(w4a8->implementation, "W4A8"));
    }
    // And on the W3A8 kernel under W3A8t.
    const ProfileEntry* w3a8 = profile.find(w.key, "w3a8");
    REQUIRE(w3a8 != nullptr);
    if (contains(query_cpu().onednn_isa, "avx2") || contains(query_cpu().onednn_isa, "avx512")) {
      CHECK(w3a8->unsupported.empty());
      CHECK(w3a8->median_us > 0);
      CHECK(contains(w3a8->implementation, "W3A8"));
    }
    // And on the W2A8 kernel under W2A8t.
    const ProfileEntry* w2a8 = profile.find(w.key, "w2a8");
    REQUIRE(w2a8 != nullptr);
    if (contains(query_cpu().onednn_isa, "avx2") || contains(query_cpu().onednn_isa, "avx512")) {
      CHECK(w2a8->unsupported.empty());
      CHECK(w2a8->median_us > 0);
      CHECK(contains(w2a8->implementation, "W2A8"));
    }
    // And on the W8A8 kernel under W8A8t where oneDNN's ISA has VNNI; else unsupported, why.
    const ProfileEntry* w8a8 = profile.find(w.key, "w8a8");
    REQUIRE(w8a8 != nullptr);
    if (kernels::isa_of_onednn(query_cpu().onednn_isa) == kernels::Isa::avx512_vnni) {
      CHECK(w8a8->unsupported.empty());
      CHECK(w8a8->median_us > 0);
      CHECK(contains(w8a8->implementation, "W8A8"));
    } else {
      CHECK(contains(w8a8->unsupported, "no AVX-512 VNNI"));
    }
  }
  const ModelOverhead* overhead = profile.find_model(hash, 1, "input=1x28x28");
  REQUIRE(overhead != nullptr);
  CHECK(overhead->inputs == input_dims_text(g));
  CHECK(overhead->model == "fmnist_mlp.onnx");
  CHECK(overhead->other_us >= 0);  // Flatten is a view: possibly nothing outside the layers
  CHECK(overhead->total_fp32_us > 0);
  CHECK(profile.models.size() == 1);

  // Complete for this model and batch: a second call measures nothing and changes nothing.
  const HwProfile before = profile;
  progress.clear();
  profile_model_onednn(g, "fmnist_mlp.onnx", hash, options, profile,
                       [&](const std::string& s) { progress.push_back(s); });
  CHECK(progress.empty());
  REQUIRE(profile.entries.size() == before.entries.size());
  for (std::size_t i = 0; i < before.entries.size(); ++i) {
    CHECK(profile.entries[i].key == before.entries[i].key);
    CHECK(profile.entries[i].precision == before.entries[i].precision);
    CHECK(profile.entries[i].median_us == before.entries[i].median_us);
    CHECK(profile.entries[i].repeats == before.entries[i].repeats);
  }
  REQUIRE(profile.models.size() == 1);
  CHECK(profile.models[0].total_fp32_us == before.models[0].total_fp32_us);

  // remeasure: times again, replacing the entries in place (no duplicates).
  options.remeasure = true;
  options.precisions = {"fp32"};
  profile_model_onednn(g, "fmnist_mlp.onnx", hash, options, profile);
  CHECK(profile.entries.size() == before.entries.size());
  CHECK(profile.models.size() == 1);

  // Another batch adds its own keys and overhead.
  options.remeasure = false;
  options.batches = {2};
  profile_model_onednn(g, "fmnist_mlp.onnx", hash, options, profile);
  CHECK(profile.entries.size() == before.entries.size() + ws.size());
  CHECK(profile.find("gemm:m2:n256:k784", "fp32") != nullptr);
  CHECK(profile.find_model(hash, 2, input_dims_text(g)) != nullptr);

  // Unknown precisions are refused before anything is timed.
  options.precisions = {"fp32", "fp8"};
  const auto [kind, message] =
      error_of([&] { profile_model_onednn(g, "m", hash, options, profile); });
  CHECK(kind == ErrorKind::invalid_input);
  CHECK(contains(message, "'fp8'"));
}

TEST_CASE("measure_plan_onednn times whole runs of fp32 and int8 plans") {
  const Graph& g = mlp().graph;
  const std::string hash = model_file_hash(kModels / "fmnist_mlp.onnx");
  CpuProfileOptions options;
  options.min_repeats = 3;
  options.warmup_runs = 1;
  options.budget_seconds = 0.02;
  const Spread fp32 = measure_plan_onednn(g, hash, QuantPlan{}, 1, options);
  CHECK(fp32.median > 0);
  CHECK(fp32.iqr >= 0);
  const Spread int8 = measure_plan_onednn(g, hash, uniform_plan("W7A8", g), 2, options);
  CHECK(int8.median > 0);
  CHECK(std::isfinite(int8.iqr));
}

// Token ids and masks (or any second input) have no valid random samples: quantized plans of
// such a model are timed on the run's calibration selection, and refused with the reason
// without one (a search of the zoo MiniLM failed at its final measurement before).
TEST_CASE("quantized plans of a two-input model are timed on the calibration selection") {
  Graph g;
  g.name = "two_inputs";
  g.opset = 13;
  g.inputs.push_back({"x", DType::f32, {-1, 32}, {}});
  g.inputs.push_back({"y", DType::f32, {-1, 32}, {}});
  g.outputs.push_back({"z", DType::f32, {-1, 16}, {}});
  g.initializers["w"] = filled({32, 16}, 3);
  g.nodes.push_back(Node{"sum", "Add", "", {"x", "y"}, {"s"}, {}});
  g.nodes.push_back(Node{"proj", "MatMul", "", {"s", "w"}, {"z"}, {}});
  const std::string hash = "two-input-test";
  CpuProfileOptions options;
  options.precisions = {"fp32", "int8"};
  options.min_repeats = 3;
  options.warmup_runs = 1;
  options.budget_seconds = 0.02;

  HwProfile without;
  profile_model_onednn(g, "two_inputs.onnx", hash, options, without);
  const std::string key = workloads_of(g, 1).at(0).key;
  REQUIRE(without.find(key, "int8") != nullptr);
  CHECK(contains(without.find(key, "int8")->unsupported, "(x, y) is not one float tensor"));
  const auto [kind, message] =
      error_of([&] { measure_plan_onednn(g, hash, uniform_plan("W7A8", g), 1, options); });
  CHECK(kind == ErrorKind::unsupported);
  CHECK(contains(message, "calibration"));

  test::TempDir dir;
  write_npy(dir / "x.npy", filled({8, 32}, 4));
  write_npy(dir / "y.npy", filled({8, 32}, 5));
  DatasetConfig config;
  config.format = "npy";
  config.inputs = {{"x", dir / "x.npy"}, {"y", dir / "y.npy"}};
  const auto dataset = open_dataset(config);
  CalibrationData calibration;
  calibration.dataset = dataset.get();
  calibration.indices = {0, 1, 2, 3, 4, 5, 6, 7};
  calibration.selection_id = "two-input-test-8";
  calibration.batch = 4;
  options.calibration = &calibration;
  HwProfile with;
  profile_model_onednn(g, "two_inputs.onnx", hash, options, with);
  const ProfileEntry* int8 = with.find(key, "int8");
  REQUIRE(int8 != nullptr);
  // Measured, or declined by the kernel list for this CPU - never for want of samples.
  CHECK_FALSE(contains(int8->unsupported, "not one float tensor"));
  CHECK(measure_plan_onednn(g, hash, uniform_plan("W7A8", g), 2, options).median > 0);
}

TEST_CASE("measure_cpu_ceilings: GEMM rates and memory bandwidth, named with units") {
  HwProfile p;
  p.ceilings.push_back({"stale", 1, "", ""});
  measure_cpu_ceilings(p);
  REQUIRE(p.ceilings.size() == 3);  // replaces what was there
  const std::map<std::string, std::string> units{{"gemm_fp32_gflops", "GFLOP/s"},
                                                 {"gemm_int8_gops", "GOP/s"},
                                                 {"memory_bandwidth_gbs", "GB/s"}};
  for (const auto& [name, unit] : units) {
    const Ceiling* c = p.find_ceiling(name);
    REQUIRE(c != nullptr);
    CHECK(c->unit == unit);
    CHECK(std::isfinite(c->value));
    CHECK(c->value > 0);
    CHECK(!c->how.empty());
  }
}

// --- Cost models --------------------------------------------------------------------------------

TEST_CASE("kernel lists: which kernel runs a spec on each backend, and why not") {
  const KernelLayer conv{"conv", "Conv"};
  const KernelTarget vnni{"onednn", CpuCapabilities::of_onednn_isa("avx512_core_vnni")};
  const KernelTarget avx2{"onednn", CpuCapabilities::of_onednn_isa("avx2")};
  const KernelTarget cuda{"cuda", {}};
  auto precision = [&](const LayerQuant& q, const KernelTarget& t) {
    return choose_kernel(q, conv, t).precision();
  };
  const LayerQuant fp32{};
  CHECK(precision(fp32, vnni) == "fp32");
  CHECK(precision(fp32, cuda) == "fp32");
  const LayerQuant w8a8 = spec("int8/channel/sym", "uint8/tensor/asym");
  CHECK(precision(w8a8, vnni) == "int8");
  CHECK(choose_kernel(w8a8, conv, vnni).kernel->name == "onednn_int8");
  CHECK(choose_kernel(w8a8, conv, vnni).why_not.empty());
  CHECK(precision(w8a8, cuda) == "int8");
  // Without VNNI oneDNN halves 8-bit weights: only <= 7-bit weights run exactly there.
  CHECK(precision(w8a8, avx2).empty());
  CHECK(contains(choose_kernel(w8a8, conv, avx2).why_not, "no VNNI (oneDNN ISA avx2)"));
  CHECK(precision(spec("int7/channel/sym", "uint8/tensor/asym"), avx2) == "int8");
  CHECK(precision(spec("int4/channel/sym", "uint8/tensor/asym"), vnni) == "int8");
  // Weight-only: decompressed at load, the float kernel runs.
  CHECK(precision(spec("int4/group128/sym", "fp32"), vnni) == "fp32");

  const LayerQuant w4g128a16 = spec("int4/group128/sym", "fp16");
  const KernelChoice cpu = choose_kernel(w4g128a16, conv, vnni);
  CHECK(cpu.kernel == nullptr);
  CHECK(contains(cpu.why_not, "no oneDNN CPU kernel"));
  CHECK(contains(cpu.why_not, "int4/group128/sym"));
  CHECK(precision(w4g128a16, cuda) == "w4a16");
  // The CUDA kernel scales 128-k chunks: smaller groups have no kernel there, and say why.
  const KernelChoice w4g32 = choose_kernel(spec("int4/group32/sym", "fp16"), conv, cuda);
  CHECK(w4g32.kernel == nullptr);
  CHECK(w4g32.why_not.find("group 128") != std::string::npos);
  CHECK(precision(spec("int4/channel/sym", "fp16"), cuda) == "w4a16");
  // 8-bit weights pass the int4 kernel over (it says why) to the int8 weight-only kernel.
  const KernelChoice w8 = choose_kernel(spec("int8/channel/sym", "fp16"), conv, cuda);
  REQUIRE(w8.kernel != nullptr);
  CHECK(std::string(w8.kernel->name) == "cuda_w8a16");
  CHECK(contains(w8.passed_over, "<= 4 bits"));
  CHECK(precision(spec("int8/group128/sym", "fp16"), cuda) == "w8a16");
  const KernelChoice w8g32 = choose_kernel(spec("int8/group32/sym", "fp16"), conv, cuda);
  CHECK(w8g32.kernel == nullptr);
  CHECK(contains(w8g32.why_not, "the w8a16 kernel takes one scale per 128 weights"));
  CHECK(
      contains(choose_kernel(spec("int8/channel/asym", "fp16"), conv, cuda).why_not, "<= 8 bits"));

  CHECK(precision(spec("fp16", "fp16"), cuda) == "fp16");
  CHECK(precision(spec("fp32", "fp16"), cuda) == "fp16");
  CHECK(precision(spec("bf16", "bf16"), cuda) == "bf16");
  CHECK(precision(spec("fp16", "fp16"), vnni).empty());
  CHECK(precision(spec("fp8_e4m3/tensor", "fp8_e4m3/tensor"), cuda) == "fp8_e4m3");
  // bf16 on the CPU: oneDNN's bf16 convolution, where the CPU has AVX-512.
  CHECK(precision(spec("bf16", "bf16"), vnni) == "bf16");
  CHECK(contains(choose_kernel(spec("bf16", "bf16"), conv, avx2).why_not, "AVX-512"));
  CHECK(contains(choose_kernel(spec("bf16", "bf16"), KernelLayer{"fc", "Gemm"}, vnni).why_not,
                 "this Gemm has none"));

  const KernelChoice dynamic =
      choose_kernel(spec("int8/channel/sym", "uint8/tensor/asym", true), conv, vnni);
  CHECK(dynamic.kernel == nullptr);
  CHECK(contains(dynamic.why_not, "dynamic"));
  // Per-token dynamic ranges cost what dynamic per-tensor ranges cost on both backends.
  const LayerQuant per_token = spec("int8/channel/sym", "uint8/token/asym", true);
  CHECK(precision(per_token, vnni).empty());
  CHECK(contains(choose_kernel(per_token, conv, vnni).why_not, "per-token"));
  CHECK(precision(per_token, cuda) ==
        precision(spec("int8/channel/sym", "uint8/tensor/asym", true), cuda));
  // Per-group and asymmetric weights have no int8 kernel on either backend.
  CHECK(precision(spec("int8/group32/sym", "uint8/tensor/asym"), vnni).empty());
  CHECK(precision(spec("int8/group32/sym", "uint8/tensor/asym"), cuda).empty());
  CHECK(precision(spec("int8/channel/asym", "uint8/tensor/asym"), vnni).empty());
  // Layer facts: ConvTranspose and non-default Gemms have no integer kernel.
  CHECK(choose_kernel(w8a8, KernelLayer{"up", "ConvTranspose"}, vnni).kernel == nullptr);
  KernelLayer transposed{"fc", "Gemm"};
  transposed.gemm_default_attributes = false;
  CHECK(contains(choose_kernel(w8a8, transposed, vnni).why_not, "transA"));

  const auto [kind, message] = error_of([&] { choose_kernel(w8a8, conv, {"tpu", {}}); });
  CHECK(kind == ErrorKind::invalid_input);
  CHECK(contains(message, "'tpu'"));
}

TEST_CASE("CPU capabilities follow oneDNN's ISA; profiles carry theirs") {
  CHECK(!CpuCapabilities::of_onednn_isa("avx2").vnni);
  CHECK(CpuCapabilities::of_onednn_isa("avx2_vnni").vnni);
  CHECK(!CpuCapabilities::of_onednn_isa("avx2_vnni").avx512);
  CHECK(CpuCapabilities::of_onednn_isa("avx512_core_amx").amx);
  CHECK(CpuCapabilities::of_onednn_isa("avx512_core").bf16);
  CHECK(!CpuCapabilities::of_onednn_isa("avx512_core").vnni);
  HwProfile p;
  p.backend = "onednn";
  p.device["onednn_isa"] = "avx512_core_vnni";
  CHECK(kernel_target(p).cpu.vnni);
  p.device["vnni"] = "no";  // an explicit vnni record wins over the ISA name
  CHECK(!kernel_target(p).cpu.vnni);
  // The host: the same facts as its oneDNN ISA (bf16 is asked of primitive creation).
  const CpuDevice& host = query_cpu();
  CHECK(host.capabilities.onednn_isa == host.onednn_isa);
  CHECK(host.capabilities.vnni == CpuCapabilities::of_onednn_isa(host.onednn_isa).vnni);
  // ONEDNN_MAX_CPU_ISA caps the ISA (ctest unit_backends_avx2 sets AVX2): no VNNI, no bf16.
  if (const char* cap = std::getenv("ONEDNN_MAX_CPU_ISA"); cap && std::string(cap) == "AVX2") {
    CHECK(host.onednn_isa == "avx2");
    CHECK(!host.capabilities.vnni);
    CHECK(!host.capabilities.bf16);
    const LayerQuant w8a8 = spec("int8/channel/sym", "uint8/tensor/asym");
    CHECK(contains(choose_kernel(w8a8, KernelLayer{"conv", "Conv"}, KernelTarget::host()).why_not,
                   "no VNNI"));
  }
}

TEST_CASE("CostContext of fmnist_mlp: layers, workloads, weights and the float rest") {
  const Graph& g = mlp().graph;
  const CostContext c = CostContext::build(g, "hash", 4);
  CHECK(c.model_hash == "hash");
  CHECK(c.batch == 4);
  REQUIRE(c.layers.size() == 3);
  REQUIRE(c.workloads.size() == 3);
  REQUIRE(c.weight_dims.size() == 3);
  CHECK(c.workloads[0].key == "gemm:m4:n256:k784");
  CHECK(c.weight_dims[0] == Dims{256, 784});
  CHECK(c.weight_dims[2] == Dims{10, 128});
  for (std::size_t i = 0; i < 3; ++i) CHECK(c.workloads[i].layer == c.layers[i].name);
  CHECK(c.float_bytes_outside == (256 + 128 + 10) * 4);  // the biases
}

TEST_CASE("size model: exact bytes of codes, scales and float initializers") {
  const Graph& g = mlp().graph;
  const CostContext c = CostContext::build(g, "hash", 1);
  const auto size = make_size_model(c);
  CHECK(size->name() == "size");
  CHECK(size->unit() == "bytes");
  std::int64_t all_initializers = 0;
  for (const auto& [name, t] : g.initializers)
    all_initializers += static_cast<std::int64_t>(t.nbytes());
  CHECK(all_initializers == 235146 * 4);
  // fp32: the stored model is every initializer as it is.
  const PlanCost fp32 = size->plan_cost(QuantPlan{});
  CHECK(fp32.total == static_cast<double>(all_initializers));
  CHECK(fp32.fixed == static_cast<double>(c.float_bytes_outside));
  REQUIRE(fp32.per_layer.size() == 3);
  CHECK(fp32.per_layer[0] == 256 * 784 * 4);

  // First layer, W [256, 784] (transB): per output channel, one int8 code per weight and an
  // fp32 scale per channel; asymmetric adds an int8 zero point per channel.
  CHECK(size->layer_cost(0, spec("int8/channel/sym", "uint8/tensor/asym")).value ==
        256 * 784 + 256 * 4);
  CHECK(size->layer_cost(0, spec("int8/channel/asym", "uint8/tensor/asym")).value ==
        256 * 784 + 256 * 4 + 256);
  CHECK(size->layer_cost(0, spec("int4/channel/sym", "uint8/tensor/asym")).value ==
        256 * 784 / 2 + 256 * 4);
  // Groups of 16 along K: 256 * 784 / 16 scales.
  CHECK(size->layer_cost(0, spec("int4/group16/sym", "fp16")).value ==
        256 * 784 / 2 + 256 * 784 / 16 * 4);
  CHECK(size->layer_cost(2, spec("int8/tensor/sym", "uint8/tensor/asym")).value == 10 * 128 + 4);
  // The activation spec does not change the stored size.
  CHECK(size->layer_cost(0, spec("fp16", "fp16")).value == 256 * 784 * 2);

  // Uniform W8A8: biases stay float, every weight gets codes + per-channel scales.
  const PlanCost w8 = size->plan_cost(uniform_plan("W8A8", g));
  CHECK(w8.total ==
        (256 + 128 + 10) * 4 + (256 * 784 + 256 * 4) + (128 * 256 + 128 * 4) + (10 * 128 + 10 * 4));
  CHECK(w8.supported());
  CHECK(w8.estimated_layers == 0);
}

TEST_CASE("bops model: MACs x weight bits x activation bits") {
  const Graph& g = mlp().graph;
  const CostContext c = CostContext::build(g, "hash", 2);
  const auto bops = make_bops_model(c);
  CHECK(bops->fixed_cost() == 0);
  const double macs0 = 2.0 * 784 * 256;
  CHECK(bops->layer_cost(0, LayerQuant{}).value == doctest::Approx(macs0 * 32 * 32 / 1e9));
  CHECK(bops->layer_cost(0, spec("int8/channel/sym", "uint8/tensor/asym")).value ==
        doctest::Approx(macs0 * 8 * 8 / 1e9));
  CHECK(bops->layer_cost(0, spec("int4/channel/sym", "fp16")).value ==
        doctest::Approx(macs0 * 4 * 16 / 1e9));
  const PlanCost fp32 = bops->plan_cost(QuantPlan{});
  CHECK(fp32.total == doctest::Approx(2.0 * (784 * 256 + 256 * 128 + 128 * 10) * 1024 / 1e9));
}

TEST_CASE("latency model on a synthetic profile: fixed + the sum of the layers' entries") {
  const Graph& g = mlp().graph;
  const CostContext c = CostContext::build(g, "mlp-hash", 1);
  HwProfile p;
  p.target = "synthetic";
  p.backend = "onednn";
  const std::vector<double> fp32_us{250.0, 40.0, 6.5}, int8_us{100.0, 20.0, 5.0};
  for (std::size_t i = 0; i < 3; ++i) {
    p.put(ProfileEntry{c.workloads[i].key, "fp32", fp32_us[i], 1, 10, "", ""});
    if (i < 2) p.put(ProfileEntry{c.workloads[i].key, "int8", int8_us[i], 1, 10, "", ""});
  }
  CHECK(c.inputs == "input=1x28x28");
  p.put(ModelOverhead{"mlp-hash", "fmnist_mlp.onnx", 1, 30.0, 1.0, 400.0, c.inputs});
  p.put(ModelOverhead{"mlp-hash", "fmnist_mlp.onnx", 8, 999.0, 1.0, 4000.0,
                      c.inputs});  // other batch
  p.put(ModelOverhead{"mlp-hash", "fmnist_mlp.onnx", 1, 777.0, 1.0, 4000.0,
                      "input=3x28x28"});  // other inputs
  const auto latency = make_latency_model(c, p);
  CHECK(latency->name() == "latency");
  CHECK(latency->unit() == "ms");
  CHECK(latency->fixed_cost() == 30.0 / 1e3);

  SUBCASE("fp32 plan: exactly fixed + the fp32 entries") {
    const PlanCost cost = latency->plan_cost(QuantPlan{});
    CHECK(cost.supported());
    CHECK(cost.estimated_layers == 0);
    CHECK(cost.fixed == 30.0 / 1e3);
    REQUIRE(cost.per_layer.size() == 3);
    double expected = 30.0 / 1e3;
    for (std::size_t i = 0; i < 3; ++i) {
      CHECK(cost.per_layer[i] == fp32_us[i] / 1e3);
      expected += fp32_us[i] / 1e3;
    }
    CHECK(cost.total == expected);
  }
  SUBCASE("a mixed plan takes each layer's own precision") {
    QuantPlan plan;
    plan.layers[c.layers[1].name] = spec("int8/channel/sym", "uint8/tensor/asym");
    const PlanCost cost = latency->plan_cost(plan);
    CHECK(cost.supported());
    CHECK(cost.per_layer[0] == fp32_us[0] / 1e3);
    CHECK(cost.per_layer[1] == int8_us[1] / 1e3);
    CHECK(cost.per_layer[2] == fp32_us[2] / 1e3);
    CHECK(cost.total == 30.0 / 1e3 + fp32_us[0] / 1e3 + int8_us[1] / 1e3 + fp32_us[2] / 1e3);
    // Weight-only quantization does not change the time.
    QuantPlan weight_only;
    weight_only.layers[c.layers[0].name] = spec("int4/channel/sym", "fp32");
    CHECK(latency->plan_cost(weight_only).total == latency->plan_cost(QuantPlan{}).total);
  }
  SUBCASE("no model entry for this batch: no fixed cost") {
    const CostContext c4 = CostContext::build(g, "mlp-hash", 4);
    CHECK(make_latency_model(c4, p)->fixed_cost() == 0);
    const CostContext other = CostContext::build(g, "other-hash", 1);
    CHECK(make_latency_model(other, p)->fixed_cost() == 0);
  }
  SUBCASE("a missing entry without ceilings is unsupported, never invented") {
    const LayerCost missing = latency->layer_cost(2, spec("int8/channel/sym", "uint8/tensor/asym"));
    CHECK(!missing.unsupported.empty());
    CHECK(contains(missing.unsupported, c.workloads[2].key));
    CHECK(contains(missing.unsupported, "bitplan profile"));
  }
  SUBCASE("a missing entry is estimated from the ceilings (roofline) and flagged") {
    HwProfile q = p;
    q.ceilings = {{"gemm_fp32_gflops", 50, "GFLOP/s", ""},
                  {"gemm_int8_gops", 100, "GOP/s", ""},
                  {"memory_bandwidth_gbs", 10, "GB/s", ""}};
    const auto model = make_latency_model(c, q);
    const LayerQuant w8a8 = spec("int8/channel/sym", "uint8/tensor/asym");
    const LayerCost est = model->layer_cost(2, w8a8);
    CHECK(est.estimated);
    CHECK(est.unsupported.empty());
    // Layer 3: 1280 MACs -> 2560 ops at 100 GOP/s = 25.6 ns; traffic (128 + 10 activations +
    // 1280 weights) x 1 byte at 10 GB/s = 141.8 ns: memory bound.
    CHECK(est.value == doctest::Approx(1418.0 / 10e9 * 1e3));
    const LayerCost measured = model->layer_cost(1, w8a8);
    CHECK(!measured.estimated);
    CHECK(measured.value == int8_us[1] / 1e3);
    const PlanCost plan = model->plan_cost(uniform_plan("W8A8", g));
    CHECK(plan.supported());
    CHECK(plan.estimated_layers == 1);
    CHECK(plan.total ==
          doctest::Approx(30.0 / 1e3 + int8_us[0] / 1e3 + int8_us[1] / 1e3 + 1418.0 / 10e9 * 1e3));
    // Compute bound when the compute ceiling is low: 2560 ops at 0.001 GOP/s = 2.56 ms.
    q.ceilings[1].value = 0.001;
    CHECK(make_latency_model(c, q)->layer_cost(2, w8a8).value == doctest::Approx(2.56));
  }
  SUBCASE("unsupported specs and unsupported entries are listed with their reasons") {
    QuantPlan plan;
    plan.layers[c.layers[0].name] = spec("int4/group16/sym", "fp16");  // no CPU kernel
    plan.layers[c.layers[1].name] = spec("int8/channel/sym", "uint8/tensor/asym");
    HwProfile q = p;
    q.put(ProfileEntry{c.workloads[1].key, "int8", 0, 0, 0, "", "int8 refused: test reason"});
    const PlanCost cost = make_latency_model(c, q)->plan_cost(plan);
    CHECK(!cost.supported());
    REQUIRE(cost.unsupported.size() == 2);
    CHECK(cost.unsupported[0].first == c.layers[0].name);
    CHECK(contains(cost.unsupported[0].second, "no oneDNN CPU kernel"));
    CHECK(cost.unsupported[1].first == c.layers[1].name);
    CHECK(cost.unsupported[1].second == "int8 refused: test reason");
  }
}

TEST_CASE("latency model: conversions between precisions where the profile keeps them") {
  const Graph& g = mlp().graph;
  const CostContext c = CostContext::build(g, "h", 1);
  HwProfile p;
  p.backend = "cuda";
  for (const auto& w : c.workloads) {
    p.put(ProfileEntry{w.key, "fp32", 10, 0, 5, "", ""});
    p.put(ProfileEntry{w.key, "int8", 4, 0, 5, "", ""});
  }
  // Nearest measured size, scaled linearly: 256 elements -> 2 us x 256 / 512.
  p.conversions.push_back({"fp32", "int8", 512, 2.0, 0});
  p.conversions.push_back({"fp32", "int8", 100000, 50.0, 0});
  // A CUDA int8 layer writes fp16 (its dequantization is part of its entry): what follows it
  // converts from fp16, never from int8.
  p.conversions.push_back({"fp16", "fp32", 128, 1.0, 0});
  p.conversions.push_back({"int8", "fp32", 128, 100.0, 0});
  p.conversions.push_back({"fp16", "int8", 128, 3.0, 0});
  const auto latency = make_latency_model(c, p);
  QuantPlan plan;  // fp32, int8, fp32
  plan.layers[c.layers[1].name] = spec("int8/channel/sym", "uint8/tensor/asym");
  const PlanCost cost = latency->plan_cost(plan);
  REQUIRE(cost.per_layer.size() == 3);
  CHECK(cost.per_layer[0] == 10.0 / 1e3);
  CHECK(cost.per_layer[1] == doctest::Approx(4.0 / 1e3 + 2.0 / 1e3 * 256 / 512));
  CHECK(cost.per_layer[2] == doctest::Approx(10.0 / 1e3 + 1.0 / 1e3 * 128 / 128));
  // The same precision on both sides: no conversion.
  CHECK(latency->plan_cost(QuantPlan{}).total == doctest::Approx(30.0 / 1e3));
  // int8 after int8: the first writes fp16, which the second quantizes (fp16 -> int8).
  plan.layers[c.layers[2].name] = spec("int8/channel/sym", "uint8/tensor/asym");
  const PlanCost both = latency->plan_cost(plan);
  REQUIRE(both.per_layer.size() == 3);
  CHECK(both.per_layer[2] == doctest::Approx(4.0 / 1e3 + 3.0 / 1e3 * 128 / 128));

  SUBCASE("a chained int8 entry: the first int8 layer writes the second's codes") {
    // int8_chained of layer 1 takes 3.5 us instead of its int8 entry's 4: the edge costs
    // 3.5 - 4 = -0.5 us (no fp16 output, no conversion), less than the 3 us conversion.
    HwProfile chained = p;
    chained.put(ProfileEntry{c.workloads[1].key, "int8_chained", 3.5, 0, 5, "", ""});
    const PlanCost cost2 = make_latency_model(c, chained)->plan_cost(plan);
    CHECK(cost2.per_layer[2] == doctest::Approx(4.0 / 1e3 - 0.5 / 1e3));
    // A chained entry slower than int8 + the conversion is not what a deployment would run.
    chained.put(ProfileEntry{c.workloads[1].key, "int8_chained", 9.0, 0, 5, "", ""});
    CHECK(make_latency_model(c, chained)->plan_cost(plan).per_layer[2] ==
          doctest::Approx(4.0 / 1e3 + 3.0 / 1e3));
  }
}

TEST_CASE("op workloads of fmnist_vit: attention's products, softmax, norms, adds; no views") {
  const Graph& g = vit().graph;
  const ExecutionPlan plan(g, PlanOptions{2});
  const auto layers = layer_workloads(g, plan);
  const auto ops = op_workloads(g, plan);
  REQUIRE(!ops.empty());
  std::map<std::string, int> kinds;
  std::size_t previous = 0;
  for (const auto& op : ops) {
    CAPTURE(op.node);
    CHECK(op.unsupported.empty());
    CHECK(op.op_type != "Reshape");       // a view: no kernel runs
    CHECK(op.layers_before >= previous);  // execution order
    CHECK(op.layers_before <= layers.size());
    previous = op.layers_before;
    // The GPU profiler reads the same grammar back (backends/cuda/workloads.hpp).
    const cuda::OpShape shape = cuda::parse_op_key(op.key);
    CHECK(cuda::op_key(shape) == op.key);
    ++kinds[op.key.substr(0, op.key.find(':'))];
  }
  CHECK(kinds["bmm"] > 0);      // Q.K^T and P.V
  CHECK(kinds["rownorm"] > 0);  // softmax, layer norm
  CHECK(kinds["eltwise"] > 0);  // residual adds
  // Attention's first product at batch 2: [2, heads, tokens, d] x [2, heads, d, tokens].
  const auto scores = std::find_if(ops.begin(), ops.end(),
                                   [](const OpWorkload& op) { return op.op_type == "MatMul"; });
  REQUIRE(scores != ops.end());
  const cuda::OpShape s = cuda::parse_op_key(scores->key);
  CHECK(s.batch % 2 == 0);
  CHECK(s.m == s.n);  // tokens x tokens
}

TEST_CASE("op keys: canonical form, and clear errors for malformed ones") {
  using cuda::parse_op_key;
  CHECK(parse_op_key("eltwise:o256:i256x64x1").inputs == std::vector<std::int64_t>{256, 64, 1});
  CHECK(parse_op_key("reduce:r4:c64").elements_written() == 4);
  CHECK(parse_op_key("rownorm:r4:c64").elements_written() == 256);
  CHECK(parse_op_key("copy:i516:o512").elements_read() == 516);
  CHECK(parse_op_key("bmm:b2:m4:n8:k32").elements_written() == 64);
  CHECK(cuda::is_op_key("bmm:b2:m4:n8:k32"));
  CHECK(!cuda::is_op_key("gemm:m4:n8:k32"));
  for (const char* bad : {"eltwise:o0:i4", "eltwise:o4:i1x2x3x4x5", "reduce:r4", "bmm:b2:m4:n8",
                          "copy:i5:o-1", "rownorm:r04:c5", "softmax:r4:c5"}) {
    CAPTURE(bad);
    CHECK_THROWS_AS(parse_op_key(bad), cuda::ProfileError);
  }
}

TEST_CASE("latency model on a CUDA profile with op entries: each op in its layer's float type") {
  const Graph& g = vit().graph;
  const CostContext c = CostContext::build(g, "h", 1);
  REQUIRE(!c.ops.empty());
  HwProfile p;
  p.backend = "cuda";
  for (const auto& w : c.workloads) {
    p.put(ProfileEntry{w.key, "fp32", 10, 0, 5, "", ""});
    p.put(ProfileEntry{w.key, "fp16", 4, 0, 5, "", ""});
  }
  const double layers = static_cast<double>(c.layers.size());
  const double ops = static_cast<double>(c.ops.size());
  SUBCASE("a profile without op entries prices the layers alone, as before") {
    const PlanCost cost = make_latency_model(c, p)->plan_cost(QuantPlan{});
    CHECK(cost.total == doctest::Approx(layers * 10 / 1e3));
    CHECK(cost.estimated_layers == 0);
  }
  for (const auto& op : c.ops) {
    p.put(ProfileEntry{op.key, "fp32", 3, 0, 5, "", ""});
    p.put(ProfileEntry{op.key, "fp16", 2, 0, 5, "", ""});
  }
  const auto latency = make_latency_model(c, p);
  // fp32 layers write fp32: every op at its fp32 entry; fp16 layers: at fp16.
  CHECK(latency->plan_cost(QuantPlan{}).total == doctest::Approx((layers * 10 + ops * 3) / 1e3));
  QuantPlan half;
  for (const auto& layer : c.layers) half.layers[layer.name] = spec("fp16", "fp16");
  CHECK(latency->plan_cost(half).total == doctest::Approx((layers * 4 + ops * 2) / 1e3));
  // The ops before the first layer are charged to it, the rest to the layer they follow.
  std::size_t leading = 0, after_first = 0;
  for (const auto& op : c.ops)
    leading += op.layers_before == 0, after_first += op.layers_before == 1;
  const LayerCost first = latency->layer_cost(0, LayerQuant{});
  CHECK(first.value == doctest::Approx((10 + 3.0 * double(leading + after_first)) / 1e3));
  CHECK(first.other_ops == doctest::Approx(3.0 * double(leading + after_first) / 1e3));
  SUBCASE("an op missing from the profile makes its layer estimated, never guessed") {
    HwProfile partial = p;
    std::erase_if(partial.entries,
                  [&](const ProfileEntry& e) { return e.key == c.ops.back().key; });
    const PlanCost cost = make_latency_model(c, partial)->plan_cost(QuantPlan{});
    CHECK(cost.estimated_layers >= 1);
    CHECK(cost.total < (layers * 10 + ops * 3) / 1e3);
  }
}

namespace {

// x -> Add(bias) -> MatMul(w1: 16 x 16) -> Relu -> MatMul(w2: 16 x outputs): two layers, one
// op before the first and one between them.
Graph add_matmul_relu_matmul(const std::string& name, std::int64_t outputs) {
  Graph g;
  g.name = name;
  g.opset = 13;
  g.inputs.push_back({"x", DType::f32, {-1, 16}, {}});
  g.outputs.push_back({"y", DType::f32, {-1, outputs}, {}});
  g.initializers["b"] = filled({16}, 1);
  g.initializers["w1"] = filled({16, 16}, 2);
  g.initializers["w2"] = filled({16, outputs}, 3);
  g.nodes.push_back({"add", "Add", "", {"x", "b"}, {"a"}, {}});
  g.nodes.push_back({"mm1", "MatMul", "", {"a", "w1"}, {"h"}, {}});
  g.nodes.push_back({"relu", "Relu", "", {"h"}, {"r"}, {}});
  g.nodes.push_back({"mm2", "MatMul", "", {"r", "w2"}, {"y"}, {}});
  return g;
}

}  // namespace

TEST_CASE("latency model: ops before the first layer run in the float type beside its input") {
  const Graph g = add_matmul_relu_matmul("leading_ops", 16);
  const CostContext c = CostContext::build(g, "h", 4);
  REQUIRE(c.layers.size() == 2);
  REQUIRE(c.ops.size() == 2);
  CHECK(c.ops[0].layers_before == 0);
  CHECK(c.ops[1].layers_before == 1);
  HwProfile p;
  p.backend = "cuda";
  for (const auto& w : c.workloads) {
    p.put(ProfileEntry{w.key, "fp16", 4, 0, 5, "", ""});
    p.put(ProfileEntry{w.key, "int8", 3, 0, 5, "", ""});
    p.put(ProfileEntry{w.key, "int8_chained", 1, 0, 5, "", ""});
  }
  for (const auto& op : c.ops) p.put(ProfileEntry{op.key, "fp16", 2, 0, 5, "", ""});
  p.conversions.push_back({"fp16", "int8", 64, 5.0, 0});
  const auto latency = make_latency_model(c, p);
  QuantPlan int8;
  for (const auto& layer : c.layers)
    int8.layers[layer.name] = spec("int8/channel/sym", "int8/tensor/sym");
  const PlanCost cost = latency->plan_cost(int8);
  REQUIRE(cost.per_layer.size() == 2);
  // Layer 0: its entry, the leading add at fp16, its quantization (fp16 -> int8), the relu.
  CHECK(cost.per_layer[0] == doctest::Approx((3 + 2 + 5 + 2) / 1e3));
  // Layer 1: the relu between them needs layer 0's fp16 output, so no chaining: a conversion.
  CHECK(cost.per_layer[1] == doctest::Approx((3 + 5) / 1e3));
}

TEST_CASE(
    "latency model: a CUDA profile's step overhead comes off every entry, down to the floor") {
  // Two layers of different shapes (so two workload keys), a leading add and a relu between.
  const Graph g = add_matmul_relu_matmul("step_overhead", 8);
  const CostContext c = CostContext::build(g, "h", 4);
  REQUIRE(c.layers.size() == 2);
  REQUIRE(c.ops.size() == 2);
  REQUIRE(c.workloads[0].key != c.workloads[1].key);
  HwProfile p;
  p.backend = "cuda";
  p.put(ProfileEntry{c.workloads[0].key, "fp16", 10, 0, 5, "", ""});
  p.put(ProfileEntry{c.workloads[1].key, "fp16", 6, 0, 5, "", ""});
  p.put(ProfileEntry{c.workloads[0].key, "int8", 9, 0, 5, "", ""});
  p.put(ProfileEntry{c.workloads[1].key, "int8", 9, 0, 5, "", ""});
  for (const auto& op : c.ops) p.put(ProfileEntry{op.key, "fp16", 3, 0, 5, "", ""});
  p.conversions.push_back({"fp16", "int8", 64, 4.0, 0});
  QuantPlan half, int8;
  for (const auto& layer : c.layers) {
    half.layers[layer.name] = spec("fp16", "fp16");
    int8.layers[layer.name] = spec("int8/channel/sym", "int8/tensor/sym");
  }
  SUBCASE("without the ceilings the entries count as measured") {
    CHECK(make_latency_model(c, p)->plan_cost(half).total ==
          doctest::Approx((10 + 6 + 3 + 3) / 1e3));
  }
  // Events add 2.5 us to a step; a step in a graph takes at least 1 us.
  p.ceilings.push_back({"step_overhead_us", 2.5, "us", ""});
  p.ceilings.push_back({"graph_step_us", 1.0, "us", ""});
  const auto latency = make_latency_model(c, p);
  // Four steps, each 2.5 us less; the 3 us ops would be 0.5 us, under the floor: 1 us each.
  CHECK(latency->plan_cost(half).total == doctest::Approx((7.5 + 3.5 + 1 + 1) / 1e3));
  // int8: two layers (6.5 each), two ops (1 each), two quantizations (1.5 each).
  CHECK(latency->plan_cost(int8).total == doctest::Approx((6.5 + 6.5 + 1 + 1 + 1.5 + 1.5) / 1e3));
  SUBCASE("a CPU profile has no steps to correct") {
    HwProfile cpu = p;
    cpu.backend = "onednn";
    cpu.put(ProfileEntry{c.workloads[0].key, "fp32", 10, 0, 5, "", ""});
    cpu.put(ProfileEntry{c.workloads[1].key, "fp32", 6, 0, 5, "", ""});
    CHECK(make_latency_model(c, cpu)->plan_cost(QuantPlan{}).total ==
          doctest::Approx((10 + 6) / 1e3));
  }
}

// --- Regression tests for bugs found while writing these tests. ------------------------------

TEST_CASE("roofline: fp8 moves one byte per element") {
  // Was: LatencyModel::roofline takes 4 bytes for fp32, 1 for int8 and 2 for everything else,
  // so an fp8_e4m3 layer missing from a CUDA profile is estimated with twice its memory
  // traffic (activations and weights are 1 byte each in fp8).
  const Graph& g = mlp().graph;
  const CostContext c = CostContext::build(g, "h", 1);
  HwProfile p;
  p.backend = "cuda";
  p.ceilings = {{"gemm_fp8_e4m3_tflops", 1000, "TFLOP/s", ""}, {"dram_bandwidth", 1, "GB/s", ""}};
  const LayerCost est =
      make_latency_model(c, p)->layer_cost(2, spec("fp8_e4m3/tensor", "fp8_e4m3/tensor"));
  CHECK(est.estimated);
  // (128 + 10 activations + 1280 weights) x 1 byte at 1 GB/s (memory bound).
  CHECK(est.value == doctest::Approx(1418.0 / 1e9 * 1e3));
}

TEST_CASE("hardware profile: ceilings and model times must be positive numbers") {
  // Was: load_hw_profile checks median_us >= 0 for entries and conversions but accepts a
  // ceiling of 0 or below and a negative model time; a zero bandwidth then makes every
  // roofline estimate infinite and a negative other_us makes plan latencies negative.
  const TempDir dir("bitplan_hw_profile_ceiling");
  const std::string head = "bitplan_hw_profile: 1\ntarget: t\nbackend: onednn\n";
  const fs::path zero = dir.write(
      "zero.yaml", head + "ceilings:\n  - {name: memory_bandwidth_gbs, value: 0, unit: GB/s}\n");
  CHECK_THROWS_AS(load_hw_profile(zero), Error);
  const fs::path negative =
      dir.write("negative.yaml", head + "models:\n  - {model_hash: h, batch: 1, other_us: -5}\n");
  CHECK_THROWS_AS(load_hw_profile(negative), Error);
}

TEST_CASE("hardware profile: the step overhead needs its floor and must be below every entry") {
  const TempDir dir("bitplan_hw_profile_step_overhead");
  const std::string head =
      "bitplan_hw_profile: 1\ntarget: t\nbackend: cuda\n"
      "entries:\n  - {key: 'gemm:m1:n8:k8', precision: fp16, median_us: 4.5}\n"
      "  - {key: 'gemm:m2:n8:k8', precision: fp16, median_us: 3.5}\n";
  const auto message = [&](const std::string& name, const std::string& ceilings) {
    try {
      load_hw_profile(dir.write(name, head + "ceilings:\n" + ceilings));
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  CHECK(message("good.yaml",
                "  - {name: step_overhead_us, value: 2.9, unit: us}\n"
                "  - {name: graph_step_us, value: 0.8, unit: us}\n") == "");
  const std::string no_floor =
      message("no_floor.yaml", "  - {name: step_overhead_us, value: 2.9, unit: us}\n");
  CHECK(no_floor.find("no_floor.yaml") != std::string::npos);
  CHECK(no_floor.find("needs the ceiling 'graph_step_us'") != std::string::npos);
  const std::string too_large = message("too_large.yaml",
                                        "  - {name: step_overhead_us, value: 3.5, unit: us}\n"
                                        "  - {name: graph_step_us, value: 0.8, unit: us}\n");
  CHECK(too_large.find("too_large.yaml") != std::string::npos);
  CHECK(too_large.find("is not below entry gemm:m2:n8:k8 fp16 (3.5 us)") != std::string::npos);
}

TEST_CASE("a profile of another CPU is named as such; this CPU's default name is unique") {
  const CpuDevice& host = query_cpu();
  HwProfile p;
  p.backend = "onednn";
  p.device = {{"name", host.model},
              {"onednn_isa", host.onednn_isa},
              {"logical_cores", std::to_string(host.logical_cores)}};
  CHECK(cpu_differences_from_host(p).empty());
  CHECK(profile_warnings(p, "mine.yaml").empty());
  p.device["onednn_isa"] = host.onednn_isa == "avx2" ? "avx512_core_vnni" : "avx2";
  p.device["logical_cores"] = std::to_string(host.logical_cores + 6);
  const auto differences = cpu_differences_from_host(p);
  REQUIRE(differences.size() == 2);
  CHECK(contains(differences[0], "oneDNN ISA"));
  CHECK(contains(differences[1], "logical cores"));
  const auto warnings = profile_warnings(p, "other.yaml");
  REQUIRE(warnings.size() == 1);
  CHECK(contains(warnings[0], "'other.yaml' was profiled on another CPU"));
  // CUDA profiles describe a GPU: no CPU to compare.
  p.backend = "cuda";
  CHECK(cpu_differences_from_host(p).empty());

  const std::string name = host_profile_name(2);
  CHECK(name.rfind("cpu-", 0) == 0);
  CHECK(contains(name, host.onednn_isa.substr(0, 4)));
  CHECK(contains(name, fmt::format("-{}c-2t", host.logical_cores)));
  CHECK(name.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-") == std::string::npos);
}

TEST_CASE("noisy profiles: IQR of at least half the median on >= 10 % of the entries") {
  HwProfile p;
  for (int i = 0; i < 10; ++i)
    p.put(ProfileEntry{fmt::format("gemm:m1:n{}:k8", i + 1), "fp32", 10, 1, 20, "", ""});
  p.put(ProfileEntry{"gemm:m1:n99:k8", "int8", 0, 0, 0, "", "unsupported: not counted"});
  CHECK(assess_noise(p).measured == 10);
  CHECK(assess_noise(p).noisy == 0);
  CHECK(assess_noise(p).summary().empty());
  p.put(ProfileEntry{"gemm:m1:n3:k8", "fp32", 10, 12, 20, "", ""});  // IQR > median
  const ProfileNoise noise = assess_noise(p);
  CHECK(noise.noisy == 1);
  CHECK(noise.too_noisy());
  REQUIRE(noise.worst != nullptr);
  CHECK(noise.worst->key == "gemm:m1:n3:k8");
  CHECK(contains(noise.summary(), "--threads 1"));
  CHECK(contains(noise.summary(), "gemm:m1:n3:k8"));
}

}  // namespace backends_profile_test
