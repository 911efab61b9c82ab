// Threading facade. Design (docs/architecture.md, "Threading"):
//  * the executor runs ops one after another; each op may use every core;
//  * oneDNN (Debian's build uses the OpenMP runtime) runs Conv/Gemm/MatMul on OpenMP threads;
//  * bitplan's own elementwise/reduction loops run on TBB through `parallel_for` below;
//  * both pools are capped at the same `num_threads()`, and because ops never overlap only
//    one pool is busy at a time, so the cores are never oversubscribed.
#pragma once

#include <cstdint>
#include <functional>

namespace bitplan {

// Sets the thread count for both pools (0 = all hardware threads). Call once at start-up,
// before any op runs; later calls replace the limit.
void set_num_threads(int threads);
int num_threads();

// Splits [0, n) into chunks of at least `grain` iterations and calls fn(begin, end) on the
// TBB pool. Small ranges run inline on the caller, avoiding scheduling overhead.
void parallel_for(std::int64_t n, std::int64_t grain,
                  const std::function<void(std::int64_t, std::int64_t)>& fn);

}  // namespace bitplan
