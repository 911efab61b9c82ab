// Times one float32 MatMul with constant weights, [M, K] x [K, N], through the executor's two
// kernels for it (PlanOptions::fp32_gemm): bitplan's packed-B SGEMM and oneDNN's matmul,
// interleaved, and prints per shape the median and the fastest run of each (ms) and
// packed / oneDNN. The shapes default to the zoo transformers' weight MatMuls at sequence 128
// (MiniLM-L6 batch 1 and 32, SmolLM2-135M); the fastest run is the figure to trust on a
// shared machine. It is what the automatic choice (packed_sgemm_pays, executor/ops/onednn.cpp)
// was decided on. With 1 thread it also prints the fastest run in CPU time of the process
// (CLOCK_PROCESS_CPUTIME_ID), which other processes' load does not inflate the way it does
// wall time.
//
//   bench_sgemm THREADS [SECONDS_PER_SHAPE] [MxKxN]...
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <random>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "core/parallel.hpp"
#include "executor/plan.hpp"

namespace {

using namespace bitplan;

struct Shape {
  std::int64_t m, k, n;
};

Tensor noise(Dims dims, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  Tensor t(DType::f32, std::move(dims));
  for (std::int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = normal(rng);
  return t;
}

Graph matmul_graph(const Shape& s) {
  Graph g;
  g.name = "matmul";
  g.opset = 20;
  g.inputs.push_back({"x", DType::f32, {s.m, s.k}, {}});
  g.initializers["w"] = noise({s.k, s.n}, 1);
  g.nodes.push_back({"mm", "MatMul", "", {"x", "w"}, {"y"}, {}});
  g.outputs.push_back({"y", DType::f32, {}, {}});
  return g;
}

double cpu_ms() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return 1e3 * static_cast<double>(t.tv_sec) + 1e-6 * static_cast<double>(t.tv_nsec);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  limit_openmp_spinning(argv);
  try {
    if (argc < 2)
      fail(ErrorKind::usage, "usage: bench_sgemm THREADS [SECONDS_PER_SHAPE] [MxKxN]...");
    set_num_threads(std::stoi(argv[1]));
    const double seconds = argc > 2 ? std::stod(argv[2]) : 1.0;
    std::vector<Shape> shapes;
    for (int i = 3; i < argc; ++i) {
      Shape s{};
      if (std::sscanf(argv[i], "%ldx%ldx%ld", &s.m, &s.k, &s.n) != 3)
        fail(ErrorKind::usage, "shape '{}': expected MxKxN", argv[i]);
      shapes.push_back(s);
    }
    if (shapes.empty())
      shapes = {{128, 384, 384},   {128, 384, 1536},  {128, 1536, 384}, {4096, 384, 384},
                {4096, 384, 1536}, {4096, 1536, 384}, {128, 576, 576},  {128, 576, 192},
                {128, 576, 1536},  {128, 1536, 576},  {128, 576, 49152}};
    fmt::print("{:>18} {:>10} {:>10} {:>10} {:>10} {:>8} {:>8}\n", "M x K x N", "packed med",
               "packed min", "oneDNN med", "oneDNN min", "min p/o", "cpu p/o");
    for (const Shape& s : shapes) {
      const Graph g = matmul_graph(s);
      PlanOptions packed_options, onednn_options;
      packed_options.fp32_gemm = Fp32Gemm::packed;
      onednn_options.fp32_gemm = Fp32Gemm::onednn;
      ExecutionPlan packed(g, packed_options), onednn(g, onednn_options);
      const std::vector<Tensor> feed{noise({s.m, s.k}, 2)};
      std::vector<double> tp, to, cp, co;
      auto time = [&](ExecutionPlan& plan, std::vector<double>& out, std::vector<double>& cpu) {
        const double c0 = cpu_ms();
        const auto t0 = std::chrono::steady_clock::now();
        plan.run(feed);
        out.push_back(
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                .count());
        cpu.push_back(cpu_ms() - c0);
      };
      for (int warm = 0; warm < 3; ++warm) {
        packed.run(feed);
        onednn.run(feed);
      }
      const auto start = std::chrono::steady_clock::now();
      while (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() <
                 seconds ||
             tp.size() < 5) {
        time(packed, tp, cp);
        time(onednn, to, co);
      }
      const double pmin = *std::min_element(tp.begin(), tp.end()),
                   omin = *std::min_element(to.begin(), to.end());
      const double cpu_ratio =
          *std::min_element(cp.begin(), cp.end()) / *std::min_element(co.begin(), co.end());
      fmt::print("{:>18} {:>10.3f} {:>10.3f} {:>10.3f} {:>10.3f} {:>8.2f} {:>8}\n",
                 fmt::format("{}x{}x{}", s.m, s.k, s.n), median(tp), pmin, median(to), omin,
                 pmin / omin, num_threads() == 1 ? fmt::format("{:.2f}", cpu_ratio) : "-");
    }
  } catch (const std::exception& e) {
    fmt::print(stderr, "bench_sgemm: {}\n", e.what());
    return 1;
  }
  return 0;
}
