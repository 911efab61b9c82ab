// End-to-end: cross-layer equalization as a user switch (`bitplan evaluate --equalize`,
// `quantization: {equalize: true}`): the pairs are listed, the fp32 accuracy is unchanged, the
// flag and key rules are enforced, and export refuses an equalizing config.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "run_bitplan.hpp"
#include "tests/skip.hpp"

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

// The fixture ResNet's run config with `extra` appended.
std::string config_with(const fs::path& dir, const std::string& extra) {
  const fs::path file = dir / "run.yaml";
  std::ofstream out(file);
  out << "model: " << (kSource / "models/fmnist_resnet.onnx").string() << "\n"
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

TEST_CASE("equalize: relu6_to_relu needs equalize; export refuses an equalizing config") {
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

  const Result exported =
      run("export --config " + config_with(dir, "quantization: {equalize: true}\n") +
          " --plan W8A8 --format json --output " + (dir / "plan.json").string());
  CHECK(exported.exit_code == 4);
  CHECK(contains(exported.output, "with quantization.equalize: true: the exporters rewrite only"));
  CHECK_FALSE(fs::exists(dir / "plan.json"));
}
