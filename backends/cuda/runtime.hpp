// Device memory, the GPU context shared by all measurements, and the timing loop.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "backends/cuda/timing.hpp"
#include "backends/device.hpp"

namespace bitplan::cuda {

// Owns one cudaMalloc allocation.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(std::size_t bytes);
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& other) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void* get() const { return data_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(data_);
  }
  std::size_t bytes() const { return bytes_; }

 private:
  void* data_ = nullptr;
  std::size_t bytes_ = 0;
};

// Whether a CUDA GPU can be used here; when not, `why` says what the runtime reported.
bool cuda_device_usable(std::string& why);

// One stream, one cuBLASLt handle and one GEMM workspace for everything measured.
class GpuContext {
 public:
  explicit GpuContext(int device = 0);
  ~GpuContext();
  GpuContext(const GpuContext&) = delete;
  GpuContext& operator=(const GpuContext&) = delete;

  cudaStream_t stream() const { return stream_; }
  cublasLtHandle_t lt() const { return lt_; }
  void* workspace() const { return workspace_.get(); }
  std::size_t workspace_bytes() const { return workspace_.bytes(); }
  const CudaDevice& device() const { return device_; }
  // Kernel driver version from NVML when it loads ("580.159.04"), else the CUDA driver API's.
  const std::string& driver() const { return driver_; }
  const std::string& cuda_runtime() const { return cuda_runtime_; }  // e.g. "13.0"
  void synchronize() const;
  // cuDNN's handle, made on first use by cudnn_conv.cpp and released with the context. Held
  // type-erased so that this class (and runtime.cpp) is the same with and without cuDNN.
  std::shared_ptr<void>& cudnn_slot() const { return cudnn_; }

 private:
  CudaDevice device_;
  std::string driver_, cuda_runtime_;
  cudaStream_t stream_ = nullptr;
  cublasLtHandle_t lt_ = nullptr;
  DeviceBuffer workspace_;
  mutable std::shared_ptr<void> cudnn_;
};

// Times run(i) (i counts up; callers rotate buffer sets with it) with CUDA events around
// each repeat: warm-up first, then batches queued behind a spin kernel so that host launch
// cost never shows up as GPU idle time inside the events, until both the time budget and
// the minimum repeat count are reached. Median and interquartile range in microseconds.
TimingResult time_on_gpu(const GpuContext& gpu, const std::function<void(int)>& run,
                         const TimingOptions& options);

// run(0) ... run(runs - 1) captured once into a CUDA graph on the context's stream, then
// replayed: how a deployment with CUDA graphs (TensorRT, vLLM, torch.compile's
// "reduce-overhead") issues a model, with no host launch cost and no timing events between
// kernels. Throws Unsupported when a call inside run() cannot be captured (say, a
// synchronisation), with the runtime's reason.
class CapturedGraph {
 public:
  CapturedGraph(const GpuContext& gpu, const std::function<void(int)>& run, int runs);
  ~CapturedGraph();
  CapturedGraph(const CapturedGraph&) = delete;
  CapturedGraph& operator=(const CapturedGraph&) = delete;
  void launch() const;

 private:
  cudaStream_t stream_;
  cudaGraph_t graph_ = nullptr;
  cudaGraphExec_t exec_ = nullptr;
};

// The time of one run(i) as a step of a CUDA graph: `runs_per_graph` runs captured into one
// graph (CapturedGraph), the graph timed by time_on_gpu, its times divided by the runs. The
// events around each replay then cost 1 / runs_per_graph of an event pair per run.
TimingResult time_in_graph(const GpuContext& gpu, const std::function<void(int)>& run,
                           int runs_per_graph, const TimingOptions& options);

}  // namespace bitplan::cuda
