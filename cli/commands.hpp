// The bitplan subcommands and what they share. main.cpp dispatches; each command lives in
// its own file when it is more than a screen long.
#pragma once

#include <boost/program_options.hpp>
#include <string>
#include <vector>

#include "cli/run_config.hpp"
#include "executor/quant/simulate.hpp"

namespace bitplan {

// Parses a subcommand's arguments; a bad command line is a usage error (exit 2).
boost::program_options::variables_map parse_options(
    const boost::program_options::options_description& desc, const std::vector<std::string>& args,
    const boost::program_options::positional_options_description* positional = nullptr);

// Comma-separated list ("1,64") of positive integers; `flag` names the option in errors.
std::vector<std::int64_t> parse_positive_list(const std::string& text, const char* flag);
std::vector<std::string> split_list(const std::string& text);

// Where calibration samples come from, for summaries: "512 samples (seed 1) of PATH".
std::string calibration_summary(const DatasetConfig& dataset);
// $XDG_CACHE_HOME/bitplan, ~/.cache/bitplan, or ./.bitplan-cache.
std::string default_cache_dir();

int cmd_profile(const std::vector<std::string>& args);
int cmd_cost(const std::vector<std::string>& args);
int cmd_search(const std::vector<std::string>& args);
int cmd_sensitivity(const std::vector<std::string>& args);

}  // namespace bitplan
