// The bitplan subcommands and what they share. main.cpp dispatches; each command lives in
// its own file when it is more than a screen long.
#pragma once

#include <boost/program_options.hpp>
#include <optional>
#include <string>
#include <vector>

#include "cli/run_config.hpp"
#include "executor/quant/equalize.hpp"
#include "executor/quant/simulate.hpp"

namespace bitplan {

// Parses a subcommand's arguments; a bad command line is a usage error (exit 2).
boost::program_options::variables_map parse_options(
    const boost::program_options::options_description& desc, const std::vector<std::string>& args,
    const boost::program_options::positional_options_description* positional = nullptr);

// The text given for the flag --`name`, if it was given. Numeric flags are read as text and
// parsed by cli/values.hpp, the same rules as their config keys.
std::optional<std::string> flag_text(const boost::program_options::variables_map& vm,
                                     const char* name);

// Comma-separated batch sizes ("1,64"), each checked as parse_batch does; `flag` names the
// option in errors.
std::vector<std::int64_t> parse_batch_list(const std::string& text, const char* flag);
std::vector<std::string> split_list(const std::string& text);

// A plan file (.yaml/.yml or an existing path), or a plan in one word for every quantizable
// layer: the uniform shorthands (W8A8, W4g128A16, fp16, bf16...) with `calibration` for their
// activation ranges, and the search's other options, fp32 (nothing quantized) and fp8.
QuantPlan resolve_plan(const std::string& plan_arg, const std::string& calibration,
                       const Graph& graph, const std::string& model_hash);
bool is_plan_file(const std::string& plan_arg);
// Whether some layer of `plan` quantizes its input with a calibrated (static) range; a
// weight-only plan, float activations or dynamic ranges need no calibration.
bool needs_calibration(const QuantPlan& plan);

// The config's quantization section applied to the imported fp32 graph, before anything
// calibrates or simulates it: with quantization.equalize (or --equalize), cross-layer
// equalization (executor/quant/equalize.hpp), its pairs listed on stderr. Returns what to
// append to the model file's hash for plans, calibration caches and results: "+cle" when
// equalized ("+cle-relu" with relu6_to_relu), else "", so the equalized model never shares
// the original's caches.
// `report`, when given, receives the equalization's report.
std::string prepare_fp32_model(Graph& graph, const QuantizationSection& quantization,
                               EqualizationReport* report = nullptr);

// Refuses a `batch` whose activations would not fit in memory (cli/values.hpp), estimated
// from the model planned for one sample. `origin` names the flag or config key.
void check_batch_fits(const Graph& graph, std::int64_t batch, const ValueOrigin& origin);
// The same for the run config's evaluate.batch (or the --batch that replaced it), run on at
// most `samples` samples at a time (0: no such bound).
void check_batch_fits(const Graph& graph, const RunConfig& config, std::int64_t samples = 0);

// Where calibration samples come from, for summaries: "512 samples (seed 1) of PATH".
std::string calibration_summary(const DatasetConfig& dataset);
// $XDG_CACHE_HOME/bitplan, ~/.cache/bitplan, or ./.bitplan-cache.
std::string default_cache_dir();

int cmd_profile(const std::vector<std::string>& args);
int cmd_cost(const std::vector<std::string>& args);
int cmd_search(const std::vector<std::string>& args);
int cmd_sensitivity(const std::vector<std::string>& args);

}  // namespace bitplan
