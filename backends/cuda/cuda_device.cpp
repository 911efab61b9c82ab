// CUDA device inventory through the runtime API. A machine without a driver or GPU is not
// an error here: the inventory says why no device is usable, and callers that need a GPU
// fail with that reason.
#include <cuda_runtime_api.h>
#include <fmt/format.h>

#include "backends/cuda/device_properties.hpp"
#include "backends/device.hpp"

namespace bitplan {

CudaInventory query_cuda() {
  CudaInventory inventory;
  inventory.built = true;
  cudaRuntimeGetVersion(&inventory.runtime_version);
  cudaDriverGetVersion(&inventory.driver_version);
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    inventory.unavailable = fmt::format("no usable CUDA device: {} ({})",
                                        cudaGetErrorString(status), cudaGetErrorName(status));
    return inventory;
  }
  for (int i = 0; i < count; ++i) {
    CudaDevice device;
    if (read_cuda_device(i, device) == cudaSuccess) inventory.devices.push_back(device);
  }
  if (inventory.devices.empty()) inventory.unavailable = "the CUDA runtime reports no devices";
  return inventory;
}

}  // namespace bitplan
