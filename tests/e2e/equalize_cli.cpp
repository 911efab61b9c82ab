// End-to-end: cross-layer equalization as a user switch (`bitplan evaluate --equalize`,
// `quantization: {equalize: true}`): the pairs are listed, the fp32 accuracy is unchanged, the
// flag and key rules are enforced, and export writes the equalized model (rescaled weights and
// biases, ReLU6 -> ReLU) where ort-overrides, which applies to the original file, refuses it.
#include <doctest/doctest.h>
#include <onnx/onnx_pb.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "run_bitplan.hpp"
#include "tests/skip.hpp"

namespace equalize_cli_test {

namespace fs = std::filesystem;
using namespace bitplan::e2e;

namespace {

const std::string kResnetConfig = (kSource / "configs/fmnist_resnet.yaml").string();

fs::path scratch(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("bitplan_e2e_equalize_" + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

// A fixture model's run config (the ResNet's by default) with `extra` appended.
std::string config_with(const fs::path& dir, const std::string& extra,
                        const std::string& model = "fmnist_resnet") {
  const fs::path file = dir / (model + ".yaml");
  std::ofstream out(file);
  out << "model: " << (kSource / "models" / (model + ".onnx")).string() << "\n"
      << "dataset:\n  format: idx\n  images: " << kFashionImages.string()
      << "\n  labels: " << kFashionLabels.string()
      << "\n  preprocess: {scale: 0.00392156862745098, mean: [0.2860], std: [0.3530]}\n"
      << "  validation: {count: 256}\n"
      << extra;
  return file.string();
}

// The "top-1    xx.xx%" line of the fp32 run.
std::string fp32_line(const std::string& output) {
  const auto at = output.find("\ntop-1 ");
  return at == std::string::npos ? "" : output.substr(at + 1, output.find('\n', at + 1) - at - 1);
}

onnx::ModelProto load_model_file(const fs::path& file) {
  onnx::ModelProto model;
  std::ifstream in(file, std::ios::binary);
  REQUIRE(model.ParseFromIstream(&in));
  return model;
}

const onnx::NodeProto* find_node(const onnx::ModelProto& m, const std::string& name) {
  for (const auto& n : m.graph().node())
    if (n.name() == name) return &n;
  return nullptr;
}

// A float initializer's values (raw_data or float_data); empty when there is none.
std::vector<float> float_initializer(const onnx::ModelProto& m, const std::string& name) {
  for (const auto& t : m.graph().initializer()) {
    if (t.name() != name || t.data_type() != onnx::TensorProto::FLOAT) continue;
    if (!t.raw_data().empty()) {
      std::vector<float> v(t.raw_data().size() / sizeof(float));
      std::memcpy(v.data(), t.raw_data().data(), v.size() * sizeof(float));
      return v;
    }
    return {t.float_data().begin(), t.float_data().end()};
  }
  return {};
}

int count_ops(const onnx::ModelProto& m, const std::string& op) {
  int n = 0;
  for (const auto& node : m.graph().node()) n += node.op_type() == op;
  return n;
}

}  // namespace

TEST_CASE("evaluate --equalize lists the equalized pairs and keeps the fp32 accuracy") {
  if (!fs::exists(kFashionImages)) {
    bitplan::testing::skip(kFashionMissing);
    return;
  }
  const fs::path dir = scratch("evaluate");
  const std::string cache = (dir / "cache").string();
  const Result plain =
      run("evaluate --config " + kResnetConfig + " --count 256 --plan W8A8 --cache-dir " + cache);
  const Result cle = run("evaluate --config " + kResnetConfig +
                         " --count 256 --plan W8A8 --equalize --cache-dir " + cache);
  INFO(cle.output);
  REQUIRE(plain.exit_code == 0);
  REQUIRE(cle.exit_code == 0);
  CHECK(contains(cle.output, "cross-layer equalization: 3 pairs equalized"));
  CHECK(contains(cle.output, "equalized /layer1/conv1/Conv -> Relu -> /layer1/conv2/Conv"));
  CHECK(contains(cle.output, "has 2 readers"));
  CHECK_FALSE(contains(plain.output, "cross-layer equalization"));
  CHECK(!fp32_line(cle.output).empty());
  CHECK(fp32_line(cle.output) == fp32_line(plain.output));

  // The same from the config key.
  const Result keyed =
      run("evaluate --config " + config_with(dir, "quantization: {equalize: true}\n"));
  CHECK(keyed.exit_code == 0);
  CHECK(contains(keyed.output, "cross-layer equalization: 3 pairs equalized"));
}

TEST_CASE("equalize: relu6_to_relu needs equalize, equalize must be a boolean") {
  const fs::path dir = scratch("rules");
  const Result flag = run("evaluate --config " + kResnetConfig + " --relu6-to-relu");
  CHECK(flag.exit_code == 2);
  CHECK(contains(flag.output, "--relu6-to-relu: it applies with --equalize"));

  const Result key =
      run("evaluate --config " + config_with(dir, "quantization: {relu6_to_relu: true}\n"));
  CHECK(key.exit_code == 3);
  CHECK(
      contains(key.output, "quantization.relu6_to_relu: true applies with quantization.equalize"));

  const Result bad = run("evaluate --config " + config_with(dir, "quantization: {equalize: 2}\n"));
  CHECK(bad.exit_code == 3);
  CHECK(contains(bad.output, "quantization.equalize '2' must be true or false"));
}

TEST_CASE("export with quantization.equalize writes the rescaled weights and ReLU6 -> ReLU") {
  if (!fs::exists(kFashionImages)) {
    bitplan::testing::skip(kFashionMissing);
    return;
  }
  const fs::path dir = scratch("export");
  const std::string cache = " --cache-dir " + (dir / "cache").string();
  // Per-tensor W8A8 with layer1 of the pair /layer1/conv1 -> Relu -> /layer1/conv2 in fp32 and
  // the classifier (no pair: its output is the graph's) in fp32.
  const fs::path plan = dir / "plan.yaml";
  std::ofstream(plan) << "bitplan_plan: 1\n"
                         "defaults: {weights: int8/tensor/sym, activations: uint8/tensor/asym}\n"
                         "layers:\n  /layer1/conv1/Conv: fp32\n  /fc/Gemm: fp32\n";
  const std::string config = config_with(dir, "quantization: {equalize: true}\n");
  const Result exported = run("export --config " + config + " --plan " + plan.string() +
                              " --format onnx-qdq --output " + (dir / "cle.onnx").string() + cache);
  INFO(exported.output);
  REQUIRE(exported.exit_code == 0);
  CHECK(contains(exported.output, "cross-layer equalization: 3 pairs equalized"));

  const onnx::ModelProto original = load_model_file(kSource / "models/fmnist_resnet.onnx");
  const onnx::ModelProto m = load_model_file(dir / "cle.onnx");
  // The fp32 layer CLE rescaled: weights and bias from the equalized graph.
  const onnx::NodeProto* conv1 = find_node(m, "/layer1/conv1/Conv");
  const onnx::NodeProto* conv1_before = find_node(original, "/layer1/conv1/Conv");
  REQUIRE(conv1);
  REQUIRE(conv1_before);
  REQUIRE(conv1->input_size() == 3);
  CHECK(conv1->input(1) == "/layer1/conv1/Conv/weight_equalized");
  CHECK(conv1->input(2) == "/layer1/conv1/Conv/bias_equalized");
  for (int i : {1, 2}) {
    const std::vector<float> now = float_initializer(m, conv1->input(i));
    const std::vector<float> before = float_initializer(original, conv1_before->input(i));
    REQUIRE(!now.empty());
    REQUIRE(now.size() == before.size());
    CHECK(now != before);
  }
  // The quantized layer2 reads codes of its rescaled weights; the untouched fp32 classifier
  // keeps the file's own initializers.
  const onnx::NodeProto* conv2 = find_node(m, "/layer1/conv2/Conv");
  REQUIRE(conv2);
  CHECK(conv2->input(1) == "/layer1/conv2/Conv/weight_dequantized");
  const onnx::NodeProto* fc = find_node(m, "/fc/Gemm");
  const onnx::NodeProto* fc_before = find_node(original, "/fc/Gemm");
  REQUIRE(fc);
  REQUIRE(fc_before);
  CHECK(fc->input(1) == fc_before->input(1));
  CHECK(float_initializer(m, fc->input(1)) == float_initializer(original, fc_before->input(1)));

  // json says which layers were equalized; ort-overrides, applied to the original file,
  // cannot carry the rescaled weights.
  const Result json = run("export --config " + config + " --plan " + plan.string() +
                          " --format json --output " + (dir / "cle.json").string() + cache);
  CHECK(json.exit_code == 0);
  CHECK(contains(read_text(dir / "cle.json"), "\"cross_layer_equalization\""));
  const Result overrides =
      run("export --config " + config + " --plan " + plan.string() +
          " --format ort-overrides --output " + (dir / "cle.ort.json").string() + cache);
  CHECK(overrides.exit_code == 4);
  CHECK(contains(overrides.output, "cross-layer equalization"));
  CHECK_FALSE(fs::exists(dir / "cle.ort.json"));

  // MobileNetV2 with relu6_to_relu: each ReLU6 (Clip(0, 6)) CLE replaced becomes a Relu in the
  // file (9 of the 10; the last feeds a pooling, not a pair).
  const std::string mobilenet = config_with(
      dir, "quantization: {equalize: true, relu6_to_relu: true}\n", "fmnist_mobilenetv2");
  const Result relu =
      run("export --config " + mobilenet + " --plan W8A8 --format onnx-qdq --output " +
          (dir / "mobilenet.onnx").string() + cache);
  INFO(relu.output);
  REQUIRE(relu.exit_code == 0);
  const onnx::ModelProto mobile_before =
      load_model_file(kSource / "models/fmnist_mobilenetv2.onnx");
  const onnx::ModelProto mobile = load_model_file(dir / "mobilenet.onnx");
  CHECK(count_ops(mobile_before, "Clip") == 10);
  CHECK(count_ops(mobile_before, "Relu") == 0);
  CHECK(count_ops(mobile, "Clip") == 1);
  CHECK(count_ops(mobile, "Relu") == 9);
  const onnx::NodeProto* first = find_node(mobile, "/features/features.0/features.0.2/Clip");
  REQUIRE(first);
  CHECK(first->op_type() == "Relu");
  CHECK(first->input_size() == 1);
}

}  // namespace equalize_cli_test
