// The CUDA runtime's description of one GPU, as bitplan records it (backends/device.hpp's
// CudaDevice). The inventory (query_cuda) and the profiler (GpuContext) both read devices
// through this, so a GPU is described one way everywhere.
#pragma once

#include <cuda_runtime_api.h>

#include "backends/device.hpp"

namespace bitplan {

// Fills `device` from device `index`'s properties; the runtime's status when it cannot.
inline cudaError_t read_cuda_device(int index, CudaDevice& device) {
  cudaDeviceProp prop{};
  if (const cudaError_t status = cudaGetDeviceProperties(&prop, index); status != cudaSuccess)
    return status;
  device.index = index;
  device.name = prop.name;
  device.sm_major = prop.major;
  device.sm_minor = prop.minor;
  device.multiprocessors = prop.multiProcessorCount;
  device.memory_bytes = prop.totalGlobalMem;
  device.memory_bus_bits = prop.memoryBusWidth;
  device.l2_bytes = prop.l2CacheSize;
  // CUDA 13 dropped clockRate from cudaDeviceProp; the attribute remains.
  cudaDeviceGetAttribute(&device.clock_khz, cudaDevAttrClockRate, index);
  return cudaSuccess;
}

}  // namespace bitplan
