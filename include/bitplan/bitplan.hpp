// bitplan as a library: everything a program embedding it needs, in one include.
//   bitplan/error.hpp         bitplan::Error, the one exception type, and ErrorKind
//   bitplan/model.hpp         Model (load an ONNX file, run it in fp32), FloatTensor
//   bitplan/quantization.hpp  QuantizationPlan (uniform, from a file), QuantizedModel (run a
//                             plan with simulated quantization)
//   bitplan/cost.hpp          HardwareProfile, estimate_cost (size, BOPs, latency on a target)
// Link with the CMake target bitplan::bitplan (find_package(bitplan)); docs/architecture.md,
// "Using bitplan as a library".
#pragma once

#include "bitplan/cost.hpp"
#include "bitplan/error.hpp"
#include "bitplan/model.hpp"
#include "bitplan/quantization.hpp"
