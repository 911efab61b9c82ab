// Threading facade. Design (docs/architecture.md, "Threading"):
//  * the executor runs ops one after another; each op may use every core;
//  * oneDNN (Debian's build uses the OpenMP runtime) runs Conv/Gemm/MatMul on OpenMP threads,
//    and so do bitplan's own GEMM kernels (W4A32, W4A8/W3A8/W2A8, the packed SGEMM) through
//    `parallel_for_openmp` below: they sit between oneDNN primitives in a model's steps, and
//    every switch between the two pools wakes the other pool's sleeping threads (about
//    15 us on the 2-vCPU dev VM: SmolLM2's one-token step spent ~1 ms of ~6 in such wake-ups
//    while its low-bit GEMMs ran on TBB);
//  * bitplan's own elementwise/reduction loops run on TBB through `parallel_for` below;
//  * both pools are capped at the same `num_threads()`, and because ops never overlap only
//    one pool is busy at a time, so the cores are never oversubscribed.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace bitplan {

// libgomp reads its spin policy once, when it loads (before main), and by default an idle
// OpenMP thread spins for ~300k iterations before sleeping. Measured on the 2-core dev VM
// (docs/performance.md): spinning OpenMP workers steal the cores TBB needs for the next op
// (ViT batch 64: 8.5 ms vs 5.6 ms), and when any other process is busy they make a run
// 10x slower than one thread (ResNet batch 64: 216 ms vs 21 ms). Call this first thing in
// main(): unless the user set OMP_WAIT_POLICY or GOMP_SPINCOUNT, it re-executes the
// program with GOMP_SPINCOUNT=1000 (returns only if no re-exec happened).
void limit_openmp_spinning(char** argv);

// The logical cores this process may run on (its CPU affinity mask; all hardware threads
// where the mask cannot be read).
int available_cores();
// The most threads set_num_threads accepts: 4x available_cores(). More only oversubscribes
// the cores, and far more exhausts the OpenMP runtime (65535 threads crashed libgomp inside
// oneDNN's reorder; 40000 failed with "Thread creation failed").
int max_threads();
// Why `threads` is not a thread count set_num_threads accepts, as the rule a message ends
// with ("must be 0 (all cores) or 1 to 8 ..."); empty when it is one.
std::string thread_count_problem(std::int64_t threads);

// Sets the thread count for both pools (0 = all hardware threads). Call once at start-up,
// before any op runs; later calls replace the limit. A count thread_count_problem refuses
// is a usage error: callers check it first to name the flag or config key it came from.
void set_num_threads(std::int64_t threads);
int num_threads();

// Splits [0, n) into chunks of at least `grain` iterations and calls fn(begin, end) on the
// TBB pool. Small ranges run inline on the caller, avoiding scheduling overhead.
void parallel_for(std::int64_t n, std::int64_t grain,
                  const std::function<void(std::int64_t, std::int64_t)>& fn);

// The same contract on the OpenMP pool (chunks of `grain` handed out dynamically), for GEMM
// kernels; `fn` must not throw.
void parallel_for_openmp(std::int64_t n, std::int64_t grain,
                         const std::function<void(std::int64_t, std::int64_t)>& fn);

}  // namespace bitplan
