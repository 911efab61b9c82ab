// The results folder writer (search/output.hpp): stale plans of an earlier front go, names
// that are not UTF-8 or hold CSV/HTML syntax keep every file well-formed, and "infinite / not
// applicable" is null in pareto.json (issue 17.5, 17.6, 17.11).
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.hpp"
#include "search/output.hpp"
#include "search/results_db.hpp"
#include "tests/temp_dir.hpp"

namespace search_output_test {

namespace fs = std::filesystem;
using namespace bitplan;
using namespace bitplan::search;

namespace {

std::string read_text(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// A finished search over two layers with two options each and a front of `front_size`
// evaluations; `layer` names the first layer.
SearchResult result_with_front(std::size_t front_size, const std::string& layer) {
  SearchResult r;
  r.space.layers = {{layer, {"fp32", "W8A8"}}, {"/fc/Gemm", {"fp32", "W8A8"}}};
  r.unsupported = {{"", "no \"int8\" kernel, here"}, {"", ""}};
  r.sensitivity = {{0, 0.01}, {0, 0.02}};
  r.sensitivity_drop = {{0, 0.001}, {0, 0.002}};
  r.latency_ms = {{0.5, NAN}, {0.25, 0.125}};
  r.fp32.top1 = 0.9;
  r.fp32.samples = 100;
  r.fp32.sqnr_db = INFINITY;  // fp32 against itself
  r.fp32.latency_ms = 0.75;
  r.objective_names = {"accuracy", "size"};
  r.policy = "exact";
  r.stop_reason = "policy finished";
  for (std::size_t k = 0; k < front_size; ++k) {
    EvaluatedPlan e;
    e.genome = {static_cast<int>(k % 2), static_cast<int>((k / 2) % 2)};
    e.key = "plan" + std::to_string(k);
    e.metrics.top1 = 0.9 - 0.01 * static_cast<double>(k);
    e.metrics.samples = 100;
    e.metrics.sqnr_db = 20 + static_cast<double>(k);
    e.metrics.size_bytes = 1000.0 - static_cast<double>(k);
    e.objectives = {1 - e.metrics.top1, e.metrics.size_bytes};
    r.evaluations.push_back(e);
    r.front.push_back(k);
  }
  Baseline fp32;
  fp32.name = "fp32";
  fp32.metrics = r.fp32;
  r.baselines.push_back(fp32);
  return r;
}

const OutputInfo kInfo{"model.onnx", "0123456789abcdef", "run.yaml", "bitplan search"};

}  // namespace

TEST_CASE("17.11 write_results removes the plans of an earlier, larger front, and only those") {
  test::TempDir dir;
  write_results(dir.path(), result_with_front(4, "/conv/Conv"), kInfo);
  for (const char* plan : {"plan_000.yaml", "plan_001.yaml", "plan_002.yaml", "plan_003.yaml"})
    CHECK(fs::is_regular_file(dir / plan));
  // Files of other names stay, whatever they look like.
  for (const char* other : {"plan_0007.yaml", "plan_notes.yaml", "plan_004.yaml.tmp.12", "keep"})
    std::ofstream(dir / other) << "mine";

  write_results(dir.path(), result_with_front(2, "/conv/Conv"), kInfo);
  CHECK(fs::is_regular_file(dir / "plan_000.yaml"));
  CHECK(fs::is_regular_file(dir / "plan_001.yaml"));
  CHECK_FALSE(fs::exists(dir / "plan_002.yaml"));
  CHECK_FALSE(fs::exists(dir / "plan_003.yaml"));
  for (const char* other : {"plan_0007.yaml", "plan_notes.yaml", "plan_004.yaml.tmp.12", "keep"})
    CHECK(read_text(dir / other) == "mine");
  const auto pareto = nlohmann::json::parse(read_text(dir / "pareto.json"));
  REQUIRE(pareto["front"].size() == 2);
  CHECK(pareto["front"][1]["plan"] == "plan_001.yaml");

  // A run without a front (sensitivity only) leaves no plan of the earlier one.
  write_results(dir.path(), result_with_front(0, "/conv/Conv"), kInfo);
  CHECK_FALSE(fs::exists(dir / "plan_000.yaml"));
  CHECK_FALSE(fs::exists(dir / "plan_001.yaml"));
}

TEST_CASE("17.11 an infinite SQNR (outputs identical to fp32) is null in pareto.json") {
  test::TempDir dir;
  write_results(dir.path(), result_with_front(1, "/conv/Conv"), kInfo);
  const auto pareto = nlohmann::json::parse(read_text(dir / "pareto.json"));
  CHECK(pareto["fp32"]["sqnr_db"].is_null());
  CHECK(pareto["baselines"][0]["metrics"]["sqnr_db"].is_null());
  CHECK(pareto["front"][0]["subset"]["sqnr_db"] == 20.0);
}

TEST_CASE("17.5 names with invalid UTF-8, commas and quotes keep JSON, CSV and HTML well-formed") {
  test::TempDir dir;
  const std::string layer = "/conv\xFF/\"odd\", <name>";
  OutputInfo info = kInfo;
  info.model_name = "m\xFF.onnx";
  info.command_line = "bitplan search --config r\xFE.yaml";
  write_results(dir.path(), result_with_front(2, layer), info);

  const auto pareto = nlohmann::json::parse(read_text(dir / "pareto.json"));
  CHECK(pareto["model"] == "m\xEF\xBF\xBD.onnx");
  CHECK(pareto["command"] == "bitplan search --config r\xEF\xBF\xBD.yaml");

  const std::string csv = read_text(dir / "sensitivity.csv");
  CHECK(csv.find("\xFF") == std::string::npos);
  CHECK(csv.find("\"/conv\xEF\xBF\xBD/\"\"odd\"\", <name>\",W8A8,") != std::string::npos);
  CHECK(csv.find(",\"no \"\"int8\"\" kernel, here\"\n") != std::string::npos);

  const std::string html = read_text(dir / "report.html");
  CHECK(html.find("\xFF") == std::string::npos);
  CHECK(html.find("\xFE") == std::string::npos);
  CHECK(html.find("<name>") == std::string::npos);
  CHECK(html.find("/conv\xEF\xBF\xBD/&quot;odd&quot;, &lt;name&gt;") != std::string::npos);
}

TEST_CASE("17.6 write_results and prepare_results_folder refuse unusable folders and files") {
  test::TempDir dir;
  const fs::path file = dir / "not_a_folder";
  std::ofstream(file) << "x";
  CHECK_THROWS_WITH_AS(prepare_results_folder(file), doctest::Contains("not a folder"), Error);
  CHECK_THROWS_WITH_AS(write_results(file, result_with_front(1, "/conv/Conv"), kInfo),
                       doctest::Contains("not a folder"), Error);
  CHECK_THROWS_WITH_AS(prepare_results_folder("/dev/null"),
                       doctest::Contains("'/dev/null': a character device, not a folder"), Error);
  // A result file that exists as a folder is found before any work, not when writing.
  const fs::path results = dir / "results";
  fs::create_directories(results / "report.html");
  CHECK_THROWS_WITH_AS(prepare_results_folder(results), doctest::Contains("report.html"), Error);
}

TEST_CASE("17.2 the results database refuses a device or FIFO (SQLite would read or block)") {
  CHECK_THROWS_WITH_AS(ResultsDb("/dev/null"),
                       doctest::Contains("'/dev/null': a character device, not a regular file"),
                       Error);
  test::TempDir dir;
  const fs::path fifo = dir / "results.sqlite";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  CHECK_THROWS_WITH_AS(ResultsDb{fifo}, doctest::Contains("a FIFO (named pipe)"), Error);
  CHECK(fs::is_fifo(fifo));
  CHECK(fs::is_character_file("/dev/null"));
}

TEST_CASE("pareto.json and pareto.csv carry the final numbers beside the subset ones") {
  test::TempDir dir;
  SearchResult r = result_with_front(2, "/conv/Conv");
  r.target = "cpu";
  r.hypervolume = 0.5;
  r.evaluations[1].metrics.bits_per_weight = 4.25;
  PlanMetrics fin = r.evaluations[1].metrics;
  fin.top1 = 0.85;
  fin.samples = 1000;
  r.evaluations[1].final_metrics = fin;
  r.evaluations[1].measured_latency_ms = 0.25;
  r.evaluations[1].measured_latency_iqr_ms = 0.01;
  r.evaluations[1].metrics.latency_ms = 0.3;
  r.baselines[0].final_metrics = r.fp32;
  write_results(dir.path(), r, kInfo);

  const auto pareto = nlohmann::json::parse(read_text(dir / "pareto.json"));
  CHECK(pareto["objectives"] == nlohmann::json{"accuracy", "size"});
  CHECK(pareto["hypervolume"] == 0.5);
  REQUIRE(pareto["front"].size() == 2);
  const auto& second = pareto["front"][1];
  CHECK(second["subset"]["top1"] == doctest::Approx(0.89));
  CHECK(second["final"]["top1"] == 0.85);
  CHECK(second["final"]["samples"] == 1000);
  CHECK(second["accuracy_drop_pt"] == doctest::Approx(5.0));
  CHECK(second["measured_latency_ms"] == 0.25);
  CHECK(second["objectives"] == nlohmann::json(r.evaluations[1].objectives));
  // Without a final re-evaluation the subset numbers stand in; no measured latency is null.
  CHECK(pareto["front"][0]["final"]["top1"] == pareto["front"][0]["subset"]["top1"]);
  CHECK(pareto["front"][0]["measured_latency_ms"].is_null());
  CHECK(pareto["baselines"][0]["final"]["top1"] == 0.9);

  const std::string csv = read_text(dir / "pareto.csv");
  CHECK(csv.find("plan_001.yaml,0.8900,0.8500,1000,5.000,") != std::string::npos);
  CHECK(csv.find(",0.3000,0.2500,") != std::string::npos);  // predicted, measured latency
  // Bits per weight beside the size, wherever the size shows.
  CHECK(second["subset"]["bits_per_weight"] == 4.25);
  CHECK(second["final"]["bits_per_weight"] == 4.25);
  CHECK(csv.find(",size_bytes,bits_per_weight,gbops,") != std::string::npos);
  CHECK(csv.find(",0.3000,0.2500,999,4.2500,0,") != std::string::npos);
  const std::string html = read_text(dir / "report.html");
  CHECK(html.find("<th>size (MB)</th><th>bits per weight</th>") != std::string::npos);
  CHECK(html.find("<td>0.0010</td><td>4.250</td>") != std::string::npos);
  CHECK(html.find("0.001 MB, 4.25 bits per weight") != std::string::npos);
}

}  // namespace search_output_test
