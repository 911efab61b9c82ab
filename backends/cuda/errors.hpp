// The CUDA profiler's exceptions. Messages follow the project's rule
// "<action>: <bad value>: <rule>". No CUDA header here: the profile file code
// (profile_file.hpp) throws these and builds without the toolkit.
#pragma once

#include <stdexcept>

namespace bitplan::cuda {

class ProfileError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A well-formed request that this backend cannot run (a shape cuBLASLt refuses, an op
// without a kernel). The profile records the message as the entry's `unsupported:` reason.
class Unsupported : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace bitplan::cuda
