#include "backends/cuda/runtime.hpp"

#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <cmath>

#include "backends/cuda/check.hpp"
#include "backends/cuda/device_properties.hpp"
#include "backends/cuda/gemm.hpp"
#include "backends/cuda/kernels.hpp"
#include "core/timing_stats.hpp"

namespace bitplan::cuda {

DeviceBuffer::DeviceBuffer(std::size_t bytes) : bytes_(bytes) {
  if (bytes == 0) return;
  const cudaError_t status = cudaMalloc(&data_, bytes);
  if (status != cudaSuccess) {
    cudaGetLastError();  // clear the sticky-free allocation error
    throw ProfileError("allocating " + std::to_string(bytes) + " bytes of GPU memory: " +
                       cudaGetErrorString(status) + ": the layer's buffers must fit the GPU");
  }
}
DeviceBuffer::~DeviceBuffer() {
  if (data_) cudaFree(data_);
}
DeviceBuffer::DeviceBuffer(DeviceBuffer&& other) noexcept
    : data_(other.data_), bytes_(other.bytes_) {
  other.data_ = nullptr;
  other.bytes_ = 0;
}
DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  if (this != &other) {
    if (data_) cudaFree(data_);
    data_ = other.data_;
    bytes_ = other.bytes_;
    other.data_ = nullptr;
    other.bytes_ = 0;
  }
  return *this;
}

bool cuda_device_usable(std::string& why) {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    why = std::string("no usable CUDA device: ") + cudaGetErrorString(status) + " (" +
          cudaGetErrorName(status) + ")";
    cudaGetLastError();
    return false;
  }
  if (count == 0) {
    why = "the CUDA runtime reports no devices";
    return false;
  }
  return true;
}

namespace {

// The kernel driver's version ("580.159.04") is only known to NVML. Loading it at run time
// keeps the profiler and its test runnable on machines without the driver.
std::string nvml_driver_version() {
  void* nvml = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!nvml) return {};
  using InitFn = int (*)();
  using VersionFn = int (*)(char*, unsigned);
  auto init = reinterpret_cast<InitFn>(dlsym(nvml, "nvmlInit_v2"));
  auto version = reinterpret_cast<VersionFn>(dlsym(nvml, "nvmlSystemGetDriverVersion"));
  auto shutdown = reinterpret_cast<InitFn>(dlsym(nvml, "nvmlShutdown"));
  std::string text;
  if (init && version && shutdown && init() == 0) {
    char buffer[96] = {};
    if (version(buffer, sizeof(buffer)) == 0) text = buffer;
    shutdown();
  }
  dlclose(nvml);
  return text;
}

std::string cuda_version_text(int v) {
  return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10);
}

}  // namespace

GpuContext::GpuContext(int device) {
  std::string why;
  if (!cuda_device_usable(why)) throw ProfileError("opening the GPU: " + why);
  check_cuda(cudaSetDevice(device), "selecting the CUDA device");
  check_cuda(read_cuda_device(device, device_), "reading the device properties");
  int runtime = 0, driver = 0;
  cudaRuntimeGetVersion(&runtime);
  cudaDriverGetVersion(&driver);
  cuda_runtime_ = cuda_version_text(runtime);
  driver_ = nvml_driver_version();
  if (driver_.empty()) driver_ = "CUDA driver API " + cuda_version_text(driver);
  check_cuda(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "creating a stream");
  check_cublas(cublasLtCreate(&lt_), "creating the cuBLASLt handle");
  workspace_ = DeviceBuffer(LtGemm::kWorkspaceBytes);
}

GpuContext::~GpuContext() {
  cudnn_.reset();  // before the stream it is bound to
  if (lt_) cublasLtDestroy(lt_);
  if (stream_) cudaStreamDestroy(stream_);
}

void GpuContext::synchronize() const {
  check_cuda(cudaStreamSynchronize(stream_), "waiting for the GPU");
}

namespace {

// RAII set of events, reused across batches.
struct EventPool {
  std::vector<cudaEvent_t> events;
  explicit EventPool(std::size_t count) : events(count) {
    for (auto& e : events) check_cuda(cudaEventCreate(&e), "creating a CUDA event");
  }
  ~EventPool() {
    for (auto e : events) cudaEventDestroy(e);
  }
};

}  // namespace

TimingResult time_on_gpu(const GpuContext& gpu, const std::function<void(int)>& run,
                         const TimingOptions& options) {
  constexpr int kBatch = 128;
  const cudaStream_t stream = gpu.stream();
  EventPool pool(2 * kBatch);
  int counter = 0;

  // Warm-up, also estimating the host's cost of queueing one run.
  for (int i = 0; i < options.warmup_runs; ++i) run(counter++);
  gpu.synchronize();
  const auto host_start = std::chrono::steady_clock::now();
  check_cuda(cudaEventRecord(pool.events[0], stream), "recording an event");
  for (int i = 0; i < 4; ++i) run(counter++);
  check_cuda(cudaEventRecord(pool.events[1], stream), "recording an event");
  const double host_us =
      std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - host_start)
          .count() /
      4;
  gpu.synchronize();
  float warm_ms = 0;
  check_cuda(cudaEventElapsedTime(&warm_ms, pool.events[0], pool.events[1]), "reading events");
  const double device_us = std::max(1.0, warm_ms * 1000.0 / 4);

  std::vector<double> samples;
  double measured_ms = 0;
  while (int(samples.size()) < options.max_repeats &&
         (int(samples.size()) < options.min_repeats || measured_ms < options.budget_ms)) {
    const int still_wanted =
        std::max(options.min_repeats - int(samples.size()),
                 int(std::ceil((options.budget_ms - measured_ms) * 1000.0 / device_us)));
    const int batch =
        std::clamp(still_wanted, 1, std::min(kBatch, options.max_repeats - int(samples.size())));
    // Long enough for the host to queue the whole batch (plus event records) before the GPU
    // reaches it, so runs are back to back on the GPU.
    spin(50.0 + batch * (host_us + 4.0) * 1.5, stream);
    for (int i = 0; i < batch; ++i) {
      check_cuda(cudaEventRecord(pool.events[2 * i], stream), "recording an event");
      run(counter++);
      check_cuda(cudaEventRecord(pool.events[2 * i + 1], stream), "recording an event");
    }
    gpu.synchronize();
    for (int i = 0; i < batch; ++i) {
      float ms = 0;
      check_cuda(cudaEventElapsedTime(&ms, pool.events[2 * i], pool.events[2 * i + 1]),
                 "reading events");
      samples.push_back(ms * 1000.0);
      measured_ms += ms;
    }
  }
  TimingResult result;
  result.repeats = static_cast<int>(samples.size());
  const Spread spread = median_and_iqr(samples);
  result.median_us = spread.median;
  result.iqr_us = spread.iqr;
  return result;
}

CapturedGraph::CapturedGraph(const GpuContext& gpu, const std::function<void(int)>& run, int runs)
    : stream_(gpu.stream()) {
  gpu.synchronize();
  // Relaxed: cuBLASLt and cuDNN may query attributes while a capture is open.
  check_cuda(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeRelaxed),
             "starting a CUDA graph capture");
  try {
    for (int i = 0; i < runs; ++i) run(i);
  } catch (const std::exception& e) {
    // Whatever failed inside an open capture failed because of it (a call the capture does
    // not allow); the stream leaves capture mode either way.
    cudaGraph_t partial = nullptr;
    cudaStreamEndCapture(stream_, &partial);
    if (partial) cudaGraphDestroy(partial);
    cudaGetLastError();
    throw Unsupported(std::string("capturing the run into a CUDA graph: ") + e.what());
  }
  const cudaError_t ended = cudaStreamEndCapture(stream_, &graph_);
  if (ended != cudaSuccess || !graph_) {
    cudaGetLastError();
    throw Unsupported(std::string("capturing the run into a CUDA graph: ") +
                      cudaGetErrorString(ended) +
                      ": every call in it must be capturable (no synchronisation, no allocation)");
  }
  const cudaError_t made = cudaGraphInstantiate(&exec_, graph_, 0);
  if (made != cudaSuccess) {
    cudaGetLastError();
    cudaGraphDestroy(graph_);
    graph_ = nullptr;
    throw Unsupported(std::string("instantiating the captured CUDA graph: ") +
                      cudaGetErrorString(made));
  }
}

CapturedGraph::~CapturedGraph() {
  if (exec_) cudaGraphExecDestroy(exec_);
  if (graph_) cudaGraphDestroy(graph_);
}

void CapturedGraph::launch() const {
  check_cuda(cudaGraphLaunch(exec_, stream_), "launching a CUDA graph");
}

TimingResult time_in_graph(const GpuContext& gpu, const std::function<void(int)>& run,
                           int runs_per_graph, const TimingOptions& options) {
  const CapturedGraph graph(gpu, run, runs_per_graph);
  TimingOptions per_graph = options;
  per_graph.warmup_runs = std::max(1, options.warmup_runs / runs_per_graph);
  per_graph.min_repeats = std::max(5, options.min_repeats / runs_per_graph);
  TimingResult t = time_on_gpu(
      gpu, [&](int) { graph.launch(); }, per_graph);
  t.median_us /= runs_per_graph;
  t.iqr_us /= runs_per_graph;
  t.repeats *= runs_per_graph;
  return t;
}

}  // namespace bitplan::cuda
