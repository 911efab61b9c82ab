// End-to-end regression tests of issue 17's command-line items: thread counts, numbers given
// as flags and config values (one rule, the flag or file:line:key named), a bad
// search.policy, evaluate/cost details, and output that misled. The malformed-input
// catalogue (tests/malformed/cli_flags.yaml, run_config.yaml) holds the one-line cases; these
// check what a substring cannot: what must be absent, numbers that must agree, line counts.
#include <doctest/doctest.h>

#include "run_bitplan.hpp"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

namespace cli_hardening_test {

namespace fs = std::filesystem;
using namespace bitplan::e2e;  // run, Result, contains, kSource, ... (run_bitplan.hpp)
using nlohmann::json;

namespace {

const std::string kMlp = (kSource / "models/fmnist_mlp.onnx").string();
const std::string kResnet = (kSource / "models/fmnist_resnet.onnx").string();
const std::string kMlpConfig = (kSource / "configs/fmnist_mlp.yaml").string();
const std::string kResnetConfig = (kSource / "configs/fmnist_resnet.yaml").string();
const std::string kCpuProfile = (kSource / "hw_profiles/cpu-amd-epyc-2t.yaml").string();

// Whether the W4A32 kernel takes Gemm/MatMul layers here (the kernel list wants AVX2 + FMA).
bool query_avx2() {
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

bool have_dataset() {
  return fs::exists(kFashionImages);
}

// A fresh folder for one test's files.
fs::path scratch(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("bitplan_e2e_hardening_" + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

// A run config with the fixture model and `body` after it.
std::string write_config(const fs::path& dir, const std::string& body) {
  const fs::path file = dir / "run.yaml";
  std::ofstream(file) << "model: " << kMlp << "\n" << body;
  return file.string();
}

std::vector<std::string> lines_with(const std::string& text, const std::string& part) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (contains(line, part)) out.push_back(line);
  return out;
}

// The JSON document in a command's output (stderr warnings may precede it).
json json_of(const std::string& output) {
  const auto start = output.find('{');
  REQUIRE(start != std::string::npos);
  return json::parse(output.substr(start));
}

}  // namespace

TEST_CASE("17.1 thread counts beyond 4x the cores are refused, naming the flag or config key") {
  const fs::path dir = scratch("threads");
  for (const char* threads : {"65535", "100000", "40000"}) {
    // Checked before any file is read: the images need not exist.
    const Result r =
        run("evaluate --model " + kMlp + " --images x.idx --labels y.idx --threads " + threads);
    INFO(r.output);
    CHECK(r.exit_code == 2);
    CHECK(contains(r.output, std::string("--threads ") + threads + ": must be 0 (all cores)"));
  }
  const Result search = run("search --config " + kMlpConfig + " --threads 65535 --dry-run");
  CHECK(search.exit_code == 2);
  CHECK(contains(search.output, "--threads 65535"));
  const Result profile =
      run("profile --model " + kMlp + " --threads 65535 --out " + (dir / "p.yaml").string());
  CHECK(profile.exit_code == 2);
  CHECK(contains(profile.output, "--threads 65535"));
  CHECK(!fs::exists(dir / "p.yaml"));

  const std::string config = write_config(dir, "evaluate:\n  threads: 65535\n");
  const std::vector<std::string> commands{
      "evaluate", "search", "export --plan W8 --format json --output " + (dir / "o.json").string()};
  for (const std::string& command : commands) {
    const Result r = run(command + " --config " + config);
    INFO(r.output);
    CHECK(r.exit_code == 3);
    CHECK(contains(r.output, "run.yaml' line 3, column 12: evaluate.threads 65535: must be"));
  }
}

TEST_CASE("17.1 a thread count within the bound runs") {
  if (!have_dataset()) return;
  const Result r = run("evaluate --config " + kMlpConfig + " --count 64 --threads 3 --json");
  INFO(r.output);
  CHECK(r.exit_code == 0);
  CHECK(json_of(r.output)["threads"] == 3);
}

TEST_CASE("17.7 numbers: one rule for a flag and its config key, no -1 sentinels") {
  const fs::path dir = scratch("numbers");
  SUBCASE("--seconds inf names the flag, not line 1 of the config") {
    const Result r = run("search --config " + kMlpConfig + " --seconds inf --dry-run");
    CHECK(r.exit_code == 2);
    CHECK(contains(r.output, "--seconds inf: must be a finite number"));
    CHECK(!contains(r.output, "line 1, column 1"));
  }
  SUBCASE("--set of a bad value says so instead of claiming line 1") {
    const Result r =
        run("search --config " + kMlpConfig + " --set search.budget.seconds=-2 --dry-run");
    CHECK(r.exit_code == 3);
    CHECK(contains(r.output,
                   "(from --set search.budget.seconds=-2): search.budget.seconds -2: must be"));
    CHECK(!contains(r.output, "line 1, column 1"));
  }
  SUBCASE("negative budgets, seeds and counts are refused, not ignored") {
    for (const std::string& args :
         std::vector<std::string>{"search --config " + kMlpConfig + " --evaluations -1 --dry-run",
                                  "search --config " + kMlpConfig + " --seed -1 --dry-run",
                                  "search --config " + kMlpConfig + " --seconds -1 --dry-run",
                                  "search --config " + kMlpConfig + " --seconds nan --dry-run",
                                  "evaluate --config " + kMlpConfig + " --count -1",
                                  "evaluate --config " + kMlpConfig + " --seed -1",
                                  "evaluate --config " + kMlpConfig + " --threads -1",
                                  "debug --config " + kMlpConfig + " --count -1"}) {
      const Result r = run(args);
      INFO(args, "\n", r.output);
      CHECK(r.exit_code == 2);
      CHECK(contains(r.output, "bitplan: error: --"));
    }
  }
  SUBCASE("the same values in the config name file, line and key") {
    const std::string config =
        write_config(dir, "search:\n  seed: -1\n  budget: {evaluations: -1, seconds: nan}\n");
    const Result r = run("search --config " + config + " --dry-run");
    CHECK(r.exit_code == 3);
    CHECK(contains(r.output, "run.yaml' line 3, column 9: search.seed -1: is not a whole number"));
    const std::string threads = write_config(dir, "evaluate: {threads: -1}\n");
    const Result t = run("evaluate --config " + threads);
    CHECK(t.exit_code == 3);
    CHECK(contains(t.output, "evaluate.threads -1: must be 0 (all cores)"));
  }
  SUBCASE("huge batches: a clear error before any allocation, no overflow") {
    for (const char* batch : {"9223372036854775807", "100000000"}) {
      const Result r = run("inspect " + kResnet + " --batch " + batch);
      INFO(r.output);
      CHECK(r.exit_code == 2);
      CHECK(contains(r.output, std::string("--batch ") + batch + ": "));
      CHECK(contains(r.output, "give a smaller batch"));
    }
    const Result beyond = run("inspect " + kMlp + " --batch 9223372036854775808");
    CHECK(beyond.exit_code == 2);
    CHECK(contains(beyond.output, "is out of range"));
  }
}

TEST_CASE("17.9 an unknown search.policy in the config: exit 3, file, line and the policies") {
  const fs::path dir = scratch("policy");
  const std::string config = write_config(dir, "search:\n  policy: nsag2\n");
  const Result r = run("search --config " + config + " --dry-run");
  INFO(r.output);
  CHECK(r.exit_code == 3);
  CHECK(contains(r.output, "run.yaml' line 3, column 11: search.policy 'nsag2' is not one of"));
  for (const char* p : {"exact", "nsga2", "reinforce", "random"}) CHECK(contains(r.output, p));
}

TEST_CASE("17.13 evaluate --images without --labels: top1 is a usage error; else fidelity") {
  const Result r = run("evaluate --model " + kMlp + " --images x.npy --metric top1");
  CHECK(r.exit_code == 2);
  CHECK(contains(r.output, "--metric top1 needs --labels"));
  CHECK(!contains(r.output, "''"));
  // Without labels the default metric is fidelity: the data is read (here: missing, exit 3).
  const Result fidelity = run("evaluate --model " + kMlp + " --images x.npy");
  CHECK(fidelity.exit_code == 3);
  CHECK(contains(fidelity.output, "x.npy"));
  const Result unknown = run("evaluate --model " + kMlp + " --images x.npy --metric accuracy");
  CHECK(unknown.exit_code == 2);
  CHECK(contains(unknown.output, "--metric accuracy"));
  CHECK(contains(unknown.output, "is not one of top1, fidelity, embedding, perplexity"));
}

TEST_CASE("17.13 cost takes fp32 and shows int8 edge credits apart from the layers' own time") {
  const Result fp32 = run("cost --model " + kMlp + " --plan fp32 --target " + kCpuProfile);
  INFO(fp32.output);
  CHECK(fp32.exit_code == 0);
  const Result r =
      run("cost --model " + kResnet + " --plan W7A8 --target " + kCpuProfile + " --json");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  const json out = json_of(r.output);
  double sum = out["latency_fixed_ms"].get<double>(), edges = 0;
  for (const auto& layer : out["layers"]) {
    CHECK(layer["latency_ms"].get<double>() >= 0);
    sum += layer["latency_ms"].get<double>() + layer["edge_ms"].get<double>();
    edges += layer["edge_ms"].get<double>();
  }
  CHECK(edges < 0);  // the profile has int8_chained entries: chaining saves time
  CHECK(std::abs(sum - out["latency_ms"].get<double>()) < 1e-9);
  const Result text = run("cost --model " + kResnet + " --plan W7A8 --target " + kCpuProfile);
  CHECK(contains(text.output, "edge ms"));
}

TEST_CASE(
    "cost on a CUDA profile says its latency is a CUDA graph's, with the overhead taken off") {
  const std::string gpu_profile = (kSource / "hw_profiles/h100.yaml").string();
  const Result r = run("cost --model " + kMlp + " --plan fp16 --target " + gpu_profile + " --json");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  CHECK(json_of(r.output)["step_overhead_us"].get<double>() > 0);
  const Result text = run("cost --model " + kMlp + " --plan fp16 --target " + gpu_profile);
  CHECK(contains(text.output, "latency as a CUDA graph runs the model"));
  // A CPU profile has no such correction.
  const Result cpu =
      run("cost --model " + kMlp + " --plan fp32 --target " + kCpuProfile + " --json");
  REQUIRE(cpu.exit_code == 0);
  CHECK(json_of(cpu.output)["step_overhead_us"].is_null());
}

TEST_CASE("17.15 evaluate --plan: the per-class table shows the plan's numbers") {
  if (!have_dataset()) return;
  const std::string args = "evaluate --config " + kMlpConfig + " --count 300 --plan W4A8";
  const Result r = run(args + " --json");
  REQUIRE(r.exit_code == 0);
  const json out = json_of(r.output);
  const Result text = run(args);
  INFO(text.output);
  REQUIRE(text.exit_code == 0);
  CHECK(contains(text.output, "per class (top-1 fp32 -> plan W4A8)"));
  const auto& fp32 = out["per_class"];
  const auto& plan = out["quantized"]["per_class"];
  for (std::size_t c = 0; c < plan.size(); ++c) {
    const auto line = lines_with(text.output, "  " + fp32[c]["class"].get<std::string>() + " ");
    REQUIRE(line.size() == 1);
    char expected[64];
    std::snprintf(expected, sizeof expected, "top-1 %.2f%% -> %.2f%%",
                  100 * fp32[c]["top1"].get<double>(), 100 * plan[c]["top1"].get<double>());
    CHECK(contains(line[0], expected));
  }
}

TEST_CASE(
    "17.15 evaluate --int8 of a group-wise weight-only plan: the real reason, once; no "
    "calibration") {
  if (!have_dataset()) return;
  const Result r = run("evaluate --config " + kResnetConfig + " --count 32 --plan W4g128 --int8");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  // "  simulated <layers>: <reason>" lines (not "  simulated run ...").
  const auto simulated = lines_with(r.output, "): weights '");
  REQUIRE(simulated.size() == 1);
  // The 9 Convs; the classifier Gemm runs on the W4A32 kernel where the CPU has AVX2.
  const bool w4a32 = query_avx2();
  CHECK(contains(simulated[0], w4a32 ? "  simulated 9 layers (" : "  simulated 10 layers ("));
  // Weight-only: the kernel list's fp32 entry runs it (issue 11: one table decides).
  CHECK(contains(simulated[0], "with float activations (weight-only): onednn_fp32 runs it"));
  CHECK(contains(simulated[0], "int4/group128/sym"));
  CHECK(!contains(r.output, "not a signed integer grid"));
  CHECK(contains(r.output, "calibration: none needed"));
  CHECK(!contains(r.output, "calibrated on"));
}

TEST_CASE("17.15 profile counts models, not model/batch pairs") {
  const fs::path dir = scratch("profile_count");
  const Result r = run("profile --model " + kMlp + " --batch 1,2 --precisions fp32 --budget 0.05 " +
                       "--out " + (dir / "p.yaml").string());
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  CHECK(contains(r.output, "1 model (2 model/batch pairs)"));
}

TEST_CASE("17.15 the README and docs give export's real output flag") {
  for (const fs::path& doc :
       {kSource / "README.md", kSource / "docs/cli.md", kSource / "docs/export.md"}) {
    for (const auto& line : lines_with(read_text(doc), "--format onnx-qdq")) {
      INFO(doc.string(), ": ", line);
      CHECK(!contains(line, "--out "));
    }
  }
  const Result help = run("export --help");
  CHECK(contains(help.output, "--output"));
}

}  // namespace cli_hardening_test
