#include "core/parallel.hpp"

#include <fmt/format.h>
#include <omp.h>
#include <sched.h>
#include <tbb/blocked_range.h>
#include <tbb/global_control.h>
#include <tbb/parallel_for.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <thread>

#include "core/error.hpp"

namespace bitplan {
namespace {
int g_threads = 0;
std::unique_ptr<tbb::global_control> g_tbb_limit;
}  // namespace

void limit_openmp_spinning(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") || std::getenv("GOMP_SPINCOUNT") ||
      std::getenv("BITPLAN_OPENMP_CONFIGURED"))
    return;
  setenv("GOMP_SPINCOUNT", "1000", 1);
  setenv("BITPLAN_OPENMP_CONFIGURED", "1", 1);
  execv("/proc/self/exe", argv);  // returns only on failure: then run with the defaults
}

int available_cores() {
  cpu_set_t mask;
  CPU_ZERO(&mask);
  if (sched_getaffinity(0, sizeof(mask), &mask) == 0 && CPU_COUNT(&mask) > 0)
    return CPU_COUNT(&mask);
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

int max_threads() {
  return 4 * available_cores();
}

std::string thread_count_problem(std::int64_t threads) {
  if (threads >= 0 && threads <= max_threads()) return "";
  return fmt::format(
      "must be 0 (all cores) or 1 to {} (4x the {} logical cores this process may run on)",
      max_threads(), available_cores());
}

void set_num_threads(std::int64_t requested) {
  if (const std::string problem = thread_count_problem(requested); !problem.empty())
    fail(ErrorKind::usage, "threads {}: {}", requested, problem);
  const int threads = requested == 0
                          ? static_cast<int>(std::max(1u, std::thread::hardware_concurrency()))
                          : static_cast<int>(requested);
  g_threads = threads;
  g_tbb_limit.reset();
  g_tbb_limit = std::make_unique<tbb::global_control>(tbb::global_control::max_allowed_parallelism,
                                                      static_cast<std::size_t>(threads));
  omp_set_num_threads(threads);
}

int num_threads() {
  if (g_threads == 0) set_num_threads(0);
  return g_threads;
}

namespace {

// Runs fn(0, n) on the caller where threads cannot pay (one chunk, or one thread) and says
// whether it did; clamps `grain` to at least 1.
bool ran_inline(std::int64_t n, std::int64_t& grain,
                const std::function<void(std::int64_t, std::int64_t)>& fn) {
  grain = std::max<std::int64_t>(grain, 1);
  if (n > grain && num_threads() > 1) return false;
  fn(0, n);
  return true;
}

}  // namespace

void parallel_for(std::int64_t n, std::int64_t grain,
                  const std::function<void(std::int64_t, std::int64_t)>& fn) {
  if (n <= 0 || ran_inline(n, grain, fn)) return;
  tbb::parallel_for(tbb::blocked_range<std::int64_t>(0, n, grain),
                    [&](const tbb::blocked_range<std::int64_t>& r) { fn(r.begin(), r.end()); });
}

void parallel_for_openmp(std::int64_t n, std::int64_t grain,
                         const std::function<void(std::int64_t, std::int64_t)>& fn) {
  if (n <= 0 || ran_inline(n, grain, fn)) return;
  const std::int64_t chunks = (n + grain - 1) / grain;
  const int threads = static_cast<int>(std::min<std::int64_t>(num_threads(), chunks));
  // Dynamic, one chunk at a time: on a shared machine a delayed thread takes fewer chunks, as
  // TBB's work stealing does for parallel_for.
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
  for (std::int64_t c = 0; c < chunks; ++c) fn(c * grain, std::min(n, (c + 1) * grain));
}

}  // namespace bitplan
