// Low-bit matmul kernels against bitplan's fp32 and int8 paths, and the memory bandwidth, in
// one run: does a 4-bit weight cost less time than an 8- or 32-bit one where the weights'
// bytes are the time (batch-1 / small-M GEMV and GEMM)?
//
//   bench_lowbit [THREADS [SECONDS_PER_CASE]] [--shapes NxK,...] [--m M,...]
//   (defaults: all cores, 0.3 s; the zoo LLM's and encoder's shapes 576x1536, 1536x576,
//   49152x576, 1536x384; M = 1, 8, 32)
//
// --shapes takes others, e.g. 32768x8192 (268 M weights: 134 MB in 4 bits, 67 MB in 2),
// larger than any L3, so that the weights come from DRAM on every call: the zoo's shapes fit
// a 32 MiB L3 in 4 bits, where a kernel's "GB/s" is cache bandwidth. A second table gives
// every kernel's GB/s and its share of the copy bandwidth.
//
// Each case is a one-node graph planned once and run repeatedly through the executor
// (ExecutionPlan::run, as evaluation runs it): y[M, N] = x[M, K] · W[K, N] for
//   fp32   MatMul (oneDNN, fp32 weights),
//   int8   bitplan::Int8MatMul (oneDNN integer kernel: the input quantized to u8 in the
//          kernel, 7-bit weight codes so that it is exact on CPUs without VNNI too),
//   w4g32 / w4g128 / w4ch   bitplan::W4A32MatMul (int4 weights, a scale per 32 / 128 / K),
//   w4a8g32 / w4a8g128      bitplan::W4A8MatMul (the same int4 weights, x quantized per row
//          to uint8 in the kernel, int32 dot products),
//   w3a8g32 / w3a8g128      bitplan::W3A8MatMul (int3 weights in a 2-bit and a 1-bit plane,
//          3/8 of a byte each, the same activations and dot products: executor/kernels/w3a8.hpp),
//   w2a8g32 / w2a8g128      bitplan::W2A8MatMul (int2 weights four per byte, the same
//          activations and dot products: executor/kernels/w2a8.hpp),
//   w8a8ch  bitplan::W8A8MatMul (int8 weights as stored, a scale per column, the same
//          activations and dot products: executor/kernels/w8a8.hpp; AVX-512 VNNI CPUs only),
// timed in interleaved blocks (a drifting load on a shared machine weighs on all alike),
// and a STREAM-style copy (b[i] = a[i], 2 x 256 MiB, counted as read + write bytes, as STREAM
// does) and read (sum of 256 MiB) on the same threads. GB/s of a kernel = (weight bytes as
// stored + x + y) / time. Times are medians of repeated blocks of runs.
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <memory>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "backends/device.hpp"
#include "core/parallel.hpp"
#include "executor/kernels/isa.hpp"
#include "executor/plan.hpp"

using namespace bitplan;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Calls per timed block so that one block of fn takes >= 10 ms (after a warm call).
std::int64_t calls_per_block(const std::function<void()>& fn) {
  fn();  // warm: first-touch, caches
  for (std::int64_t reps = 1;; reps *= 2) {
    const auto t0 = Clock::now();
    for (std::int64_t i = 0; i < reps; ++i) fn();
    if (seconds_since(t0) >= 0.01) return reps;
  }
}

// Median seconds per call of each of fns, timed in interleaved blocks (fn 0, 1, ..., 0, 1,
// ...) for about `budget` seconds each (at least 5 blocks), so that a load that drifts
// during the run (a shared VM) weighs on every candidate alike.
std::vector<double> interleaved_medians(const std::vector<std::function<void()>>& fns,
                                        double budget) {
  std::vector<std::int64_t> reps;
  for (const auto& fn : fns) reps.push_back(calls_per_block(fn));
  std::vector<std::vector<double>> blocks(fns.size());
  const auto start = Clock::now();
  while (blocks[0].size() < 5 || seconds_since(start) < budget * double(fns.size()))
    for (std::size_t i = 0; i < fns.size(); ++i) {
      const auto t0 = Clock::now();
      for (std::int64_t r = 0; r < reps[i]; ++r) fns[i]();
      blocks[i].push_back(seconds_since(t0) / static_cast<double>(reps[i]));
    }
  std::vector<double> out;
  for (auto& b : blocks) {
    std::nth_element(b.begin(), b.begin() + static_cast<std::ptrdiff_t>(b.size() / 2), b.end());
    out.push_back(b[b.size() / 2]);
  }
  return out;
}

double median_seconds(const std::function<void()>& fn, double budget) {
  return interleaved_medians({fn}, budget)[0];
}

struct Bandwidth {
  double copy_gbs, read_gbs;
};

Bandwidth measure_bandwidth(double budget) {
  const std::int64_t n = std::int64_t{64} << 20;  // 64 Mi floats = 256 MiB per array
  std::vector<float> a(static_cast<std::size_t>(n), 1.f), b(static_cast<std::size_t>(n), 0.f);
  const std::int64_t chunk = 1 << 16;
  const std::int64_t chunks = n / chunk;
  const double copy = median_seconds(
      [&] {
        parallel_for(chunks, 1, [&](std::int64_t c0, std::int64_t c1) {
          std::copy(a.begin() + c0 * chunk, a.begin() + c1 * chunk, b.begin() + c0 * chunk);
        });
      },
      budget);
  std::atomic<float> sink{0.f};
  const double read = median_seconds(
      [&] {
        parallel_for(chunks, 1, [&](std::int64_t c0, std::int64_t c1) {
          float s[8] = {};
          for (std::int64_t i = c0 * chunk; i < c1 * chunk; i += 8)
            for (int j = 0; j < 8; ++j) s[j] += a[static_cast<std::size_t>(i + j)];
          sink = sink + s[0] + s[7];
        });
      },
      budget);
  const double bytes = static_cast<double>(n) * sizeof(float);
  return {2 * bytes / copy / 1e9, bytes / read / 1e9};
}

// A one-node graph: input "x" [m, k], output "y".
Graph one_node(std::int64_t m, std::int64_t k, Node node, std::map<std::string, Tensor> inits) {
  Graph g;
  g.name = node.op_type;
  g.opset = 17;
  g.inputs.push_back({"x", DType::f32, {m, k}, {}});
  g.outputs.push_back({"y", DType::f32, {}, {}});
  g.initializers = std::move(inits);
  node.name = "layer";
  node.outputs = {"y"};
  g.nodes.push_back(std::move(node));
  return g;
}

struct Case {
  std::string name;
  double weight_bytes;
  Graph graph;
};

std::vector<Case> cases(std::int64_t m, std::int64_t k, std::int64_t n, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.f, 0.05f);
  std::uniform_int_distribution<int> code7(-63, 63), code4(1, 15), code3(0, 7), code2(0, 3);
  std::vector<Case> out;
  {
    Tensor w(DType::f32, {k, n});
    for (auto& v : std::span(w.data<float>(), static_cast<std::size_t>(w.numel()))) v = normal(rng);
    out.push_back({"fp32", 4.0 * double(k * n),
                   one_node(m, k, {"", "MatMul", "", {"x", "w"}, {}, {}}, {{"w", std::move(w)}})});
  }
  {
    Tensor codes(DType::i8, {k, n});
    for (auto& v : std::span(codes.data<std::int8_t>(), static_cast<std::size_t>(codes.numel())))
      v = static_cast<std::int8_t>(code7(rng));
    Node node{"", "Int8MatMul", "bitplan", {"x", "codes"}, {}, {}};
    node.attrs["input_scale"] = 0.02f;
    node.attrs["input_zero_point"] = 128.f;
    node.attrs["input_signed"] = std::int64_t{0};
    node.attrs["weight_scales"] = std::vector<float>(static_cast<std::size_t>(n), 0.001f);
    out.push_back({"int8", 1.0 * double(k * n) + 4.0 * double(n),
                   one_node(m, k, std::move(node), {{"codes", std::move(codes)}})});
  }
  // W8A8: int8 codes as stored, a scale per column, x quantized per row in the kernel
  // (executor/kernels/w8a8.hpp). Only where its VNNI path runs: elsewhere the kernel list
  // declines it and its portable path is the definition, not a kernel to time.
  if (kernels::cpu_isa() == kernels::Isa::avx512_vnni) {
    std::uniform_int_distribution<int> code8(-127, 127);
    Tensor codes(DType::i8, {k, n}), scales(DType::f32, {1, n}), offsets(DType::f32, {1, n});
    for (auto& v : std::span(codes.data<std::int8_t>(), static_cast<std::size_t>(codes.numel())))
      v = static_cast<std::int8_t>(code8(rng));
    std::fill_n(scales.data<float>(), scales.numel(), 0.001f);
    std::fill_n(offsets.data<float>(), offsets.numel(), 0.f);
    Node node{"", "W8A8MatMul", "bitplan", {"x", "codes", "", "scales", "offsets"}, {}, {}};
    node.attrs["group"] = k;
    out.push_back({"w8a8ch", 1.0 * double(k * n) + 8.0 * double(n),
                   one_node(m, k, std::move(node),
                            {{"codes", std::move(codes)},
                             {"scales", std::move(scales)},
                             {"offsets", std::move(offsets)}})});
  }
  for (const std::int64_t group : {std::int64_t{32}, std::int64_t{128}, k}) {
    const std::int64_t groups = (k + group - 1) / group;
    Tensor codes(DType::i8, {k, n}), scales(DType::f32, {groups, n}),
        offsets(DType::f32, {groups, n});
    for (auto& v : std::span(codes.data<std::int8_t>(), static_cast<std::size_t>(codes.numel())))
      v = static_cast<std::int8_t>(code4(rng));
    std::fill_n(scales.data<float>(), scales.numel(), 0.01f);
    std::fill_n(offsets.data<float>(), offsets.numel(), 8.f);
    Node node{"", "W4A32MatMul", "bitplan", {"x", "codes", "", "scales", "offsets"}, {}, {}};
    node.attrs["group"] = group;
    if (group != k) {
      // W2A8: int2 codes (q + 2) four per byte, offset 2, the same scales and weight sums.
      Tensor codes2(DType::i8, {k, n}), offsets2(DType::f32, {groups, n});
      for (auto& v :
           std::span(codes2.data<std::int8_t>(), static_cast<std::size_t>(codes2.numel())))
        v = static_cast<std::int8_t>(code2(rng));
      std::fill_n(offsets2.data<float>(), offsets2.numel(), 2.f);
      Node w2a8{"", "W2A8MatMul", "bitplan", {"x", "codes", "", "scales", "offsets"}, {}, {}};
      w2a8.attrs["group"] = group;
      out.push_back({fmt::format("w2a8g{}", group), 0.25 * double(k * n) + 8.0 * double(groups * n),
                     one_node(m, k, std::move(w2a8),
                              {{"codes", std::move(codes2)},
                               {"scales", scales.clone()},
                               {"offsets", std::move(offsets2)}})});
      // W3A8: int3 codes (q + 4) in a 2-bit and a 1-bit plane, offset 4, the same scales.
      Tensor codes3(DType::i8, {k, n}), offsets3(DType::f32, {groups, n});
      for (auto& v :
           std::span(codes3.data<std::int8_t>(), static_cast<std::size_t>(codes3.numel())))
        v = static_cast<std::int8_t>(code3(rng));
      std::fill_n(offsets3.data<float>(), offsets3.numel(), 4.f);
      Node w3a8{"", "W3A8MatMul", "bitplan", {"x", "codes", "", "scales", "offsets"}, {}, {}};
      w3a8.attrs["group"] = group;
      out.push_back({fmt::format("w3a8g{}", group),
                     0.375 * double(k * n) + 8.0 * double(groups * n),
                     one_node(m, k, std::move(w3a8),
                              {{"codes", std::move(codes3)},
                               {"scales", scales.clone()},
                               {"offsets", std::move(offsets3)}})});
      // W4A8 on the same weights: codes + per group and column an fp32 scale and an int32
      // weight sum (symmetric: one offset for all; executor/kernels/w4a8.hpp).
      Node w4a8{"", "W4A8MatMul", "bitplan", {"x", "codes", "", "scales", "offsets"}, {}, {}};
      w4a8.attrs["group"] = group;
      out.push_back({fmt::format("w4a8g{}", group), 0.5 * double(k * n) + 8.0 * double(groups * n),
                     one_node(m, k, std::move(w4a8),
                              {{"codes", codes.clone()},
                               {"scales", scales.clone()},
                               {"offsets", offsets.clone()}})});
    }
    out.push_back({group == k ? std::string("w4ch") : fmt::format("w4g{}", group),
                   // codes + an fp32 scale per group (symmetric: one offset for all)
                   0.5 * double(k * n) + 4.0 * double(groups * n),
                   one_node(m, k, std::move(node),
                            {{"codes", std::move(codes)},
                             {"scales", std::move(scales)},
                             {"offsets", std::move(offsets)}})});
  }
  return out;
}

// "576x1536,1536x576" -> {{576, 1536}, {1536, 576}} (N x K); "1,8" -> {{1}, {8}}.
std::vector<std::vector<std::int64_t>> parse_list(const std::string& text, char inner) {
  std::vector<std::vector<std::int64_t>> out;
  std::size_t start = 0;
  while (start <= text.size()) {
    const std::size_t end = std::min(text.find(',', start), text.size());
    std::vector<std::int64_t> item;
    std::size_t from = start;
    while (from < end) {
      const std::size_t to = std::min(text.find(inner, from), end);
      item.push_back(std::stoll(text.substr(from, to - from)));
      from = to + 1;
    }
    if (item.empty() || item.front() < 1 || item.back() < 1)
      throw std::invalid_argument("bench_lowbit: bad list '" + text + "'");
    out.push_back(std::move(item));
    start = end + 1;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  limit_openmp_spinning(argv);
  std::vector<std::string> positional;
  std::vector<std::pair<std::int64_t, std::int64_t>> shapes = {
      {576, 1536}, {1536, 576}, {49152, 576}, {1536, 384}};
  std::vector<std::int64_t> rows = {1, 8, 32};
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string arg = argv[i];
      if (arg == "--shapes" && i + 1 < argc) {
        shapes.clear();
        for (const auto& nk : parse_list(argv[++i], 'x')) {
          if (nk.size() != 2) throw std::invalid_argument("bench_lowbit: --shapes takes NxK,...");
          shapes.emplace_back(nk[0], nk[1]);
        }
      } else if (arg == "--m" && i + 1 < argc) {
        rows.clear();
        for (const auto& m : parse_list(argv[++i], 'x')) rows.push_back(m.at(0));
      } else {
        positional.push_back(arg);
      }
    }
  } catch (const std::exception& e) {
    fmt::print(stderr, "{}\n", e.what());
    return 2;
  }
  const std::int64_t threads = positional.size() > 0 ? std::atoll(positional[0].c_str()) : 0;
  const double budget = positional.size() > 1 ? std::atof(positional[1].c_str()) : 0.3;
  set_num_threads(threads);
  const CpuDevice& cpu = query_cpu();
  fmt::print(
      "# {} ({} logical cores, oneDNN ISA {}), {} threads, W4A32/W4A8/W3A8/W2A8/W8A8 kernel ISA "
      "{}\n",
      cpu.model, cpu.logical_cores, cpu.onednn_isa, num_threads(),
      kernels::isa_name(kernels::cpu_isa()));
  const Bandwidth bw = measure_bandwidth(budget);
  fmt::print("# STREAM-style copy {:.1f} GB/s (read + write), read {:.1f} GB/s\n", bw.copy_gbs,
             bw.read_gbs);
  fmt::print(
      "| N x K | M | fp32 ms | int8 ms | w4g32 ms | w4g128 ms | w4ch ms | w4a8g32 ms | w4a8g128 ms "
      "| w3a8g32 ms | w3a8g128 ms | w2a8g32 ms | w2a8g128 ms | w4g32 GB/s | % of copy | fp32 / "
      "w4g32 | int8 / w4g32 | fp32 / w4a8g32 | w4g32 / w4a8g32 | w4a8g32 / w3a8g32 | w4a8g128 / "
      "w3a8g128 | w3a8g32 / w2a8g32 | w3a8g128 / w2a8g128 | w4a8g32 / w2a8g32 | w4a8g128 / "
      "w2a8g128 | w3a8g32 GB/s | w2a8g32 GB/s | w8a8ch ms | int8 / w8a8ch |\n|---|---:|---:|---:|"
      "---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
      "---:|---:|---:|---:|---:|---:|---:|\n");
  std::mt19937 rng(1);
  struct Row {
    std::int64_t n, k, m;
    std::vector<std::pair<std::string, double>> gbs;  // in case order
  };
  std::vector<Row> table;
  for (const auto& [n, k] : shapes)
    for (const std::int64_t m : rows) {
      std::map<std::string, double> ms, gbs;
      Tensor x(DType::f32, {m, k});
      std::normal_distribution<float> normal(0.f, 1.f);
      for (auto& v : std::span(x.data<float>(), static_cast<std::size_t>(x.numel())))
        v = normal(rng);
      std::vector<Case> all = cases(m, k, n, rng);
      std::vector<std::unique_ptr<ExecutionPlan>> plans;
      std::vector<std::function<void()>> runs;
      for (Case& c : all) {
        plans.push_back(std::make_unique<ExecutionPlan>(c.graph, PlanOptions{m}));
        runs.push_back(
            [&x, plan = plans.back().get()] { plan->run(std::span<const Tensor>(&x, 1)); });
      }
      const std::vector<double> seconds = interleaved_medians(runs, budget);
      table.push_back({n, k, m, {}});
      for (std::size_t i = 0; i < all.size(); ++i) {
        ms[all[i].name] = seconds[i] * 1e3;
        gbs[all[i].name] = (all[i].weight_bytes + 4.0 * double(m * (k + n))) / seconds[i] / 1e9;
        table.back().gbs.emplace_back(all[i].name, gbs[all[i].name]);
      }
      const auto ratio = [&](const char* a, const char* b) { return ms[a] / ms[b]; };
      fmt::print(
          "| {} x {} | {} | {:.4f} | {:.4f} | {:.4f} | {:.4f} | {:.4f} | {:.4f} | {:.4f} | {:.4f} "
          "| {:.4f} | {:.4f} | {:.4f} | {:.1f} | {:.0f} % | {:.2f}x | {:.2f}x | {:.2f}x | {:.2f}x "
          "| {:.2f}x | {:.2f}x | {:.2f}x | {:.2f}x | {:.2f}x | {:.2f}x | {:.1f} | {:.1f} | {} | {} |\n",
          n, k, m, ms["fp32"], ms["int8"], ms["w4g32"], ms["w4g128"], ms["w4ch"], ms["w4a8g32"],
          ms["w4a8g128"], ms["w3a8g32"], ms["w3a8g128"], ms["w2a8g32"], ms["w2a8g128"],
          gbs["w4g32"], 100 * gbs["w4g32"] / bw.copy_gbs, ratio("fp32", "w4g32"),
          ratio("int8", "w4g32"), ratio("fp32", "w4a8g32"), ratio("w4g32", "w4a8g32"),
          ratio("w4a8g32", "w3a8g32"), ratio("w4a8g128", "w3a8g128"), ratio("w3a8g32", "w2a8g32"),
          ratio("w3a8g128", "w2a8g128"), ratio("w4a8g32", "w2a8g32"), ratio("w4a8g128", "w2a8g128"),
          gbs["w3a8g32"], gbs["w2a8g32"],
          ms.count("w8a8ch") ? fmt::format("{:.4f}", ms["w8a8ch"]) : "-",
          ms.count("w8a8ch") ? fmt::format("{:.2f}x", ratio("int8", "w8a8ch")) : "-");
      std::fflush(stdout);
    }
  // Every kernel's bytes per second (weights as stored + x + y), and its share of the copy.
  fmt::print("\n| N x K | M |");
  for (const auto& [name, value] : table.front().gbs) fmt::print(" {} GB/s (% of copy) |", name);
  fmt::print("\n|---|---:|");
  for (std::size_t i = 0; i < table.front().gbs.size(); ++i) fmt::print("---:|");
  fmt::print("\n");
  for (const Row& row : table) {
    fmt::print("| {} x {} | {} |", row.n, row.k, row.m);
    for (const auto& [name, value] : row.gbs)
      fmt::print(" {:.1f} ({:.0f} %) |", value, 100 * value / bw.copy_gbs);
    fmt::print("\n");
  }
  return 0;
}
