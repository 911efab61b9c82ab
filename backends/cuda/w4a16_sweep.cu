// bitplan-cuda-w4a16-sweep: issue 15's design sweep of the W4A16 decode kernels. For each
// (n, k) of kShapes and m in {1, 4, 16} it checks, then times, every compiled decode variant
// (w4a16_decode.hpp), the production entry w4a16_gemm (whatever kDecodeChoices in w4a16.cu
// picks), the tile kernel alone and cuBLASLt fp16 (gemm.hpp), with cold caches, and prints a
// table per case plus a summary to pick kDecodeChoices from. No arguments; writes stdout.
//
// Cold caches: each run reads a different set of operands, and the sets together exceed
// kRotateBytes (3x the H100's 50 MB L2), so every run's weights come from DRAM.
// Correctness: before timing, each kernel's output on set 0 is compared with the tile
// kernel's (tested against a CPU reference in tests/gpu); one that differs by more than 1 %
// of the largest output is FAILED and not timed.
// A kernel that faults loses the CUDA context for the whole process: the sweep then prints
// "context lost by variant: NAME" and exits with kContextLost, and run_on_gpu.sh runs it
// again with NAME in BITPLAN_W4A16_SWEEP_SKIP (comma-separated names that are not run).
// Progress ("running NAME on n=..") goes to stderr, so a hang names its kernel too.
#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "backends/cuda/check.hpp"
#include "backends/cuda/gemm.hpp"
#include "backends/cuda/kernels.hpp"
#include "backends/cuda/runtime.hpp"
#include "backends/cuda/w4a16_decode.hpp"

namespace bitplan::cuda {
namespace {

struct Shape {
  std::int64_t n, k;
};
// Llama-3-8B/70B-sized projections (28672 x 8192, 8192^2, 4096^2) where issue 15's target
// applies (n, k >= 4096), and SmolLM2-135M's (576 hidden, 1536 MLP, 49152 vocabulary) where
// the grid is smaller than the GPU.
constexpr Shape kShapes[] = {{28672, 8192}, {8192, 8192}, {4096, 4096},
                             {1536, 576},   {576, 1536},  {49152, 576}};
constexpr std::int64_t kMs[] = {1, 4, 16};
constexpr std::int64_t kMaxM = 16;
constexpr std::int64_t kRotateBytes = std::int64_t(150) << 20;
constexpr int kMaxSets = 2048;
constexpr int kContextLost = 3;

// Thrown when a kernel leaves the CUDA context unusable.
struct ContextLost {
  std::string variant, what;
};

// An environment variable's comma-separated names (BITPLAN_W4A16_SWEEP_SKIP: kernels not to
// run; BITPLAN_W4A16_SWEEP_ONLY: when set, the only kernels to run, e.g. one variant for a
// profiler such as Nsight Compute).
std::vector<std::string> names_in(const char* variable) {
  std::vector<std::string> names;
  const char* env = std::getenv(variable);
  std::string list = env ? env : "";
  for (std::size_t start = 0; start <= list.size();) {
    const std::size_t end = std::min(list.find(',', start), list.size());
    if (end > start) names.push_back(list.substr(start, end - start));
    start = end + 1;
  }
  return names;
}

std::int64_t align256(std::int64_t bytes) {
  return (bytes + 255) / 256 * 256;
}

int sets_for(std::int64_t bytes_per_set) {
  return static_cast<int>(
      std::clamp<std::int64_t>((kRotateBytes + bytes_per_set - 1) / bytes_per_set, 2, kMaxSets));
}

// ~15 ms of repeats per kernel and case: the whole sweep takes well under a minute.
const TimingOptions kTiming{/*warmup_runs=*/3, /*min_repeats=*/30, /*max_repeats=*/1000,
                            /*budget_ms=*/15.0};

// Reads `count` uint4 with 4 independent loads per thread in flight: the read-only bandwidth
// that a weight stream can reach (the copy figure also pays for writes).
__global__ void read_kernel(const uint4* __restrict__ p, std::int64_t count,
                            unsigned* __restrict__ sink) {
  const std::int64_t stride = std::int64_t(gridDim.x) * blockDim.x;
  std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  unsigned acc = 0;
  for (; i + 3 * stride < count; i += 4 * stride) {
    const uint4 a = __ldg(p + i), b = __ldg(p + i + stride), c = __ldg(p + i + 2 * stride),
                d = __ldg(p + i + 3 * stride);
    acc ^= a.x ^ b.y ^ c.z ^ d.w;
  }
  for (; i < count; i += stride) acc ^= __ldg(p + i).x;
  if (acc == 0x9E3779B9u) *sink = acc;  // never in practice; keeps the loads
}

struct Bandwidth {
  double copy_gbs = 0, read_gbs = 0;
};

Bandwidth measure_bandwidth(const GpuContext& gpu) {
  const std::size_t bytes = std::size_t{1} << 30;
  DeviceBuffer a(bytes), b(bytes), sink(sizeof(unsigned));
  fill_random_bytes(a.get(), std::int64_t(bytes), 99, gpu.stream());
  const TimingOptions heavy{2, 10, 10, 0.0};
  Bandwidth bw;
  TimingResult t = time_on_gpu(
      gpu,
      [&](int) {
        check_cuda(cudaMemcpyAsync(b.get(), a.get(), bytes, cudaMemcpyDeviceToDevice, gpu.stream()),
                   "copying device memory");
      },
      heavy);
  bw.copy_gbs = 2.0 * double(bytes) / (t.median_us * 1e3);
  const unsigned blocks = static_cast<unsigned>(gpu.device().multiprocessors * 8);
  t = time_on_gpu(
      gpu,
      [&](int) {
        read_kernel<<<blocks, 256, 0, gpu.stream()>>>(a.as<uint4>(), std::int64_t(bytes / 16),
                                                      sink.as<unsigned>());
        check_launch("launching the read-bandwidth kernel");
      },
      heavy);
  bw.read_gbs = double(bytes) / (t.median_us * 1e3);
  return bw;
}

// One kernel of the sweep: launch(set) queues it on operand set `set`.
struct Candidate {
  std::string name, notes;
  std::function<void(int set)> launch;
};

struct Row {
  std::string name, notes, status;  // status empty: timed
  double us = 0, max_error = 0;
};

std::vector<float> download_half(const void* data, std::int64_t count) {
  std::vector<__half> h(static_cast<std::size_t>(count));
  check_cuda(cudaMemcpy(h.data(), data, h.size() * sizeof(__half), cudaMemcpyDeviceToHost),
             "downloading outputs");
  std::vector<float> f(h.size());
  for (std::size_t i = 0; i < h.size(); ++i) f[i] = __half2float(h[i]);
  return f;
}

// Registers, spills and resident blocks per SM of a decode variant.
std::string variant_notes(const W4DecodeVariant& v) {
  W4DecodeResources r;
  if (const cudaError_t status = v.resources(r); status != cudaSuccess) {
    cudaGetLastError();
    return std::string("resources unknown: ") + cudaGetErrorName(status);
  }
  return std::to_string(r.registers) + " regs" +
         (r.local_bytes ? ", " + std::to_string(r.local_bytes) + " B local" : "") + ", " +
         std::to_string(r.blocks_per_sm) + " blocks/SM";
}

// Per m and candidate name, its speedups over the tile kernel, one per case it ran in.
using Speedups = std::map<std::int64_t, std::map<std::string, std::vector<double>>>;

void run_case(const GpuContext& gpu, const Bandwidth& bw, const Shape& shape, std::int64_t m,
              const std::vector<DeviceBuffer>& ops, int sets, const W4Layout& layout,
              std::int64_t wbytes, std::int64_t sbytes, std::int64_t xbytes, std::int64_t ybytes,
              const DeviceBuffer& w16, int sets16, Speedups& large, Speedups& all) {
  const DeviceBuffer &packed = ops[0], &scales = ops[1], &x = ops[2], &y = ops[3];
  const auto ptr = [](const DeviceBuffer& b, std::int64_t stride, int set) {
    return static_cast<char*>(b.get()) + stride * set;
  };
  const auto args = [&](int set) {
    return W4DecodeArgs{ptr(x, xbytes, set),
                        shape.k,
                        reinterpret_cast<const std::uint8_t*>(ptr(packed, wbytes, set)),
                        ptr(scales, sbytes, set),
                        layout,
                        m,
                        ptr(y, ybytes, set)};
  };

  std::vector<Candidate> candidates;
  candidates.push_back({"tile_kernel", "w4a16_gemm_tiles (before issue 15)", [&](int s) {
                          const W4DecodeArgs a = args(s);
                          w4a16_gemm_tiles(a.x, a.x_row_stride, a.packed, a.chunk_scales, layout, m,
                                           a.y, gpu.stream());
                        }});
  candidates.push_back({"w4a16_gemm", w4a16_kernel_name(m, layout.n), [&](int s) {
                          const W4DecodeArgs a = args(s);
                          w4a16_gemm(a.x, a.x_row_stride, a.packed, a.chunk_scales, layout, m, a.y,
                                     gpu.stream());
                        }});
  for (const W4DecodeVariant& v : w4_decode_variants()) {
    if (v.max_m < m) continue;
    candidates.push_back({v.name, variant_notes(v), [&, vp = &v](int s) {
                            const W4DecodeArgs a = args(s);
                            const std::string why = w4_decode_declines(*vp, a);
                            if (!why.empty()) throw Unsupported(why);
                            check_cuda(vp->launch(a, gpu.stream()), "launching");
                          }});
  }

  // Reference: the tile kernel on set 0.
  candidates[0].launch(0);
  gpu.synchronize();
  const std::vector<float> ref = download_half(y.get(), m * shape.n);
  float ref_max = 0;
  for (float v : ref) ref_max = std::max(ref_max, std::fabs(v));
  const double tolerance = 1e-2 * std::max(1.0f, ref_max);

  static const std::vector<std::string> skip = names_in("BITPLAN_W4A16_SWEEP_SKIP");
  static const std::vector<std::string> only = names_in("BITPLAN_W4A16_SWEEP_ONLY");
  std::vector<Row> rows;
  for (const Candidate& c : candidates) {
    if (!only.empty() && std::find(only.begin(), only.end(), c.name) == only.end()) continue;
    Row row{c.name, c.notes, "", 0, 0};
    if (std::find(skip.begin(), skip.end(), c.name) != skip.end()) {
      row.status = "skipped: BITPLAN_W4A16_SWEEP_SKIP (it lost the context or hung before)";
      rows.push_back(row);
      continue;
    }
    std::fprintf(stderr, "running %s on n=%lld k=%lld m=%lld\n", c.name.c_str(),
                 static_cast<long long>(shape.n), static_cast<long long>(shape.k),
                 static_cast<long long>(m));
    std::fflush(stderr);
    try {
      check_cuda(cudaMemset(y.get(), 0xFF, std::size_t(ybytes)), "poisoning outputs");  // NaN
      c.launch(0);
      check_cuda(cudaStreamSynchronize(gpu.stream()), "running");
      const std::vector<float> out = download_half(y.get(), m * shape.n);
      for (std::size_t i = 0; i < out.size(); ++i) {
        const double e = std::fabs(double(out[i]) - ref[i]);
        row.max_error = std::isnan(e) ? INFINITY : std::max(row.max_error, e);
      }
      if (row.max_error > tolerance) {
        row.status = "FAILED (max abs error above " + std::to_string(tolerance) + ")";
      } else {
        row.us = time_on_gpu(
                     gpu, [&](int i) { c.launch(i % sets); }, kTiming)
                     .median_us;
      }
    } catch (const Unsupported& e) {
      row.status = std::string("declined: ") + e.what();
    } catch (const ProfileError& e) {
      row.status = std::string("FAILED: ") + e.what();
      cudaGetLastError();  // clears a launch error; a fault that lost the context stays
      if (cudaDeviceSynchronize() != cudaSuccess) throw ContextLost{c.name, e.what()};
    }
    rows.push_back(row);
  }

  // cuBLASLt fp16 on dequantised-size weights (fp16 [n][k]), the same activations.
  Row lt_row{"cublaslt_fp16", "", "", 0, 0};
  try {
    LtGemm gemm(gpu.lt(), Precision::fp16, m, shape.n, shape.k, shape.k, shape.k);
    lt_row.notes = gemm.description();
    const std::int64_t w16_bytes = align256(shape.n * shape.k * 2);
    lt_row.us = time_on_gpu(
                    gpu,
                    [&](int i) {
                      gemm.run(ptr(w16, w16_bytes, i % sets16), ptr(x, xbytes, i % sets),
                               ptr(y, ybytes, i % sets), gpu.workspace(), gpu.workspace_bytes(),
                               gpu.stream());
                    },
                    kTiming)
                    .median_us;
  } catch (const std::exception& e) {
    lt_row.status = std::string("FAILED: ") + e.what();
  }
  rows.push_back(lt_row);

  const double bytes = double(layout.packed_bytes() + 2 * layout.scale_count()) +
                       2.0 * double(m) * double(shape.k + shape.n);
  std::printf("\n== n=%lld k=%lld m=%lld: %.2f MB per run (int4 + scales + x + y), %d sets\n",
              static_cast<long long>(shape.n), static_cast<long long>(shape.k),
              static_cast<long long>(m), bytes / 1e6, sets);
  std::printf("%-28s %9s %7s %7s %7s %8s %9s  %s\n", "variant", "us", "TB/s", "%copy", "%read",
              "xcuBLAS", "max_err", "notes");
  const double tile_us = rows[0].us;
  for (const Row& r : rows) {
    if (!r.status.empty()) {
      std::printf("%-28s %s\n", r.name.c_str(), r.status.c_str());
      continue;
    }
    const double gbs =
        r.name == "cublaslt_fp16"
            ? (2.0 * double(shape.n * shape.k) + 2.0 * double(m) * (shape.k + shape.n)) /
                  (r.us * 1e3)
            : bytes / (r.us * 1e3);
    std::printf("%-28s %9.2f %7.3f %6.1f%% %6.1f%% %8.2f %9.2e  %s\n", r.name.c_str(), r.us,
                gbs / 1e3, 100.0 * gbs / bw.copy_gbs, 100.0 * gbs / bw.read_gbs,
                lt_row.us > 0 ? lt_row.us / r.us : 0.0, r.max_error, r.notes.c_str());
    if (tile_us > 0 && r.name != "cublaslt_fp16") {
      all[m][r.name].push_back(tile_us / r.us);
      if (shape.n >= 4096 && shape.k >= 4096) large[m][r.name].push_back(tile_us / r.us);
    }
  }
  std::fflush(stdout);
}

// Per m, candidates by geometric-mean speedup over the tile kernel, fastest first; only
// those that ran in all `cases` cases.
using Ranking = std::map<std::int64_t, std::vector<std::pair<double, std::string>>>;

Ranking rank(const Speedups& speedups, std::size_t cases) {
  Ranking ranking;
  for (const auto& [m, by_name] : speedups) {
    auto& ranked = ranking[m];
    for (const auto& [name, values] : by_name) {
      if (values.size() < cases) continue;  // failed or declined somewhere
      double log_sum = 0;
      for (double v : values) log_sum += std::log(v);
      ranked.emplace_back(std::exp(log_sum / double(values.size())), name);
    }
    std::sort(ranked.rbegin(), ranked.rend());
  }
  return ranking;
}

void print_ranking(const char* title, const Ranking& ranking) {
  std::printf("\n== %s: geometric mean speedup over the tile kernel, best 8\n", title);
  for (const auto& [m, ranked] : ranking) {
    std::printf("m=%lld:", static_cast<long long>(m));
    for (std::size_t i = 0; i < ranked.size() && i < 8; ++i)
      std::printf("%s %s %.2fx", i ? "," : "", ranked[i].second.c_str(), ranked[i].first);
    std::printf("\n");
  }
}

// kDecodeChoices as this run would have it: per measured m, the best decode variant on the
// target shapes when it beats the tile kernel there. m between the measured ones is the
// reader's call (a variant serves up to its max_m rows).
void print_suggestion(const Ranking& ranking) {
  std::printf("\n== suggested kDecodeChoices (w4a16.cu), from the n, k >= 4096 ranking:\n");
  for (const auto& [m, ranked] : ranking) {
    const auto best = std::find_if(ranked.begin(), ranked.end(), [](const auto& entry) {
      return find_w4_decode_variant(entry.second) != nullptr;
    });
    if (best != ranked.end() && best->first > 1.0)
      std::printf("    {%lld, \"%s\"},  // %.2fx the tile kernel\n", static_cast<long long>(m),
                  best->second.c_str(), best->first);
    else
      std::printf("    // m = %lld: no decode variant beats the tile kernel\n",
                  static_cast<long long>(m));
  }
}

// The W8A16 kernel's variants (w8a16.cu) on the same shapes and m, against cuBLASLt fp16 on
// fp16 weights: cold (rotated operand sets), each output first compared with the first
// variant's (tested against a CPU reference in tests/gpu).
void sweep_w8a16(const GpuContext& gpu, const Bandwidth& bw) {
  std::printf(
      "\n==== W8A16 (int8 weights, fp16 activations; w8a16_gemm today: n = 4096 %s, "
      "n = 28672 %s)\n",
      w8a16_kernel_name(4096).c_str(), w8a16_kernel_name(28672).c_str());
  static const std::vector<std::string> only = names_in("BITPLAN_W4A16_SWEEP_ONLY");
  for (const Shape& shape : kShapes) {
    const W8Layout layout = w8_layout(shape.n, shape.k);
    const std::int64_t wbytes = align256(layout.packed_bytes()),
                       sbytes = align256(2 * layout.scale_count()),
                       xbytes = align256(kMaxM * shape.k * 2),
                       ybytes = align256(kMaxM * shape.n * 2);
    const int sets = sets_for(wbytes + sbytes);
    DeviceBuffer packed(static_cast<std::size_t>(wbytes * sets)),
        scales(static_cast<std::size_t>(sbytes * sets)), x(static_cast<std::size_t>(xbytes * sets)),
        y(static_cast<std::size_t>(ybytes * sets));
    fill_random_bytes(packed.get(), wbytes * sets, 21, gpu.stream());
    fill_random(scales.get(), ElementType::f16, sbytes * sets / 2, 22, 0.01f, gpu.stream());
    fill_random(x.get(), ElementType::f16, xbytes * sets / 2, 23, 1.0f, gpu.stream());
    const std::int64_t w16_bytes = align256(shape.n * shape.k * 2);
    const int sets16 = sets_for(w16_bytes);
    DeviceBuffer w16(static_cast<std::size_t>(w16_bytes * sets16));
    fill_random(w16.get(), ElementType::f16, w16_bytes * sets16 / 2, 24, 0.05f, gpu.stream());
    gpu.synchronize();
    const auto at = [](const DeviceBuffer& b, std::int64_t stride, int set) {
      return static_cast<char*>(b.get()) + stride * set;
    };
    for (const std::int64_t m : kMs) {
      const auto args = [&](int set) {
        return W8A16Args{at(x, xbytes, set),
                         shape.k,
                         reinterpret_cast<const std::uint8_t*>(at(packed, wbytes, set)),
                         at(scales, sbytes, set),
                         layout,
                         m,
                         at(y, ybytes, set)};
      };
      double lt_us = 0;
      try {
        LtGemm gemm(gpu.lt(), Precision::fp16, m, shape.n, shape.k, shape.k, shape.k);
        lt_us = time_on_gpu(
                    gpu,
                    [&](int i) {
                      gemm.run(at(w16, w16_bytes, i % sets16), at(x, xbytes, i % sets),
                               at(y, ybytes, i % sets), gpu.workspace(), gpu.workspace_bytes(),
                               gpu.stream());
                    },
                    kTiming)
                    .median_us;
      } catch (const std::exception& e) {
        std::fprintf(stderr, "cuBLASLt fp16 on n=%lld k=%lld m=%lld: %s\n",
                     static_cast<long long>(shape.n), static_cast<long long>(shape.k),
                     static_cast<long long>(m), e.what());
      }
      const double bytes = double(layout.packed_bytes() + 2 * layout.scale_count()) +
                           2.0 * double(m) * double(shape.k + shape.n);
      std::printf(
          "\n== w8a16 n=%lld k=%lld m=%lld: %.2f MB per run, %d sets; cuBLASLt fp16 %.2f us\n",
          static_cast<long long>(shape.n), static_cast<long long>(shape.k),
          static_cast<long long>(m), bytes / 1e6, sets, lt_us);
      std::vector<float> ref;
      for (const W8A16Variant& v : w8a16_variants()) {
        if (!only.empty() && std::find(only.begin(), only.end(), v.name) == only.end()) continue;
        check_cuda(v.launch(args(0), gpu.stream()), ("launching " + v.name).c_str());
        gpu.synchronize();
        const std::vector<float> out = download_half(y.get(), m * shape.n);
        if (ref.empty()) ref = out;
        double max_error = 0, ref_max = 0;
        for (std::size_t i = 0; i < out.size(); ++i) {
          max_error = std::max(max_error, double(std::fabs(out[i] - ref[i])));
          ref_max = std::max(ref_max, double(std::fabs(ref[i])));
        }
        if (!(max_error <= 1e-2 * std::max(1.0, ref_max))) {
          std::printf("%-28s FAILED (max abs error %.3g against %s)\n", v.name.c_str(), max_error,
                      w8a16_variants().front().name.c_str());
          continue;
        }
        const double us = time_on_gpu(
                              gpu,
                              [&](int i) {
                                check_cuda(v.launch(args(i % sets), gpu.stream()),
                                           ("launching " + v.name).c_str());
                              },
                              kTiming)
                              .median_us;
        const double gbs = bytes / (us * 1e3);
        std::printf("%-28s %9.2f us %7.3f TB/s %6.1f%% of copy %8.2fx cuBLASLt fp16\n",
                    v.name.c_str(), us, gbs / 1e3, 100.0 * gbs / bw.copy_gbs,
                    lt_us > 0 ? lt_us / us : 0.0);
      }
      std::fflush(stdout);
    }
  }
}

int sweep() {
  std::string why;
  if (!cuda_device_usable(why)) {
    std::fprintf(stderr, "bitplan-cuda-w4a16-sweep: %s\n", why.c_str());
    return 1;
  }
  GpuContext gpu;
  const Bandwidth bw = measure_bandwidth(gpu);
  std::printf(
      "device: %s, %d SMs; copy %.0f GB/s (1 GiB device copy, read + written), read "
      "%.0f GB/s (1 GiB read-only kernel)\n",
      gpu.device().name.c_str(), gpu.device().multiprocessors, bw.copy_gbs, bw.read_gbs);
  std::printf("w4a16_gemm today at n = 4096 / 28672: m=1 %s / %s; m=4 %s / %s; m=16 %s / %s\n",
              w4a16_kernel_name(1, 4096).c_str(), w4a16_kernel_name(1, 28672).c_str(),
              w4a16_kernel_name(4, 4096).c_str(), w4a16_kernel_name(4, 28672).c_str(),
              w4a16_kernel_name(16, 4096).c_str(), w4a16_kernel_name(16, 28672).c_str());
  std::printf(
      "TB/s counts int4 + scale + x + y bytes (cuBLASLt: fp16 weights + x + y); %%copy "
      "and %%read divide by the bandwidths above; xcuBLAS = cuBLASLt fp16 time / time\n");

  Speedups large, all;
  std::size_t large_cases = 0, all_cases = 0;
  for (const Shape& shape : kShapes) {
    const W4Layout layout = w4_layout(shape.n, shape.k);
    const std::int64_t wbytes = align256(layout.packed_bytes()),
                       sbytes = align256(2 * layout.scale_count()),
                       xbytes = align256(kMaxM * shape.k * 2),
                       ybytes = align256(kMaxM * shape.n * 2);
    const int sets = sets_for(wbytes + sbytes);
    std::vector<DeviceBuffer> ops;
    for (std::int64_t b : {wbytes, sbytes, xbytes, ybytes})
      ops.emplace_back(static_cast<std::size_t>(b * sets));
    fill_random_bytes(ops[0].get(), wbytes * sets, 11, gpu.stream());
    fill_random(ops[1].get(), ElementType::f16, sbytes * sets / 2, 12, 0.01f, gpu.stream());
    fill_random(ops[2].get(), ElementType::f16, xbytes * sets / 2, 13, 1.0f, gpu.stream());
    const std::int64_t w16_bytes = align256(shape.n * shape.k * 2);
    const int sets16 = sets_for(w16_bytes);
    DeviceBuffer w16(static_cast<std::size_t>(w16_bytes * sets16));
    fill_random(w16.get(), ElementType::f16, w16_bytes * sets16 / 2, 14, 0.05f, gpu.stream());
    gpu.synchronize();
    for (std::int64_t m : kMs)
      run_case(gpu, bw, shape, m, ops, sets, layout, wbytes, sbytes, xbytes, ybytes, w16, sets16,
               large, all);
    ++all_cases;
    if (shape.n >= 4096 && shape.k >= 4096) ++large_cases;
  }
  sweep_w8a16(gpu, bw);
  const Ranking target = rank(large, large_cases);
  print_ranking("n, k >= 4096 (issue 15's target shapes)", target);
  print_ranking("all shapes", rank(all, all_cases));
  print_suggestion(target);
  return 0;
}

}  // namespace
}  // namespace bitplan::cuda

int main() {
  try {
    return bitplan::cuda::sweep();
  } catch (const bitplan::cuda::ContextLost& lost) {
    std::printf("\ncontext lost by variant: %s\n", lost.variant.c_str());
    std::fprintf(stderr, "bitplan-cuda-w4a16-sweep: %s lost the CUDA context: %s\n",
                 lost.variant.c_str(), lost.what.c_str());
    return bitplan::cuda::kContextLost;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bitplan-cuda-w4a16-sweep: %s\n", e.what());
    return 1;
  }
}
