// bitplan-cuda-profile: measures per-layer latencies on a CUDA GPU for bitplan's cost model.
// Standalone (no bitplan_core) so it builds on GPU machines with only the CUDA toolkit.
#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <sstream>

#include "backends/cuda/check.hpp"
#include "backends/cuda/profiler.hpp"

namespace {

constexpr const char* kUsage =
    R"(usage: bitplan-cuda-profile --workloads W.json [W2.json ...] --out PROFILE.yaml
                            [--precisions fp16,int8,...] [--target NAME] [--device N]
                            [--budget-ms MS] [--min-repeats N] [--no-ceilings]
                            [--chain PLANS.json --chain-out RESULTS.json]
Measures every (layer key, precision) of the workloads that PROFILE.yaml lacks (an existing
profile is merged into, not overwritten) and, with --chain, the back-to-back time of each plan.
Exit codes: 0 done, 2 usage error, 3 bad input or CUDA failure.
)";

[[noreturn]] void usage_error(const std::string& message) {
  std::cerr << "bitplan-cuda-profile: " << message << "\n" << kUsage;
  std::exit(2);
}

double positive_number(const std::string& option, const std::string& text) {
  try {
    std::size_t used = 0;
    const double v = std::stod(text, &used);
    if (used == text.size() && v > 0) return v;
  } catch (const std::exception&) {
  }
  usage_error("reading " + option + ": '" + text + "': must be a positive number");
}

}  // namespace

int main(int argc, char** argv) {
  using namespace bitplan::cuda;
  ProfileOptions profile;
  ChainOptions chain;
  int device = 0;
  bool any_workloads = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage_error("reading " + arg + ": missing value: it takes one argument");
      return argv[++i];
    };
    if (arg == "--workloads") {
      while (i + 1 < argc && std::string(argv[i + 1]).rfind("--", 0) != 0)
        profile.workloads.push_back(argv[++i]);
      any_workloads = true;
    } else if (arg == "--out") {
      profile.out = value();
    } else if (arg == "--precisions") {
      std::stringstream list(value());
      std::string name;
      try {
        while (std::getline(list, name, ',')) profile.precisions.push_back(parse_precision(name));
      } catch (const ProfileError& e) {
        usage_error(e.what());
      }
    } else if (arg == "--target") {
      profile.target = value();
    } else if (arg == "--device") {
      const std::string text = value();
      if (text.empty() || text.find_first_not_of("0123456789") != std::string::npos)
        usage_error("reading --device: '" + text + "': must be a GPU index (0, 1, ...)");
      device = std::stoi(text);
    } else if (arg == "--budget-ms") {
      profile.timing.budget_ms = positive_number(arg, value());
    } else if (arg == "--min-repeats") {
      profile.timing.min_repeats = static_cast<int>(positive_number(arg, value()));
    } else if (arg == "--no-ceilings") {
      profile.ceilings = false;
    } else if (arg == "--chain") {
      chain.plans = value();
    } else if (arg == "--chain-out") {
      chain.out = value();
    } else if (arg == "--help" || arg == "-h") {
      std::cout << kUsage;
      return 0;
    } else {
      usage_error("reading the command line: '" + arg + "': not an option of this tool");
    }
  }
  if (any_workloads && profile.workloads.empty())
    usage_error("reading --workloads: no file given: it takes one or more workloads JSON files");
  if (!profile.workloads.empty() && profile.out.empty())
    usage_error("reading --workloads: no --out: a profile path is needed to write the results");
  if (chain.plans.empty() != chain.out.empty())
    usage_error("reading --chain/--chain-out: only one given: they go together");
  if (profile.workloads.empty() && chain.plans.empty())
    usage_error("reading the command line: nothing to do: give --workloads or --chain");

  const auto log = [](const std::string& line) { std::cerr << line << "\n"; };
  profile.log = log;
  chain.log = log;
  chain.timing = profile.timing;
  chain.timing.budget_ms = std::max(profile.timing.budget_ms, 100.0);
  try {
    GpuContext gpu(device);
    std::cerr << "device: " << gpu.device().name << " (driver " << gpu.driver() << ")\n";
    if (!profile.workloads.empty()) {
      const int measured = run_profile(gpu, profile);
      std::cerr << "profile " << profile.out << ": " << measured << " new measurements\n";
    }
    if (!chain.plans.empty()) {
      run_chains(gpu, chain);
      std::cerr << "chains " << chain.out << " written\n";
    }
  } catch (const std::exception& e) {
    std::cerr << "bitplan-cuda-profile: " << e.what() << "\n";
    return 3;
  }
  return 0;
}
