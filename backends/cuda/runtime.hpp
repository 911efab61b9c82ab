// Device memory, the GPU context shared by all measurements, and the timing loop.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

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

struct DeviceInfo {
  int index = 0;
  std::string name;
  int cc_major = 0, cc_minor = 0;
  int multiprocessors = 0;
  std::int64_t memory_mib = 0;
  std::string driver;  // kernel driver version from NVML when it loads, else the CUDA driver API
  int sm_clock_mhz = 0;
  double l2_mib = 0;
  std::int64_t l2_bytes = 0;
  std::string cuda_runtime;
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
  const DeviceInfo& info() const { return info_; }
  void synchronize() const;

 private:
  DeviceInfo info_;
  cudaStream_t stream_ = nullptr;
  cublasLtHandle_t lt_ = nullptr;
  DeviceBuffer workspace_;
};

struct TimingOptions {
  int warmup_runs = 10;
  int min_repeats = 50;
  int max_repeats = 2000;
  double budget_ms = 20.0;
};

struct TimingResult {
  double median_us = 0, iqr_us = 0;
  int repeats = 0;
};

// Times run(i) (i counts up; callers rotate buffer sets with it) with CUDA events around
// each repeat: warm-up first, then batches queued behind a spin kernel so that host launch
// cost never shows up as GPU idle time inside the events, until both the time budget and
// the minimum repeat count are reached. Median and interquartile range in microseconds.
TimingResult time_on_gpu(const GpuContext& gpu, const std::function<void(int)>& run,
                         const TimingOptions& options);

}  // namespace bitplan::cuda
