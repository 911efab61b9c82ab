// End-to-end tests of `bitplan profile`, `bitplan search` and `bitplan sensitivity` on the
// smallest fixture (fmnist_mlp) with tiny subsets: the results folder, reuse of the results
// database, every policy, bad input (one clear message, the documented exit code) and Ctrl-C.
#include <doctest/doctest.h>

#include "run_bitplan.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace search_cli_tests_test {

namespace fs = std::filesystem;
using namespace bitplan::e2e;  // run, Result, contains, kSource, ... (run_bitplan.hpp)
using nlohmann::json;

namespace {

json read_json(const fs::path& file) {
  REQUIRE(fs::exists(file));
  std::ifstream in(file);
  return json::parse(in);  // throws (test error) on invalid JSON
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) out.push_back(line);
  return out;
}

bool have_dataset() {
  return fs::exists(kFashionImages) && fs::exists(kFashionLabels);
}

// One temporary folder per test process, holding the hardware profile (made once with
// `bitplan profile`), the configs, the results database and the results folders.
class Workspace {
 public:
  static Workspace& get() {
    static Workspace w;
    return w;
  }
  const fs::path& dir() const { return dir_; }
  fs::path profile() {
    if (!profiled_) {
      const Result r = run("profile --model " + (kSource / "models/fmnist_mlp.onnx").string() +
                           " --batch 1 --budget 0.2 --out " + (dir_ / "cpu.yaml").string());
      INFO(r.output);
      REQUIRE(r.exit_code == 0);
      profile_output_ = r.output;
      profiled_ = true;
    }
    return dir_ / "cpu.yaml";
  }
  const std::string& profile_output() const { return profile_output_; }

  // The small search config: fmnist_mlp, 300 validation images, 12 evaluations. `search`
  // replaces or adds keys of the search section ("budget" -> "{evaluations: 0}").
  fs::path config(const std::string& name = "run.yaml",
                  const std::vector<std::pair<std::string, std::string>>& search = {},
                  bool with_dataset = true, const std::string& validation = "300") {
    profile();
    std::vector<std::pair<std::string, std::string>> keys{
        {"options", "[fp32, W7A8, W4A8]"}, {"subset", "200"},
        {"sensitivity_subset", "100"},     {"final_samples", "300"},
        {"budget", "{evaluations: 12}"},   {"database", "db/results.sqlite"}};
    for (const auto& [key, value] : search) {
      bool replaced = false;
      for (auto& kv : keys)
        if (kv.first == key) kv.second = value, replaced = true;
      if (!replaced) keys.emplace_back(key, value);
    }
    std::string text = "model: " + (kSource / "models/fmnist_mlp.onnx").string() + "\n";
    if (with_dataset)
      text += "dataset:\n  format: idx\n  images: " + kFashionImages.string() +
              "\n  labels: " + kFashionLabels.string() +
              "\n  preprocess: {scale: 0.00392156862745098, mean: [0.2860], std: [0.3530], "
              "layout: NCHW}\n  calibration: {count: 64, seed: 0}\n  validation: {count: " +
              validation + "}\n";
    text += "evaluate: {batch: 64, threads: 0}\ntarget: cpu.yaml\nsearch:\n";
    for (const auto& [key, value] : keys) text += "  " + key + ": " + value + "\n";
    std::ofstream(dir_ / name) << text;
    return dir_ / name;
  }

 private:
  Workspace()
      : dir_(fs::temp_directory_path() / ("bitplan_e2e_search_" + std::to_string(getpid()))) {
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  ~Workspace() { fs::remove_all(dir_); }
  fs::path dir_;
  bool profiled_ = false;
  std::string profile_output_;
};

std::set<std::string> front_keys(const json& pareto) {
  std::set<std::string> keys;
  for (const auto& p : pareto["front"]) keys.insert(p["key"].get<std::string>());
  return keys;
}

}  // namespace

TEST_CASE("profile: writes a hardware profile; a second run measures only what is missing") {
  Workspace& ws = Workspace::get();
  const fs::path profile = ws.profile();
  CHECK(contains(ws.profile_output(), "measuring the CPU's ceilings"));
  CHECK(contains(ws.profile_output(), "timing fp32"));
  const std::string text = read_text(profile);
  CHECK(text.rfind("bitplan_hw_profile: 1", 0) == 0);
  CHECK(contains(text, "backend: onednn"));
  for (const char* key : {"gemm:m1:n256:k784", "gemm:m1:n128:k256", "gemm:m1:n10:k128"})
    CHECK(contains(text, key));
  CHECK(contains(text, "gemm_fp32_gflops"));
  CHECK(contains(text, "model: fmnist_mlp.onnx"));

  // Same model, batch and --out: nothing is timed again and the file keeps its entries.
  const fs::path copy = ws.dir() / "cpu_again.yaml";
  fs::copy_file(profile, copy, fs::copy_options::overwrite_existing);
  const Result again = run("profile --model " + (kSource / "models/fmnist_mlp.onnx").string() +
                           " --batch 1 --budget 0.2 --out " + copy.string());
  CHECK(again.exit_code == 0);
  CHECK(!contains(again.output, ": timing "));  // (a noise warning may say "timings")
  CHECK(!contains(again.output, "measuring the CPU's ceilings"));
  CHECK(contains(again.output, "12 entries, 1 model (1 model/batch pair)"));
}

TEST_CASE("search: writes the front, plans evaluate accepts, CSVs and the report; a rerun reuses") {
  if (!have_dataset()) {
    bitplan::testing::skip(kFashionMissing);
    return;
  }
  Workspace& ws = Workspace::get();
  const fs::path config = ws.config();
  const fs::path out = ws.dir() / "front";
  const std::string command = "search --config " + config.string() + " --output " + out.string();
  const Result r = run(command);
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  CHECK(contains(r.output, "front of"));

  const json pareto = read_json(out / "pareto.json");
  CHECK(pareto["bitplan_results"] == 1);
  CHECK(pareto["model"] == "fmnist_mlp.onnx");
  CHECK(pareto["policy"] == "nsga2");
  CHECK(pareto["interrupted"] == false);
  CHECK(pareto["evaluations"].get<int>() <= 12);
  CHECK(pareto["evaluations"].get<int>() ==
        pareto["evaluations_run"].get<int>() + pareto["evaluations_reused"].get<int>());
  const json& front = pareto["front"];
  REQUIRE(front.is_array());
  REQUIRE(!front.empty());
  for (const auto& p : front) {
    CAPTURE(p.dump());
    CHECK(fs::exists(out / p["plan"].get<std::string>()));
    CHECK(p["final"]["samples"] == 300);
    CHECK(p["subset"]["samples"] == 200);
    CHECK(p["objectives"].size() == 3);  // accuracy, latency, size
    CHECK(p["subset"]["latency_ms"].is_number());
  }
  // evaluate accepts the plan and, on the same selection and calibration, agrees exactly.
  const std::string plan0 = (out / front[0]["plan"].get<std::string>()).string();
  const Result ev = run("evaluate --config " + config.string() + " --plan " + plan0 + " --json");
  INFO(ev.output);
  REQUIRE(ev.exit_code == 0);
  // stdout and stderr are merged: the JSON document is the outermost braces.
  const auto open = ev.output.find('{'), close = ev.output.rfind('}');
  REQUIRE(open != std::string::npos);
  REQUIRE(close != std::string::npos);
  const json evaluated = json::parse(ev.output.substr(open, close - open + 1));
  REQUIRE(evaluated.contains("quantized"));
  CHECK(evaluated["quantized"]["top1"].get<double>() == front[0]["final"]["top1"].get<double>());
  CHECK(evaluated["quantized"]["layers_quantized"] == front[0]["quantized_layers"]);

  const auto csv = lines_of(read_text(out / "pareto.csv"));
  REQUIRE(!csv.empty());
  CHECK(csv[0].rfind("plan,", 0) == 0);
  CHECK(csv.size() == front.size() + 1);
  const auto sens = lines_of(read_text(out / "sensitivity.csv"));
  CHECK(sens.size() == 1 + 3 * 3);  // header + 3 layers x 3 options
  const std::string html = read_text(out / "report.html");
  CHECK(contains(html, "<svg"));
  CHECK(contains(html, "/net/net.1/Gemm"));

  // The same command again: every evaluation comes from the database, the same front.
  const Result again = run(command);
  INFO(again.output);
  REQUIRE(again.exit_code == 0);
  const json second = read_json(out / "pareto.json");
  CHECK(second["evaluations"] == pareto["evaluations"]);
  CHECK(second["evaluations_reused"] == second["evaluations"]);
  CHECK(second["evaluations_run"] == 0);
  CHECK(front_keys(second) == front_keys(pareto));
}

TEST_CASE("search: --dry-run prints the space and evaluates nothing") {
  if (!have_dataset()) {
    bitplan::testing::skip(kFashionMissing);
    return;
  }
  Workspace& ws = Workspace::get();
  const fs::path config = ws.config("dry.yaml", {{"database", "dry_db/results.sqlite"}});
  const fs::path out = ws.dir() / "dry_out";
  const Result r =
      run("search --config " + config.string() + " --output " + out.string() + " --dry-run");
  INFO(r.output);
  CHECK(r.exit_code == 0);
  CHECK(contains(r.output, "3 layers, 9 (layer, option) pairs"));
  CHECK(contains(r.output, "policy   nsga2"));
  CHECK(contains(r.output, "calibration 64 samples (dataset order) of the evaluation images " +
                               kFashionImages.string()));
  for (const char* layer : {"/net/net.1/Gemm", "/net/net.3/Gemm", "/net/net.5/Gemm"})
    CHECK(contains(r.output, layer));
  // W7A8 runs on the int8 kernels of every CPU (8-bit weights need VNNI for exact int8).
  CHECK(contains(r.output, "fp32 W7A8 W4A8"));
  CHECK(!contains(r.output, "sensitivity"));
  CHECK(!fs::exists(out));
  CHECK(!fs::exists(ws.dir() / "dry_db"));
}

TEST_CASE("search sensitivity: writes sensitivity.csv and no front") {
  if (!have_dataset()) {
    bitplan::testing::skip(kFashionMissing);
    return;
  }
  Workspace& ws = Workspace::get();
  const fs::path out = ws.dir() / "sens";
  const Result r =
      run("sensitivity --config " + ws.config().string() + " --output " + out.string());
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  const auto rows = lines_of(read_text(out / "sensitivity.csv"));
  REQUIRE(rows.size() == 1 + 3 * 3);
  CHECK(rows[0] == "layer,option,kl,top1_drop,predicted_latency_ms,unsupported");
  for (std::size_t i = 1; i < rows.size(); ++i) {
    CAPTURE(rows[i]);
    if (contains(rows[i], ",fp32,")) CHECK(contains(rows[i], ",fp32,0,0.00000,"));
    CHECK(contains(rows[i], "\"\""));  // every option runs on this CPU
  }
  const json pareto = read_json(out / "pareto.json");
  CHECK(pareto["front"].empty());
  CHECK(pareto["evaluations"] == 0);
  CHECK(pareto["stop_reason"] == "sensitivity analysis only");
}

TEST_CASE("search: every policy runs with a small budget") {
  if (!have_dataset()) {
    bitplan::testing::skip(kFashionMissing);
    return;
  }
  Workspace& ws = Workspace::get();
  const fs::path config = ws.config();
  for (const std::string policy : {"exact", "nsga2", "reinforce", "random"}) {
    CAPTURE(policy);
    const fs::path out = ws.dir() / ("policy_" + policy);
    const Result r = run("search --config " + config.string() + " --policy " + policy +
                         " --evaluations 8 --output " + out.string());
    INFO(r.output);
    REQUIRE(r.exit_code == 0);
    const json pareto = read_json(out / "pareto.json");
    CHECK(pareto["policy"] == policy);
    CHECK(pareto["evaluations"].get<int>() >= 1);
    CHECK(pareto["evaluations"].get<int>() <= 8);
    REQUIRE(!pareto["front"].empty());
    for (const auto& p : pareto["front"]) CHECK(fs::exists(out / p["plan"].get<std::string>()));
  }
}

TEST_CASE("search and profile: bad input gives one clear message and the documented exit code") {
  Workspace& ws = Workspace::get();
  const std::string model = (kSource / "models/fmnist_mlp.onnx").string();
  SUBCASE("--set without '=' is a usage error") {
    const Result r = run("search --config " + ws.config().string() + " --set search.policy");
    CHECK(r.exit_code == 2);
    CHECK(contains(r.output, "expected KEY=VALUE"));
  }
  SUBCASE("a search without a dataset") {
    const fs::path config = ws.config("no_dataset.yaml", {}, false);
    const Result r = run("search --config " + config.string());
    CHECK(r.exit_code == 3);
    CHECK(contains(r.output, "needs a dataset"));
  }
  SUBCASE("profile of a model that does not exist") {
    // An existing --out already has the ceilings, so nothing is measured before the error.
    const fs::path out = ws.dir() / "cpu_missing_model.yaml";
    fs::copy_file(ws.profile(), out, fs::copy_options::overwrite_existing);
    const Result r =
        run("profile --model " + (ws.dir() / "absent.onnx").string() + " --out " + out.string());
    CHECK(r.exit_code == 3);
    CHECK(contains(r.output, "absent.onnx"));
    CHECK(contains(r.output, "does not exist"));
  }
  SUBCASE("profile --backend cuda says where GPU layers are timed") {
    const Result r = run("profile --backend cuda --model " + model + " --out " +
                         (ws.dir() / "cuda.yaml").string());
    CHECK(r.exit_code == 4);
    CHECK(contains(r.output, "profile --backend cuda"));
    CHECK(contains(r.output, "bitplan-cuda-profile"));
    CHECK(!fs::exists(ws.dir() / "cuda.yaml"));
  }
  SUBCASE("profile: unknown backend and precision are usage errors") {
    CHECK(run("profile --backend tpu --model " + model).exit_code == 2);
    const Result r = run("profile --precisions fp32,fp8 --model " + model + " --out " +
                         (ws.dir() / "p.yaml").string());
    CHECK(r.exit_code == 2);
    CHECK(contains(r.output, "'fp8'"));
  }
  if (!have_dataset()) {
    bitplan::testing::skip(kFashionMissing);
    return;
  }
  SUBCASE("unknown search key in the file: line and column") {
    const fs::path config = ws.config("unknown_key.yaml", {{"frobnicate", "1"}});
    const Result r = run("search --config " + config.string());
    CHECK(r.exit_code == 3);
    CHECK(contains(r.output, "unknown_key.yaml"));
    // model, 7 dataset lines, evaluate, target, search, 6 search keys: line 18.
    CHECK(contains(r.output, "line 18, column 3"));
    CHECK(contains(r.output, "search.frobnicate"));
  }
  SUBCASE("a latency budget no plan meets names the fastest plan") {
    const Result r = run("search --config " + ws.config().string() +
                         " --set search.constraints.max_latency_ms=0.000001");
    CHECK(r.exit_code == 3);
    CHECK(contains(r.output, "fastest plan"));
  }
  SUBCASE("a size budget no plan meets names the smallest plan in MB") {
    // Smallest plan: every layer W4A8 = 4-bit codes + fp32 scales per channel + fp32 biases
    // = 120528 bytes.
    const Result r = run("search --config " + ws.config().string() +
                         " --set search.constraints.max_size_mb=0.05");
    CHECK(r.exit_code == 3);
    CHECK(
        contains(r.output, "max_size_mb 0.05 is below the smallest plan of the space, 0.1205 MB"));
  }
  SUBCASE("unknown policy lists the policies") {
    const Result r = run("search --config " + ws.config().string() + " --policy nsag2 --output " +
                         (ws.dir() / "bad_policy").string());
    CHECK(r.exit_code == 2);
    CHECK(contains(r.output, "'nsag2'"));
    for (const char* p : {"exact", "nsga2", "reinforce", "random"}) CHECK(contains(r.output, p));
  }
  SUBCASE("an override pattern that matches no layer is named") {
    const Result r = run("search --config " + ws.config().string() +
                         " --set 'search.overrides=[{layers: \"/nothing/.*\", options: [fp32]}]'");
    CHECK(r.exit_code == 3);
    CHECK(contains(r.output, "'/nothing/.*'"));
    CHECK(contains(r.output, "matches no quantizable layer"));
  }
  SUBCASE("an option that is no spec label") {
    const Result r =
        run("search --config " + ws.config().string() + " --set 'search.options=[fp32, W8Z8]'");
    CHECK(r.exit_code == 3);
    CHECK(contains(r.output, "'W8Z8'"));
  }
  SUBCASE("search.latency_sequence needs a token model and a whole number >= 1") {
    const Result images = run("search --config " + ws.config().string() +
                              " --set search.latency_sequence=1 --dry-run");
    CHECK(images.exit_code == 3);
    CHECK(contains(images.output, "search.latency_sequence 1"));
    CHECK(contains(images.output, "no token input"));
    const Result zero =
        run("search --config " + ws.config().string() + " --set search.latency_sequence=0");
    CHECK(zero.exit_code == 3);
    CHECK(contains(zero.output, "search.latency_sequence"));
  }
  SUBCASE("a corrupt hardware profile as the target names the file") {
    std::ofstream(ws.dir() / "corrupt.yaml") << "bitplan_hw_profile: 1\ntarget: [oops\n";
    const Result r = run("search --config " + ws.config().string() + " --target " +
                         (ws.dir() / "corrupt.yaml").string());
    CHECK(r.exit_code == 3);
    CHECK(contains(r.output, "corrupt.yaml"));
    CHECK(contains(r.output, "line 3"));
  }
}

// Regression tests for bugs found while writing these tests.
TEST_CASE("search: --set of an unknown key does not claim a line of the file") {
  // Was: the overridden node has no position in the file, so the message reads
  // "config '...' line 0, column 0: unknown key 'search.frobnicate'" - a line that does not
  // exist. It should name the --set override instead.
  if (!have_dataset()) return;
  Workspace& ws = Workspace::get();
  const Result r = run("search --config " + ws.config().string() + " --set search.frobnicate=1");
  CHECK(r.exit_code == 3);
  CHECK(contains(r.output, "search.frobnicate"));
  CHECK(!contains(r.output, "line 0, column 0"));
  CHECK(contains(r.output, "--set"));
}

TEST_CASE("search: an infeasible size budget is reported in the units the user gave") {
  // Was: the driver hands the exact solver budgets with the fixed costs subtracted, and the
  // solver's reason prints them raw: `--set search.constraints.max_size_mb=0.05` reads
  // "... the smallest plan is 0.121 MB; size budget 48424 is below the smallest plan's
  // 118952" - bytes, minus the 1576 bytes of float biases, next to the MB the user gave. The
  // latency message does the same (per-layer ms without the model's fixed time).
  if (!have_dataset()) return;
  Workspace& ws = Workspace::get();
  const Result r =
      run("search --config " + ws.config().string() + " --set search.constraints.max_size_mb=0.05");
  CHECK(r.exit_code == 3);
  CHECK(!contains(r.output, "48424"));
  CHECK(!contains(r.output, "118952"));
}

TEST_CASE("search: an unknown policy is refused before any evaluation (--dry-run)") {
  // Was: the policy name is only checked by make_policy, after calibration, the sensitivity
  // analysis and the uniform baselines have run (minutes on a real model); --dry-run, which
  // "prints the resolved run", accepts it and exits 0.
  if (!have_dataset()) return;
  Workspace& ws = Workspace::get();
  const Result r = run("search --config " + ws.config().string() + " --policy nsag2 --dry-run");
  CHECK(r.exit_code == 2);
  CHECK(contains(r.output, "'nsag2'"));
}

TEST_CASE("search: Ctrl-C exits 130 and writes the partial front") {
  if (!have_dataset()) {
    bitplan::testing::skip(kFashionMissing);
    return;
  }
  Workspace& ws = Workspace::get();
  // A space of 8^3 plans on the whole test set, no evaluation limit: minutes of work.
  const fs::path config =
      ws.config("interrupt.yaml",
                {{"options", "[fp32, W8A8, W7A8, W6A8, W5A8, W4A8, W3A8, W2A8]"},
                 {"subset", "10000"},
                 {"policy", "random"},
                 {"budget", "{evaluations: 0}"},
                 {"database", "interrupt_db/results.sqlite"}},
                true, "10000");
  const fs::path out = ws.dir() / "interrupted";
  const fs::path db = ws.dir() / "interrupt_db/results.sqlite";
  const fs::path log = ws.dir() / "interrupt.log";
  const std::string config_s = config.string(), out_s = out.string(), log_s = log.string();
  std::fflush(nullptr);  // nothing buffered here may be written twice by the child
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    const int fd = open(log_s.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || dup2(fd, STDOUT_FILENO) < 0 || dup2(fd, STDERR_FILENO) < 0) _exit(127);
    execl(BITPLAN_EXECUTABLE, BITPLAN_EXECUTABLE, "search", "--config", config_s.c_str(),
          "--output", out_s.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  // The results database is opened after the SIGINT handler is installed, right before the
  // fp32 reference and the sensitivity analysis.
  using namespace std::chrono;
  const auto start = steady_clock::now();
  int status = 0;
  bool exited = false;
  while (!fs::exists(db) && steady_clock::now() - start < seconds(60)) {
    if (waitpid(pid, &status, WNOHANG) == pid) {
      exited = true;
      break;
    }
    std::this_thread::sleep_for(milliseconds(50));
  }
  INFO(read_text(log));
  REQUIRE(!exited);
  REQUIRE(fs::exists(db));
  std::this_thread::sleep_for(milliseconds(2000));
  REQUIRE(kill(pid, SIGINT) == 0);
  const auto sent = steady_clock::now();
  while (waitpid(pid, &status, WNOHANG) != pid) {
    if (steady_clock::now() - sent > seconds(60)) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      FAIL("bitplan search did not stop within 60 s of SIGINT");
    }
    std::this_thread::sleep_for(milliseconds(50));
  }
  const std::string output = read_text(log);
  INFO(output);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 130);
  const json pareto = read_json(out / "pareto.json");
  CHECK(pareto["interrupted"] == true);
  CHECK(contains(pareto["stop_reason"].get<std::string>(), "interrupted"));
  for (const auto& p : pareto["front"]) CHECK(fs::exists(out / p["plan"].get<std::string>()));
}

// --- Issue 11: the host and the target profile ----------------------------------------------

namespace {

// A copy of the profile `from` that says it was measured on another CPU (another oneDNN
// ISA than this one's), as a profile brought from another machine would.
fs::path profile_of_another_cpu(const fs::path& from, const fs::path& to) {
  std::string text = read_text(from);
  const auto isa_at = text.find("onednn_isa: ");
  REQUIRE(isa_at != std::string::npos);
  const auto end = text.find('\n', isa_at);
  const std::string isa = text.substr(isa_at + 12, end - isa_at - 12);
  const std::string other = isa == "avx512_core_amx" ? "avx2" : "avx512_core_amx";
  text.replace(isa_at + 12, isa.size(), other);
  std::ofstream(to) << text;
  return to;
}

}  // namespace

TEST_CASE("search --target host: this CPU profiled on first use under its identity, then reused") {
  if (!have_dataset()) {
    bitplan::testing::skip(kFashionMissing);
    return;
  }
  Workspace& ws = Workspace::get();
  const fs::path dir = ws.dir() / "host";
  fs::create_directories(dir);
  const fs::path config = ws.config("host.yaml", {{"budget", "{evaluations: 4}"}});
  const std::string command = "search --config " + config.string() + " --target host --output " +
                              (dir / "out").string() + " --threads 1";
  const Result first = run(command, dir);
  INFO(first.output);
  REQUIRE(first.exit_code == 0);
  CHECK(contains(first.output, "target host (hw_profiles/cpu-"));
  CHECK(contains(first.output, "timing fp32"));
  CHECK(contains(first.output, "timing int8"));  // W7A8 and W4A8 run on the int8 kernels
  CHECK(!contains(first.output, "another CPU"));
  // One file, named by model, ISA, cores and the thread count.
  std::vector<fs::path> profiles;
  for (const auto& entry : fs::directory_iterator(dir / "hw_profiles"))
    profiles.push_back(entry.path());
  REQUIRE(profiles.size() == 1);
  const std::string name = profiles[0].stem().string();
  REQUIRE(name.size() > 4);
  CHECK(name.substr(name.size() - 4) == "c-1t");
  const json pareto = read_json(dir / "out" / "pareto.json");
  CHECK(pareto["target"] == name);
  // (A noise warning may come on a busy machine; never one about another CPU.)
  for (const auto& warning : pareto["target_warnings"])
    CHECK(!contains(warning.get<std::string>(), "another CPU"));
  // The front's latencies are measured end to end: the profile is of this CPU.
  for (const auto& p : pareto["front"]) CHECK(p["measured_latency_ms"].is_number());

  const Result second = run(command, dir);
  INFO(second.output);
  REQUIRE(second.exit_code == 0);
  CHECK(!contains(second.output, "timing fp32"));
  CHECK(!contains(second.output, "measuring the CPU's ceilings"));
}

TEST_CASE("profile --out of another CPU's profile is refused, never merged") {
  Workspace& ws = Workspace::get();
  const fs::path other = profile_of_another_cpu(ws.profile(), ws.dir() / "other_cpu.yaml");
  const std::string before = read_text(other);
  const Result r = run("profile --model " + (kSource / "models/fmnist_mlp.onnx").string() +
                       " --batch 1 --budget 0.2 --out " + other.string());
  INFO(r.output);
  CHECK(r.exit_code == 3);
  CHECK(contains(r.output, "was measured on another CPU (oneDNN ISA '"));
  CHECK(contains(r.output, "give another --out"));
  CHECK(read_text(other) == before);
}

TEST_CASE("search with another CPU's profile: one warning line, and the report says it") {
  if (!have_dataset()) {
    bitplan::testing::skip(kFashionMissing);
    return;
  }
  Workspace& ws = Workspace::get();
  const fs::path other = profile_of_another_cpu(ws.profile(), ws.dir() / "other_target.yaml");
  const fs::path config = ws.config("other.yaml", {{"budget", "{evaluations: 4}"}});
  const fs::path out = ws.dir() / "other_out";
  const Result r = run("search --config " + config.string() + " --target " + other.string() +
                       " --output " + out.string());
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  const auto at = r.output.find("was profiled on another CPU");
  REQUIRE(at != std::string::npos);
  CHECK(r.output.find("was profiled on another CPU", at + 1) == std::string::npos);
  const json pareto = read_json(out / "pareto.json");
  REQUIRE(!pareto["target_warnings"].empty());  // and a noise warning on a busy machine
  CHECK(contains(pareto["target_warnings"][0].get<std::string>(), "another CPU"));
  CHECK(contains(read_text(out / "report.html"), "was profiled on another CPU"));
  // Latencies of another machine are not compared with this one's.
  for (const auto& p : pareto["front"]) CHECK(p["measured_latency_ms"].is_null());
}

TEST_CASE("search --dry-run: each unsupported option's reason, once, from the kernel list") {
  if (!have_dataset()) {
    bitplan::testing::skip(kFashionMissing);
    return;
  }
  Workspace& ws = Workspace::get();
  // The shipped profile is of an AVX2 EPYC (no VNNI): 8-bit weights have no exact int8 kernel.
  const fs::path config = ws.config("reasons.yaml", {{"options", "[fp32, W8A8, W4g16A8, W7A8]"}});
  const Result r = run("search --config " + config.string() + " --dry-run --target " +
                       (kSource / "hw_profiles/cpu-amd-epyc-2t.yaml").string());
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  CHECK(contains(r.output, "W8A8(unsupported [1])"));
  CHECK(contains(r.output, "W4g16A8(unsupported [2])"));
  CHECK(contains(r.output, "  [1] this CPU has no VNNI (oneDNN ISA avx2)"));
  CHECK(contains(r.output, "  [2] weights 'int4/group16/sym' have a scale per group of 16"));
  CHECK(!contains(r.output, "[3]"));
}

}  // namespace search_cli_tests_test
