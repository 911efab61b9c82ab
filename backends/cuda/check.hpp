// CUDA and cuBLAS status checks for the CUDA profiler. This folder builds standalone on GPU
// machines that lack fmt and the rest of bitplan_core, so it has its own small helpers.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <string>

#include "backends/cuda/errors.hpp"

namespace bitplan::cuda {

inline void check_cuda(cudaError_t status, const char* action) {
  if (status != cudaSuccess)
    throw ProfileError(std::string(action) + ": " + cudaGetErrorName(status) + ": " +
                       cudaGetErrorString(status));
}

inline void check_cublas(cublasStatus_t status, const char* action) {
  if (status != CUBLAS_STATUS_SUCCESS)
    throw ProfileError(std::string(action) + ": cuBLAS status " +
                       std::to_string(static_cast<int>(status)) + ": the call must succeed");
}

// After a kernel launch: launch errors (bad configuration) surface here, not at the launch.
inline void check_launch(const char* kernel) {
  check_cuda(cudaGetLastError(), kernel);
}

}  // namespace bitplan::cuda
