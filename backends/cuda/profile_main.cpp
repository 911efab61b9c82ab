// bitplan-cuda-profile: measures per-layer latencies on a CUDA GPU for bitplan's cost model.
// Standalone (no bitplan_core) so it builds on GPU machines with only the CUDA toolkit and
// the header-only libraries it carries (CLI11, nlohmann/json).
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <iostream>
#include <string>
#include <vector>

#include "backends/cuda/errors.hpp"
#include "backends/cuda/profiler.hpp"

namespace {

constexpr const char* kDescription =
    "Measures every (layer key, precision) of the workloads that PROFILE.yaml lacks (an "
    "existing profile is merged into, not overwritten) and, with --chain, the back-to-back "
    "time of each plan.";
constexpr const char* kExitCodes =
    "Exit codes: 0 done, 2 usage error, 3 bad input or CUDA failure.";
constexpr int kUsageError = 2, kRunError = 3;

// Checks whose messages state the rule; CLI11 puts the flag in front:
// "--budget-ms: '0': must be a positive number".
CLI::Validator number_check(const char* rule, bool (*accepts)(const std::string&)) {
  return CLI::Validator(
      [rule, accepts](std::string& text) {
        return accepts(text) ? std::string() : "'" + text + "': must be " + rule;
      },
      "", rule);
}

bool is_positive_number(const std::string& text) {
  try {
    std::size_t used = 0;
    const double value = std::stod(text, &used);
    return used == text.size() && std::isfinite(value) && value > 0;
  } catch (const std::exception&) {
    return false;
  }
}

// At most 9 digits, so that std::stoi cannot overflow.
bool is_whole_number(const std::string& text, bool zero_allowed) {
  if (text.empty() || text.size() > 9 || text.find_first_not_of("0123456789") != std::string::npos)
    return false;
  return zero_allowed || std::stoi(text) > 0;
}

// What a run is asked to do, bound to the command line.
struct CommandLine {
  bitplan::cuda::ProfileOptions profile;
  bitplan::cuda::ChainOptions chain;
  int device = 0;
  bool no_ceilings = false;
  std::vector<std::string> precision_names;  // checked while parsing, then turned into precisions
};

// The rule about flags that go together that a parsed command line breaks; "" when none.
std::string combination_error(const CommandLine& command) {
  if (!command.profile.workloads.empty() && command.profile.out.empty())
    return "reading --workloads: no --out: a profile path is needed to write the results";
  const bool chains = !command.chain.plans.empty() || !command.chain.model_workloads.empty();
  if (chains != !command.chain.out.empty())
    return "reading --chain/--model-chain/--chain-out: --chain-out goes with --chain or "
           "--model-chain, and they with it";
  if (command.profile.workloads.empty() && !chains)
    return "reading the command line: nothing to do: give --workloads, --chain or --model-chain";
  return {};
}

void add_flags(CLI::App& app, CommandLine& command) {
  using bitplan::cuda::parse_precision;
  using bitplan::cuda::ProfileError;
  auto& profile = command.profile;
  app.add_option("--workloads", profile.workloads,
                 "workloads JSON files (bitplan profile --emit-workloads, "
                 "tools/standard_models.py)")
      ->type_name("W.json");
  app.add_option("--out", profile.out, "profile to write; an existing one is merged into")
      ->type_name("PROFILE.yaml");
  app.add_option("--precisions", command.precision_names,
                 "precisions to measure, instead of each workloads file's own list")
      ->delimiter(',')
      ->type_name("fp32,fp16,bf16,int8,fp8_e4m3,w4a16,w8a16")
      ->check(CLI::Validator(
          [](std::string& name) {
            try {
              parse_precision(name);
              return std::string();
            } catch (const ProfileError& e) {
              return std::string(e.what());
            }
          },
          "", "precision"));
  app.add_option("--target", profile.target, "profile target name (default: from the GPU's name)")
      ->type_name("NAME");
  app.add_option("--device", command.device, "CUDA device index")
      ->type_name("N")
      ->default_val(0)
      ->check(number_check("a GPU index (0, 1, ...)",
                           [](const std::string& text) { return is_whole_number(text, true); }));
  app.add_option("--budget-ms", profile.timing.budget_ms, "measured time per entry")
      ->type_name("MS")
      ->default_val(profile.timing.budget_ms)
      ->check(number_check("a positive number", is_positive_number));
  app.add_option("--min-repeats", profile.timing.min_repeats, "repeats per entry at least")
      ->type_name("N")
      ->default_val(profile.timing.min_repeats)
      ->check(number_check("a positive whole number",
                           [](const std::string& text) { return is_whole_number(text, false); }));
  app.add_flag("--no-ceilings", command.no_ceilings,
               "skip the micro-benchmarks of the GPU's limits");
  app.add_option("--chain", command.chain.plans, "plans to run layer after layer")
      ->type_name("PLANS.json");
  app.add_option("--model-chain", command.chain.model_workloads,
                 "workloads files to run as whole models (layers and other ops in order), once "
                 "per precision of --precisions (default: each file's own list)")
      ->type_name("W.json");
  app.add_option("--chain-out", command.chain.out, "the chains' measured totals")
      ->type_name("RESULTS.json");
}

}  // namespace

int main(int argc, char** argv) {
  using namespace bitplan::cuda;
  CLI::App app(kDescription, "bitplan-cuda-profile");
  app.footer(kExitCodes);
  CommandLine command;
  add_flags(app, command);
  try {
    app.parse(argc, argv);
    if (const std::string rule = combination_error(command); !rule.empty())
      throw CLI::ValidationError(rule);
  } catch (const CLI::CallForHelp&) {
    std::cout << app.help();
    return 0;
  } catch (const CLI::ParseError& e) {
    std::cerr << "bitplan-cuda-profile: " << e.what() << "\n(--help lists the options)\n";
    return kUsageError;
  }
  ProfileOptions& profile = command.profile;
  ChainOptions& chain = command.chain;
  for (const auto& name : command.precision_names)
    profile.precisions.push_back(parse_precision(name));
  chain.model_precisions = profile.precisions;
  profile.ceilings = !command.no_ceilings;

  const auto log = [](const std::string& line) { std::cerr << line << "\n"; };
  profile.log = log;
  chain.log = log;
  chain.timing = profile.timing;
  chain.timing.budget_ms = std::max(profile.timing.budget_ms, 100.0);
  try {
    GpuContext gpu(command.device);
    std::cerr << "device: " << gpu.device().name << " (driver " << gpu.driver() << ")\n";
    if (!profile.workloads.empty()) {
      const int measured = run_profile(gpu, profile);
      std::cerr << "profile " << profile.out << ": " << measured << " new measurements\n";
    }
    if (!chain.plans.empty() || !chain.model_workloads.empty()) {
      run_chains(gpu, chain);
      std::cerr << "chains " << chain.out << " written\n";
    }
  } catch (const std::exception& e) {
    std::cerr << "bitplan-cuda-profile: " << e.what() << "\n";
    return kRunError;
  }
  return 0;
}
