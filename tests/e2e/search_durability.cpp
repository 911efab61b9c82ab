// Durability of `bitplan search` (issue 17, "Keep it tested"): a search killed with SIGKILL
// at random points and then run again reaches the front of an uninterrupted run, byte for
// byte (plan files and every front metric; time spent and reuse counts aside).
#include <doctest/doctest.h>

#include "run_bitplan.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>

namespace search_durability_test {

namespace fs = std::filesystem;
using namespace bitplan::e2e;  // run, Result, contains, kSource, ... (run_bitplan.hpp)
using nlohmann::json;

namespace {

// A small search (fmnist_resnet, 500 validation images, 24 evaluations: seconds of work in
// every phase; no latency objective, so no timing enters the front) with its own database.
fs::path write_config(const fs::path& dir, const std::string& name) {
  const fs::path config = dir / (name + ".yaml");
  std::ofstream(config)
      << "model: " << (kSource / "models/fmnist_resnet.onnx").string() << "\n"
      << "dataset:\n  format: idx\n  images: " << kFashionImages.string()
      << "\n  labels: " << kFashionLabels.string()
      << "\n  preprocess: {scale: 0.00392156862745098, mean: [0.2860], std: [0.3530], "
         "layout: NCHW}\n  calibration: {count: 64, seed: 0}\n  validation: {count: 500}\n"
      << "evaluate: {batch: 64, threads: 0}\n"
      << "search:\n  options: [fp32, W8A8, W7A8, W4A8]\n  objectives: [accuracy, size]\n"
      << "  policy: nsga2\n  population: 8\n  budget: {evaluations: 24}\n  subset: 300\n"
      << "  sensitivity_subset: 100\n  final_samples: 500\n"
      << "  output: " << name << "_out\n  database: " << name << "_db/results.sqlite\n";
  return config;
}

// The front as a document without what legitimately differs between runs.
json comparable_front(const fs::path& out) {
  const json pareto = json::parse(read_text(out / "pareto.json"));
  json front = pareto.at("front");
  for (auto& point : front) {
    point.erase("measured_latency_ms");
    point.erase("measured_latency_iqr_ms");
    point["plan_file"] = read_text(out / point.at("plan").get<std::string>());
  }
  return {{"front", front}, {"baselines", pareto.at("baselines")}, {"fp32", pareto.at("fp32")}};
}

// Starts `bitplan search --config CONFIG`, output to LOG; returns the child's pid.
pid_t start_search(const fs::path& config, const fs::path& log) {
  const std::string config_s = config.string(), log_s = log.string();
  std::fflush(nullptr);  // nothing buffered here may be written twice by the child
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    const int fd = open(log_s.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd < 0 || dup2(fd, STDOUT_FILENO) < 0 || dup2(fd, STDERR_FILENO) < 0) _exit(127);
    execl(BITPLAN_EXECUTABLE, BITPLAN_EXECUTABLE, "search", "--config", config_s.c_str(),
          static_cast<char*>(nullptr));
    _exit(127);
  }
  return pid;
}

}  // namespace

TEST_CASE("search durability: SIGKILL at random points, then a rerun gives the same front") {
  if (!fs::exists(kFashionImages) || !fs::exists(kFashionLabels)) {
    bitplan::testing::skip(kFashionMissing);
    return;
  }
  using namespace std::chrono;
  const fs::path dir =
      fs::temp_directory_path() / ("bitplan_e2e_durability_" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);

  // The uninterrupted run, timed: the kills fall inside its duration.
  const fs::path reference = write_config(dir, "reference");
  const auto start = steady_clock::now();
  const Result whole = run("search --config " + reference.string());
  const double seconds = duration<double>(steady_clock::now() - start).count();
  INFO(whole.output);
  REQUIRE(whole.exit_code == 0);
  const json expected = comparable_front(dir / "reference_out");
  REQUIRE(!expected.at("front").empty());

  // Two kills at random moments of the run (each resumes what the one before stored), then
  // a run to the end. The seed is printed so that a failure can be replayed.
  const fs::path killed = write_config(dir, "killed");
  const fs::path log = dir / "killed.log";
  const unsigned seed = std::random_device{}();
  std::mt19937 random(seed);
  std::uniform_real_distribution<double> moment(0.15 * seconds, 0.85 * seconds);
  INFO("seed " << seed << ", uninterrupted run " << seconds << " s");
  int killed_runs = 0;
  for (int kill_number = 0; kill_number < 2; ++kill_number) {
    const double delay = moment(random);
    INFO("kill " << kill_number << " after " << delay << " s");
    const pid_t pid = start_search(killed, log);
    const auto deadline = steady_clock::now() + duration<double>(delay);
    int status = 0;
    bool finished = false;
    while (steady_clock::now() < deadline && !finished) {
      finished = waitpid(pid, &status, WNOHANG) == pid;
      std::this_thread::sleep_for(milliseconds(10));
    }
    if (!finished) {
      REQUIRE(kill(pid, SIGKILL) == 0);
      REQUIRE(waitpid(pid, &status, 0) == pid);
      ++killed_runs;
    }
    INFO(read_text(log));
    // Killed, or done before the kill came (a resumed run is faster): never an error exit.
    CHECK((WIFSIGNALED(status) || (WIFEXITED(status) && WEXITSTATUS(status) == 0)));
  }
  WARN_MESSAGE(killed_runs > 0, "every run finished before its kill: nothing was interrupted");
  const Result resumed = run("search --config " + killed.string());
  INFO(read_text(log));
  INFO(resumed.output);
  REQUIRE(resumed.exit_code == 0);
  const json got = comparable_front(dir / "killed_out");
  CHECK(got.dump(1) == expected.dump(1));
  fs::remove_all(dir);
}

}  // namespace search_durability_test
