// `bitplan search` and `bitplan sensitivity` across MPI ranks (search/mpi_runner.hpp, issue
// 16): the same front and sensitivity tables on 1, 2 and 3 ranks, a run whose worker is killed
// resumes to that front, a worker that hangs and a rank that cannot load the model fail the
// job naming them. mpirun --oversubscribe: CI has 2 cores.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <thread>

#include "tests/skip.hpp"

namespace search_mpi_test {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const fs::path kSource = BITPLAN_SOURCE_DIR;
const fs::path kImages = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz";
const fs::path kLabels = "/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz";

struct Result {
  int exit_code;
  std::string output;  // stdout and stderr together
};

// Runs `command` with /bin/sh in `dir`, stopped after 60 s (a hung job fails the test rather
// than the CI job).
Result shell(const std::string& command, const fs::path& dir) {
  const std::string line = "cd '" + dir.string() + "' && timeout 60 " + command + " 2>&1";
  Result r{-1, ""};
  FILE* pipe = popen(line.c_str(), "r");
  REQUIRE(pipe != nullptr);
  std::array<char, 4096> buffer{};
  while (std::fgets(buffer.data(), buffer.size(), pipe)) r.output += buffer.data();
  const int status = pclose(pipe);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

// `bitplan <command> --config run.yaml` (fmt rather than string +: GCC 12 reads a false
// -Wstringop-overread into the latter).
std::string bitplan_command(const char* command) {
  return fmt::format("{} {} --config run.yaml", BITPLAN_EXECUTABLE, command);
}

std::string bitplan_search() {
  return bitplan_command("search");
}

std::string mpirun(int ranks) {
  return fmt::format("{} --oversubscribe -np {} ", BITPLAN_MPIEXEC, ranks);
}

std::string read_text(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// A small search (the fixture ResNet, 300 validation images, 16 evaluations, one thread per
// rank) in `dir`/run.yaml with its own output, database and calibration cache there; the
// command line is the same in every folder, so pareto.json may be compared byte for byte.
fs::path search_folder(const fs::path& parent, const std::string& name,
                       const fs::path& model = kSource / "models/fmnist_resnet.onnx") {
  const fs::path dir = parent / name;
  fs::create_directories(dir);
  std::ofstream(dir / "run.yaml")
      << "model: " << model.string() << "\n"
      << "dataset:\n  format: idx\n  images: " << kImages.string()
      << "\n  labels: " << kLabels.string()
      << "\n  preprocess: {scale: 0.00392156862745098, mean: [0.2860], std: [0.3530], "
         "layout: NCHW}\n  calibration: {count: 64, seed: 0}\n  validation: {count: 300}\n"
      << "evaluate: {batch: 50, threads: 1}\n"
      << "search:\n  options: [fp32, W8A8, W4A8]\n  objectives: [accuracy, size]\n"
      << "  policy: nsga2\n  population: 8\n  budget: {evaluations: 16}\n  subset: 200\n"
      << "  sensitivity_subset: 25\n  final_samples: 200\n  output: out\n"
      << "  database: db/results.sqlite\n  mpi: {evaluation_timeout: 30}\n";
  return dir;
}

// pareto.json without the seconds spent (the one field that differs between equal runs)
// and, for a resumed run, without how many evaluations it ran and reused.
std::string comparable_pareto(const fs::path& dir, bool resumed) {
  json pareto = json::parse(read_text(dir / "out/pareto.json"));
  pareto.erase("seconds");
  if (resumed) {
    pareto.erase("evaluations_run");
    pareto.erase("evaluations_reused");
  }
  return pareto.dump(1);
}

// The database's sensitivity rows in the order they were written, every value exactly (the
// shortest text that reads back to the same double), without the seconds and dates.
std::string sensitivity_rows(const fs::path& dir) {
  sqlite3* db = nullptr;
  const std::string path = (dir / "db/results.sqlite").string();
  REQUIRE(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  sqlite3_stmt* rows = nullptr;
  REQUIRE(sqlite3_prepare_v2(db,
                             "SELECT context, layer, option, value, metrics FROM sensitivity "
                             "ORDER BY rowid",
                             -1, &rows, nullptr) == SQLITE_OK);
  std::string out;
  const auto text = [&](int column) {
    return std::string(reinterpret_cast<const char*>(sqlite3_column_text(rows, column)));
  };
  while (sqlite3_step(rows) == SQLITE_ROW)
    out += fmt::format("{} {} {} {} {}\n", text(0), text(1), text(2),
                       sqlite3_column_double(rows, 3), text(4));
  sqlite3_finalize(rows);
  sqlite3_close(db);
  return out;
}

void check_same_results(const fs::path& expected, const fs::path& got, bool resumed = false) {
  CHECK(comparable_pareto(got, resumed) == comparable_pareto(expected, resumed));
  CHECK(read_text(got / "out/pareto.csv") == read_text(expected / "out/pareto.csv"));
  CHECK(read_text(got / "out/sensitivity.csv") == read_text(expected / "out/sensitivity.csv"));
  const std::string rows = sensitivity_rows(expected);
  CHECK(!rows.empty());
  CHECK(sensitivity_rows(got) == rows);
  for (const auto& entry : fs::directory_iterator(expected / "out"))
    if (entry.path().extension() == ".yaml")
      CHECK(read_text(got / "out" / entry.path().filename()) == read_text(entry.path()));
}

bool fixture_missing() {
  if (fs::exists(kImages) && fs::exists(kLabels)) return false;
  bitplan::testing::skip("Fashion-MNIST not installed (apt install dataset-fashion-mnist)");
  return true;
}

struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& name)
      : path(fs::temp_directory_path() / fmt::format("bitplan_mpi_{}_{}", name, getpid())) {
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
};

// How many sensitivity pairs rank `rank` measured, from the `mpi:` summary line.
int sensitivity_pairs_of_rank(const std::string& output, int rank) {
  std::smatch found;
  REQUIRE(
      std::regex_search(output, found, std::regex(R"(sensitivity pairs by rank \[([0-9 ]+)\])")));
  std::istringstream counts(found[1].str());
  int count = 0;
  for (int r = 0; r <= rank; ++r) REQUIRE(static_cast<bool>(counts >> count));
  return count;
}

// The pid of MPI rank `rank` among the children of mpirun `parent` (Open MPI starts the
// ranks of its own machine as its children, each with OMPI_COMM_WORLD_RANK set); 0 if none.
pid_t child_rank_pid(pid_t parent, int rank) {
  const std::string wanted = fmt::format("OMPI_COMM_WORLD_RANK={}", rank);
  for (const auto& entry : fs::directory_iterator("/proc")) {
    const std::string name = entry.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::istringstream stat(read_text(entry.path() / "stat"));
    std::string pid, comm, state;
    pid_t ppid = 0;
    // comm is "(bitplan)": no spaces in it for the processes looked for.
    if (!(stat >> pid >> comm >> state >> ppid) || ppid != parent) continue;
    std::string environ = read_text(entry.path() / "environ");
    for (std::size_t at = 0; at < environ.size();) {
      const std::size_t end = environ.find('\0', at);
      if (environ.compare(at, end - at, wanted) == 0) return std::stoi(name);
      if (end == std::string::npos) break;
      at = end + 1;
    }
  }
  return 0;
}

}  // namespace

TEST_CASE("mpi same_front: 1, 2 and 3 ranks give the same front, byte for byte") {
  if (fixture_missing()) return;
  TempDir temp("front");
  const fs::path one = search_folder(temp.path, "np1");
  const Result single = shell(bitplan_search(), one);
  INFO(single.output);
  REQUIRE(single.exit_code == 0);
  REQUIRE(!json::parse(read_text(one / "out/pareto.json")).at("front").empty());
  for (const int ranks : {2, 3}) {
    const fs::path dir = search_folder(temp.path, fmt::format("np{}", ranks));
    const Result r = shell(mpirun(ranks) + bitplan_search(), dir);
    INFO(ranks << " ranks: " << r.output);
    REQUIRE(r.exit_code == 0);
    CHECK(r.output.find(fmt::format("mpi: {} ranks", ranks)) != std::string::npos);
    CHECK(sensitivity_pairs_of_rank(r.output, 1) > 0);  // the sensitivity pass was spread
    check_same_results(one, dir);
  }
}

TEST_CASE("mpi sensitivity: `bitplan sensitivity` on 2 ranks gives one rank's tables") {
  if (fixture_missing()) return;
  TempDir temp("sensitivity");
  const std::string command = bitplan_command("sensitivity");
  const fs::path one = search_folder(temp.path, "np1");
  const Result single = shell(command, one);
  INFO(single.output);
  REQUIRE(single.exit_code == 0);
  const fs::path two = search_folder(temp.path, "np2");
  const Result r = shell(mpirun(2) + command, two);
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  CHECK(sensitivity_pairs_of_rank(r.output, 1) > 0);
  check_same_results(one, two);
}

TEST_CASE("mpi resume_after_killed_worker: a run whose worker dies resumes to the same front") {
  if (fixture_missing()) return;
  using namespace std::chrono;
  TempDir temp("resume");
  const fs::path reference = search_folder(temp.path, "reference");
  const auto start = steady_clock::now();
  const Result whole = shell(bitplan_search(), reference);
  const double seconds = duration<double>(steady_clock::now() - start).count();
  INFO(whole.output);
  REQUIRE(whole.exit_code == 0);

  // Three ranks; rank 1 is killed once the policy loop has run for a while (the baselines
  // line is printed just before it starts).
  const fs::path dir = search_folder(temp.path, "killed");
  const std::string log = (dir / "killed.log").string();
  const std::string command = mpirun(3) + bitplan_search();
  std::fflush(nullptr);
  const pid_t mpirun_pid = fork();
  REQUIRE(mpirun_pid >= 0);
  if (mpirun_pid == 0) {
    const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || dup2(fd, STDOUT_FILENO) < 0 || dup2(fd, STDERR_FILENO) < 0 ||
        chdir(dir.c_str()) != 0)
      _exit(127);
    execl("/bin/sh", "sh", "-c", ("exec " + command).c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  int status = 0;
  bool finished = false, killed = false;
  const auto deadline = steady_clock::now() + seconds * 4 * 1s + 20s;
  std::optional<steady_clock::time_point> loop_start;
  while (!finished && steady_clock::now() < deadline) {
    finished = waitpid(mpirun_pid, &status, WNOHANG) == mpirun_pid;
    if (!loop_start && read_text(log).find("baselines:") != std::string::npos)
      loop_start = steady_clock::now();
    if (!killed && loop_start && steady_clock::now() - *loop_start > 0.1 * seconds * 1s) {
      if (const pid_t worker = child_rank_pid(mpirun_pid, 1)) {
        REQUIRE(kill(worker, SIGKILL) == 0);
        killed = true;
      }
    }
    std::this_thread::sleep_for(10ms);
  }
  if (!finished) {
    kill(mpirun_pid, SIGKILL);
    waitpid(mpirun_pid, &status, 0);
  }
  const std::string killed_log = read_text(log);
  INFO(killed_log);
  REQUIRE(finished);  // never a hang
  if (killed) {
    // Open MPI ends the job and names the rank; rank 0 named its candidate.
    CHECK((WIFSIGNALED(status) || WEXITSTATUS(status) != 0));
    CHECK(killed_log.find("rank 1") != std::string::npos);
  } else {
    WARN_MESSAGE(false, "the run finished before rank 1 was killed: nothing was interrupted");
  }

  const Result resumed = shell(mpirun(2) + bitplan_search(), dir);
  INFO(resumed.output);
  REQUIRE(resumed.exit_code == 0);
  const bool reused = resumed.output.find("(0 from the database)") == std::string::npos;
  WARN_MESSAGE((reused || !killed),
               "rank 1 was killed before any plan was told: nothing was resumed");
  check_same_results(reference, dir, true);
}

TEST_CASE("mpi hung_worker: a worker past the evaluation timeout fails the run, naming it") {
  if (fixture_missing()) return;
  using namespace std::chrono;
  TempDir temp("hang");
  const fs::path dir = search_folder(temp.path, "hung");
  const std::string log = (dir / "hung.log").string();
  const std::string command =
      mpirun(3) + bitplan_search() + " --set search.mpi.evaluation_timeout=2";
  std::fflush(nullptr);
  const pid_t mpirun_pid = fork();
  REQUIRE(mpirun_pid >= 0);
  if (mpirun_pid == 0) {
    const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || dup2(fd, STDOUT_FILENO) < 0 || dup2(fd, STDERR_FILENO) < 0 ||
        chdir(dir.c_str()) != 0)
      _exit(127);
    execl("/bin/sh", "sh", "-c", ("exec " + command).c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  // Rank 1 stopped (SIGSTOP: alive, silent) as the policy loop starts.
  int status = 0;
  bool finished = false;
  pid_t stopped = 0;
  const auto deadline = steady_clock::now() + 60s;
  while (!finished && steady_clock::now() < deadline) {
    finished = waitpid(mpirun_pid, &status, WNOHANG) == mpirun_pid;
    if (!stopped && read_text(log).find("baselines:") != std::string::npos)
      if ((stopped = child_rank_pid(mpirun_pid, 1))) REQUIRE(kill(stopped, SIGSTOP) == 0);
    std::this_thread::sleep_for(10ms);
  }
  if (!finished) {
    kill(mpirun_pid, SIGKILL);
    waitpid(mpirun_pid, &status, 0);
  }
  if (stopped) kill(stopped, SIGKILL);  // where mpirun left it
  const std::string hung_log = read_text(log);
  INFO(hung_log);
  REQUIRE(finished);  // never a hang of the whole job
  REQUIRE(stopped != 0);
  CHECK((WIFEXITED(status) && WEXITSTATUS(status) == 5));
  CHECK(hung_log.find("bitplan: error: rank 1 did not finish candidate ") != std::string::npos);
}

TEST_CASE("mpi worker_cannot_load_model: the job fails at once, naming the rank and the file") {
  if (fixture_missing()) return;
  TempDir temp("load");
  // Rank 1 reads another config whose model is a truncated file: a machine of a cluster
  // where the model is not (fully) there.
  const fs::path broken = temp.path / "broken.onnx";
  const std::string model = read_text(kSource / "models/fmnist_resnet.onnx");
  std::ofstream(broken, std::ios::binary) << model.substr(0, model.size() / 3);
  const fs::path good = search_folder(temp.path, "good");
  const fs::path bad = search_folder(temp.path, "bad", broken);
  const Result r =
      shell(std::string(BITPLAN_MPIEXEC) + " --oversubscribe -np 1 " + BITPLAN_EXECUTABLE +
                " search --config " + (good / "run.yaml").string() + " : -np 1 " +
                BITPLAN_EXECUTABLE + " search --config " + (bad / "run.yaml").string(),
            good);
  INFO(r.output);
  CHECK(r.exit_code == 5);
  CHECK(r.output.find("bitplan: error: rank 1 cannot evaluate plans:") != std::string::npos);
  CHECK(r.output.find("broken.onnx") != std::string::npos);
}

}  // namespace search_mpi_test
