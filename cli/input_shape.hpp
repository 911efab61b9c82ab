// `--input-shape NAME=D0,D1,...`: sizes for the free (symbolic) input dimensions of a model,
// for the commands that plan a model without data (inspect, profile, cost). Commands with a
// dataset take them from the samples.
#pragma once

#include <string>
#include <vector>

#include "executor/model.hpp"

namespace bitplan {

// The help text of the option, shared by the commands that take it.
inline constexpr const char* kInputShapeHelp =
    "NAME=D0,D1,...: the shape of model input NAME, sizing its free dimensions; D0 is the batch "
    "axis, written N (repeatable, one per input)";

// Parses each "NAME=D0,D1,..." (D0 may be N: the batch axis). `flag` ("--input-shape") names
// the option in errors, which are usage errors giving the bad text and the expected form.
std::vector<InputShape> parse_input_shapes(const std::vector<std::string>& texts, const char* flag);

}  // namespace bitplan
