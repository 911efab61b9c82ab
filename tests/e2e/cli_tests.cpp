// End-to-end tests of the `bitplan` executable: real runs on the fixture models, and every
// kind of bad input giving one clear message and the documented exit code (never a crash).
#include <doctest/doctest.h>

#include "run_bitplan.hpp"

#include <sys/wait.h>
#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace cli_tests_test {

namespace fs = std::filesystem;
using namespace bitplan::e2e;  // run, Result, contains, kSource, ... (run_bitplan.hpp)

namespace {

const fs::path kFixtures = kSource / "tests/fixtures/cli";

}  // namespace

TEST_CASE("inspect prints the layer table with ONNX names") {
  const Result r = run((kSource / "models/fmnist_resnet.onnx").string());
  CHECK(r.exit_code == 2);  // a model path is not a command: usage error
  const Result ok = run("inspect " + (kSource / "models/fmnist_resnet.onnx").string());
  CHECK(ok.exit_code == 0);
  CHECK(contains(ok.output, "Conv"));
  CHECK(contains(ok.output, "MACs"));
  const Result json = run("inspect --json " + (kSource / "models/fmnist_mlp.onnx").string());
  CHECK(json.exit_code == 0);
  CHECK(contains(json.output, "\"total_macs\""));
}

TEST_CASE("evaluate the default config on a Fashion-MNIST subset") {
  if (!fs::exists(kFashionImages)) {
    bitplan::testing::skip(kFashionMissing);
    return;
  }
  const Result r = run("evaluate --config " + (kSource / "configs/default.yaml").string() +
                       " --count 500 --json");
  CHECK(r.exit_code == 0);
  CHECK(contains(r.output, "\"top1\""));
  CHECK(contains(r.output, "\"per_class\""));
  // The trained fixture is far above chance (10%) on any 500 test images.
  const auto pos = r.output.find("\"top1\": ");
  REQUIRE(pos != std::string::npos);
  CHECK(std::stod(r.output.substr(pos + 8)) > 0.8);
}

TEST_CASE("evaluate and export take --set overrides of the config, checked like the file") {
  const std::string config = (kSource / "configs/fmnist_mlp.yaml").string();
  const Result bad = run("evaluate --config " + config + " --set evaluate.batch=abc");
  CHECK(bad.exit_code == 3);
  CHECK(contains(bad.output, "(from --set evaluate.batch=abc)"));
  CHECK(run("evaluate --set evaluate.batch=8").exit_code == 2);  // nothing to override
  CHECK(run("export --set evaluate.batch=8 --plan W8 --format json --output x.json").exit_code ==
        2);
  if (!fs::exists(kFashionImages)) {
    bitplan::testing::skip(kFashionMissing);
    return;
  }
  const Result r =
      run("evaluate --config " + config + " --set dataset.validation.count=100 --plan W4:gptq");
  CHECK(r.exit_code == 0);
  CHECK(contains(r.output, "samples  100"));
}

TEST_CASE("bad input: one clear message and a non-zero exit code") {
  SUBCASE("unknown command and flags are usage errors") {
    CHECK(run("frobnicate").exit_code == 2);
    const Result r = run("evaluate --no-such-flag");
    CHECK(r.exit_code == 2);
    CHECK(contains(r.output, "no-such-flag"));
  }
  SUBCASE("missing model file") {
    const Result r = run("inspect /nonexistent/model.onnx");
    CHECK(r.exit_code == 3);
    CHECK(contains(r.output, "/nonexistent/model.onnx"));
    CHECK(contains(r.output, "does not exist"));
  }
  SUBCASE("malformed and truncated ONNX") {
    for (const char* name : {"garbage.onnx", "truncated.onnx"}) {
      const Result r = run("inspect " + (kFixtures / name).string());
      CHECK(r.exit_code == 3);
      CHECK(contains(r.output, name));
      CHECK(contains(r.output, "not a valid ONNX model"));
    }
  }
  SUBCASE("unsupported ops are listed together, with their nodes") {
    const Result r = run("inspect " + (kFixtures / "unknown_ops.onnx").string());
    CHECK(r.exit_code == 4);
    CHECK(contains(r.output, "2 op types"));
    CHECK(contains(r.output, "Det (1 node: det_layer)"));
    CHECK(contains(r.output, "Einsum (2 nodes: einsum_1, einsum_2)"));
  }
  SUBCASE("external data outside the model folder is refused") {
    const Result r = run("inspect " + (kFixtures / "external_escape.onnx").string());
    CHECK(r.exit_code == 3);
    CHECK(contains(r.output, "'..'"));
  }
  SUBCASE("YAML syntax error names line and column") {
    const Result r = run("evaluate --config " + (kFixtures / "bad_syntax.yaml").string());
    CHECK(r.exit_code == 3);
    CHECK(contains(r.output, "bad_syntax.yaml"));
    CHECK(contains(r.output, "line "));
  }
  SUBCASE("YAML schema error: unknown key with line and column") {
    const Result r = run("evaluate --config " + (kFixtures / "unknown_key.yaml").string());
    CHECK(r.exit_code == 3);
    CHECK(contains(r.output, "line 4, column 3"));
    CHECK(contains(r.output, "thraeds"));
  }
  SUBCASE("truncated IDX file") {
    if (!fs::exists(kFashionLabels)) return;
    const Result r = run("evaluate --config " + (kFixtures / "truncated_idx.yaml").string());
    CHECK(r.exit_code == 3);
    CHECK(contains(r.output, "truncated-images-idx3-ubyte"));
  }
}

TEST_CASE("quantized evaluation, integer execution and the debugger from the CLI") {
  if (!fs::exists(kFashionImages)) {
    bitplan::testing::skip(kFashionMissing);
    return;
  }
  const fs::path cache = fs::temp_directory_path() / "bitplan_e2e_cache";
  fs::remove_all(cache);
  const std::string config = (kSource / "configs/default.yaml").string();
  const fs::path saved = fs::temp_directory_path() / "bitplan_e2e_plan.yaml";
  const Result r =
      run("evaluate --config " + config + " --count 300 --plan W7A8 --real --json --cache-dir " +
          cache.string() + " --save-plan " + saved.string());
  CHECK(r.exit_code == 0);
  CHECK(contains(r.output, "\"quantized\""));
  CHECK(contains(r.output, "\"real\": {"));
  CHECK(contains(r.output, "\"agreement_with_simulation\""));
  CHECK(fs::exists(saved));
  CHECK(!fs::is_empty(cache));  // calibration ranges cached
  // The saved plan evaluates the same way as a file.
  const Result again = run("evaluate --config " + config + " --count 300 --plan " + saved.string() +
                           " --json --cache-dir " + cache.string());
  CHECK(again.exit_code == 0);
  const Result d = run("debug --config " + config + " --plan W4A8 --count 64 --json --cache-dir " +
                       cache.string());
  CHECK(d.exit_code == 0);
  CHECK(contains(d.output, "\"isolated_output_sqnr_db\""));
  const Result bad = run("evaluate --config " + config + " --count 64 --plan W4g7A8 --cache-dir " +
                         cache.string());
  CHECK(bad.exit_code == 3);
  CHECK(contains(bad.output, "does not divide the reduction axis"));
  fs::remove_all(cache);
  fs::remove(saved);
}

TEST_CASE("a separate calibration source: used, named in the output, checked") {
  const fs::path fashion = "/usr/share/datasets/fashion-mnist";
  if (!fs::exists(fashion / "train-images-idx3-ubyte.gz")) {
    bitplan::testing::skip(kFashionMissing);
    return;
  }
  const fs::path dir = fs::temp_directory_path() / "bitplan_e2e_calibration_source";
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string cache = (dir / "cache").string();
  // fmnist_mlp on the test set, calibrated as `calibration` says.
  const auto config = [&](const std::string& name, const std::string& calibration) {
    const fs::path file = dir / (name + ".yaml");
    std::ofstream(file) << "model: " << (kSource / "models/fmnist_mlp.onnx").string()
                        << "\ndataset:\n  format: idx\n  images: "
                        << (fashion / "t10k-images-idx3-ubyte.gz").string()
                        << "\n  labels: " << (fashion / "t10k-labels-idx1-ubyte.gz").string()
                        << "\n  preprocess: {mean: [0.2860], std: [0.3530]}\n  calibration: "
                        << calibration << "\n";
    return file.string();
  };
  const std::string train = (fashion / "train-images-idx3-ubyte.gz").string();
  const std::string same = config("same", "{count: 256, seed: 1}");
  const std::string separate =
      config("separate", "{images: " + train +
                             ", labels: " + (fashion / "train-labels-idx1-ubyte.gz").string() +
                             ", count: 256, seed: 1}");

  // The debugger prints every layer's calibrated input range. The first layer sees the
  // normalised pixels, whose extremes any 256 images reach; the later ones differ by source.
  const auto input_ranges = [&](const std::string& config_file) {
    const Result r = run("debug --config " + config_file +
                         " --plan W8A8 --count 32 --json --cache-dir " + cache);
    INFO(r.output);
    REQUIRE(r.exit_code == 0);
    const auto debug = nlohmann::json::parse(r.output.substr(r.output.find('{')));
    std::vector<std::pair<double, double>> ranges;
    for (const auto& layer : debug["layers"])
      ranges.emplace_back(layer["input_min"].get<double>(), layer["input_max"].get<double>());
    return ranges;
  };
  const auto same_ranges = input_ranges(same);
  const auto separate_ranges = input_ranges(separate);
  REQUIRE(same_ranges.size() == 3);
  CHECK(same_ranges[0] == separate_ranges[0]);
  CHECK(same_ranges[1] != separate_ranges[1]);
  CHECK(same_ranges[2] != separate_ranges[2]);
  // Two sources, two cache entries; the old form keeps its own.
  CHECK(std::distance(fs::directory_iterator(cache), fs::directory_iterator{}) == 2);
  CHECK(input_ranges(same) == same_ranges);

  const Result evaluated =
      run("evaluate --config " + separate + " --plan W8A8 --count 64 --cache-dir " + cache);
  CHECK(evaluated.exit_code == 0);
  CHECK(contains(evaluated.output, "calibrated on 256 samples (seed 1) of " + train));
  const Result old_form =
      run("evaluate --config " + same + " --plan W8A8 --count 64 --cache-dir " + cache);
  CHECK(old_form.exit_code == 0);
  CHECK(contains(old_form.output, "calibrated on 256 samples (seed 1) of the evaluation images"));

  {  // a missing calibration file is named
    const std::string missing = (dir / "no-such-train-images.gz").string();
    const Result r =
        run("evaluate --config " + config("missing", "{images: " + missing + ", count: 8}") +
            " --plan W8A8 --count 16 --cache-dir " + cache);
    CHECK(r.exit_code == 3);
    CHECK(contains(r.output, "open calibration source (dataset.calibration.images)"));
    CHECK(contains(r.output, missing));
  }
  {  // samples of other dims name both files and both dims
    // Three 5x5 images, uncompressed IDX.
    const fs::path small = dir / "small-images-idx3-ubyte";
    std::ofstream(small, std::ios::binary)
        << std::string("\0\0\x08\x03\0\0\0\x03\0\0\0\x05\0\0\0\x05", 16) << std::string(75, '\x20');
    const Result r =
        run("evaluate --config " + config("small", "{images: " + small.string() + ", count: 2}") +
            " --plan W8A8 --count 16 --cache-dir " + cache);
    INFO(r.output);
    CHECK(r.exit_code == 3);
    CHECK(contains(r.output, "small-images-idx3-ubyte"));
    CHECK(contains(r.output, "samples of dims [1, 5, 5]"));
    CHECK(contains(r.output, "t10k-images-idx3-ubyte.gz' give [1, 28, 28]"));
  }
  {  // more samples than the source holds
    const Result r =
        run("evaluate --config " + config("large", "{images: " + train + ", count: 60001}") +
            " --plan W8A8 --count 16 --cache-dir " + cache);
    CHECK(r.exit_code == 3);
    CHECK(contains(r.output, "count 60001 is larger than the 60000 samples available"));
    CHECK(contains(r.output, train));
  }
  fs::remove_all(dir);
}

}  // namespace cli_tests_test
