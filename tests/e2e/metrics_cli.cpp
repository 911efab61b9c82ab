// `bitplan evaluate` judged by the configured metric (issue 12): embedding and fidelity on the
// fixture MLP, in text and JSON, and the metric section of a run config.
#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>

#include "tests/e2e/run_bitplan.hpp"
#include "tests/temp_dir.hpp"

namespace bitplan::e2e::metrics_cli_test {
namespace {

namespace fs = std::filesystem;
const std::string kMlpModel = (kSource / "models/fmnist_mlp.onnx").string();

nlohmann::json json_of(const Result& r) {
  const auto start = r.output.find('{');
  REQUIRE(start != std::string::npos);
  return nlohmann::json::parse(r.output.substr(start));
}

TEST_CASE("evaluate --metric embedding: centroid accuracy of the outputs, in text and JSON") {
  if (!fs::exists(kFashionImages)) {
    MESSAGE(kFashionMissing);
    return;
  }
  const std::string data = " --images " + kFashionImages.string() + " --labels " +
                           kFashionLabels.string() + " --mean 0.2860 --std 0.3530 --count 300";
  const Result text = run("evaluate --model " + kMlpModel + data + " --metric embedding");
  INFO(text.output);
  REQUIRE(text.exit_code == 0);
  CHECK(contains(text.output, "metric   embedding: nearest-centroid accuracy "));
  CHECK(!contains(text.output, "top-1    "));
  const Result r = run("evaluate --model " + kMlpModel + data + " --metric embedding --json");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  const auto out = json_of(r);
  CHECK(out["metric"]["kind"] == "embedding");
  CHECK(out["metric"]["centroid_accuracy"].get<double>() > 0.5);
  CHECK(out["metric"]["spearman"].is_null());  // no pairs
  CHECK(out["top1"].is_null());                // not the metric
  CHECK(out["preprocess"] == "scale 1/255 (the default for uint8 data)");
}

TEST_CASE("evaluate without labels: fidelity of a plan to fp32; a run config's metric section") {
  if (!fs::exists(kFashionImages)) {
    MESSAGE(kFashionMissing);
    return;
  }
  test::TempDir dir;
  const Result r = run("evaluate --model " + kMlpModel + " --images " + kFashionImages.string() +
                       " --count 64 --plan W8A8 --cache-dir " + (dir / "cache").string() +
                       " --json");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  const auto out = json_of(r);
  CHECK(out["metric"]["kind"] == "fidelity");
  CHECK(out["quantized"]["metric"]["kind"] == "fidelity");
  CHECK(out["quantized"]["metric"]["fidelity"]["top1_agreement"].get<double>() > 0.8);
  CHECK(out["quantized"]["top1_agreement"].get<double>() > 0.8);

  // The same from a config, whose metric section names the kind and the output.
  std::ofstream(dir / "run.yaml") << "model: " << kMlpModel << "\ndataset:\n  format: idx\n"
                                  << "  images: " << kFashionImages.string()
                                  << "\n  validation: {count: 64}\n"
                                  << "metric: {kind: fidelity}\n";
  const Result config = run("evaluate --config " + (dir / "run.yaml").string() + " --plan W8A8 " +
                            "--cache-dir " + (dir / "cache").string());
  INFO(config.output);
  REQUIRE(config.exit_code == 0);
  CHECK(contains(config.output, "metric   fidelity: fidelity to fp32 is measured for a plan"));
  CHECK(contains(config.output, "fidelity to fp32: top-1 agreement"));
}

}  // namespace
}  // namespace bitplan::e2e::metrics_cli_test
