#include "backends/cuda/profiler.hpp"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>

#include "backends/cuda/check.hpp"
#include "backends/cuda/cudnn_conv.hpp"
#include "backends/cuda/gemm.hpp"
#include "backends/cuda/kernels.hpp"
#include "backends/cuda/layers.hpp"
#include "backends/cuda/profile_file.hpp"
#include "backends/cuda/workloads.hpp"

namespace bitplan::cuda {

std::string target_name(const std::string& device_name) {
  std::string target;
  for (char ch : device_name) {
    if (std::isalnum(static_cast<unsigned char>(ch)))
      target += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    else if (!target.empty() && target.back() != '-')
      target += '-';
  }
  while (!target.empty() && target.back() == '-') target.pop_back();
  return target;
}

namespace {

// A number for log lines and implementation notes.
std::string number(double value, int decimals) {
  char buffer[64];
  std::snprintf(buffer, sizeof(buffer), "%.*f", decimals, value);
  return buffer;
}

// The float types the model's other ops run in after a layer at p, and before a first layer
// at p (float_beside, precision.hpp).
ElementType float_type_after(Precision p) {
  return float_beside(output_type(p));
}
ElementType float_type_before(Precision p) {
  return float_beside(input_type(p));
}

void measure_ceilings(GpuContext& gpu, ProfileFile& profile,
                      const std::function<void(const std::string&)>& log) {
  TimingOptions heavy;
  heavy.warmup_runs = 5;
  heavy.min_repeats = 20;
  heavy.budget_ms = 300;
  const std::int64_t size = 8192;
  const LayerShape square = parse_layer_key("gemm:m8192:n8192:k8192");
  for (Precision p : all_precisions()) {
    if (p == Precision::w4a16 || p == Precision::w8a16 || p == Precision::int8_chained ||
        p == Precision::fp8_e4m3_chained)
      continue;  // the chained GEMMs run at their unchained precision's rate; the weight-only
                 // kernels are decode kernels (w4a16's weight stream is measured below)
    const std::string name = "gemm_" + to_string(p) + (p == Precision::int8 ? "_tops" : "_tflops");
    if (profile.has_ceiling(name)) continue;
    try {
      LayerRunOptions options;
      auto run = make_layer_run(gpu, square, p, options);
      const TimingResult t = time_on_gpu(
          gpu, [&](int i) { run->run(i); }, heavy);
      const double rate = square.flops() / (t.median_us * 1e-6) / 1e12;
      std::string how = "cublasLt 8192^3 " + to_string(p);
      if (p == Precision::fp32) how += ", CUBLAS_COMPUTE_32F (TF32 off)";
      if (p == Precision::fp16 || p == Precision::bf16) how += ", fp32 accumulate";
      if (p == Precision::int8) how += " -> int32, then int32->fp16 dequant kernel";
      if (p == Precision::fp8_e4m3) how += " -> fp16, fp32 fast accumulate";
      profile.add_ceiling(name, rate, p == Precision::int8 ? "TOP/s" : "TFLOP/s", how);
      if (log) log("ceiling " + name + " = " + number(rate, 1));
    } catch (const Unsupported& e) {
      if (log) log("ceiling " + name + " not measured: " + e.what());
    }
  }
  // W4A16 at decode sizes: the fraction of DRAM bandwidth that the packed weights stream at.
  for (std::int64_t m : {1, 16}) {
    const std::string name = "w4a16_weight_stream_m" + std::to_string(m);
    if (profile.has_ceiling(name)) continue;
    const LayerShape shape = parse_layer_key("gemm:m" + std::to_string(m) + ":n8192:k8192");
    LayerRunOptions options;
    options.rotate_bytes = 4 * gpu.device().l2_bytes;
    auto run = make_layer_run(gpu, shape, Precision::w4a16, options);
    const TimingResult t = time_on_gpu(
        gpu, [&](int i) { run->run(i); }, TimingOptions{});
    const W4Layout layout = w4_layout(size, size);
    const double bytes = double(layout.packed_bytes() + 2 * layout.scale_count()) +
                         2.0 * double(m * size) * 2.0;  // + activations in and out
    const double rate = bytes / (t.median_us * 1e-6) / 1e9;
    profile.add_ceiling(name, rate, "GB/s",
                        "bitplan w4a16 kernel m=" + std::to_string(m) +
                            " n=k=8192: packed int4 + scale + activation bytes / median time (" +
                            number(t.median_us, 2) + " us)");
    if (log) log("ceiling " + name + " = " + number(rate, 1) + " GB/s");
  }
  if (!profile.has_ceiling("dram_bandwidth")) {
    const std::size_t bytes = std::size_t{1} << 30;
    DeviceBuffer a(bytes), b(bytes);
    fill_random_bytes(a.get(), std::int64_t(bytes), 99, gpu.stream());
    const TimingResult t = time_on_gpu(
        gpu,
        [&](int) {
          check_cuda(
              cudaMemcpyAsync(b.get(), a.get(), bytes, cudaMemcpyDeviceToDevice, gpu.stream()),
              "copying device memory");
        },
        heavy);
    const double rate = 2.0 * double(bytes) / (t.median_us * 1e-6) / 1e9;
    profile.add_ceiling("dram_bandwidth", rate, "GB/s", "device copy 1 GiB, bytes read+written");
    if (log) log("ceiling dram_bandwidth = " + number(rate, 1) + " GB/s");
  }
}

// An entry is one run between two timing events (time_on_gpu); in a deployment that
// issues the model as a CUDA graph the same kernels run back to back with no events between
// them. The difference is taken as one constant a step, measured on a round of the kinds of
// kernels a model runs (a copy, an eltwise, a softmax, a row mean, a cuBLASLt GEMM, each at a
// small size) timed alone between events and as steps of one graph: "step_overhead_us" = (sum
// alone - round in the graph) / kernels, which the cost model takes off every entry it adds
// up. "graph_step_us" is the in-graph floor of a step (an empty kernel). The empty kernel
// and a copy past the L2 are timed both ways too, so the profile shows whether the
// difference stays constant across kernels and sizes.
void measure_step_overhead(GpuContext& gpu, ProfileFile& profile,
                           const std::function<void(const std::string&)>& log) {
  if (profile.has_ceiling("step_overhead_us") && profile.has_ceiling("graph_step_us")) return;
  constexpr int kRunsPerGraph = 64;
  const std::int64_t rotate = 2 * gpu.device().l2_bytes + (8 << 20);
  const auto both_ways = [&](const std::function<void(int)>& run, int runs_per_graph) {
    return std::pair{time_on_gpu(gpu, run, TimingOptions{}),
                     time_in_graph(gpu, run, runs_per_graph, TimingOptions{})};
  };
  std::vector<std::unique_ptr<LayerRun>> round;
  for (const char* key : {"copy:i65536:o65536", "eltwise:o65536:i65536x65536", "rownorm:r512:c128",
                          "reduce:r512:c128"})
    round.push_back(make_op_run(gpu, parse_op_key(key), ElementType::f16, rotate));
  LayerRunOptions gemm_options;
  gemm_options.rotate_bytes = rotate;
  round.push_back(
      make_layer_run(gpu, parse_layer_key("gemm:m16:n576:k576"), Precision::fp16, gemm_options));
  double alone_us = 0;
  for (auto& step : round)
    alone_us += time_on_gpu(
                    gpu, [&](int i) { step->run(i); }, TimingOptions{})
                    .median_us;
  const TimingResult in_graph = time_in_graph(
      gpu,
      [&](int i) {
        for (auto& step : round) step->run(i);
      },
      kRunsPerGraph / int(round.size()), TimingOptions{});
  const double overhead = (alone_us - in_graph.median_us) / double(round.size());

  const auto [empty_alone, empty_in_graph] =
      both_ways([&](int) { spin(0.0, gpu.stream()); }, kRunsPerGraph);
  auto big_copy =
      make_op_run(gpu, parse_op_key("copy:i33554432:o33554432"), ElementType::f16, rotate);
  const auto [copy_alone, copy_in_graph] =
      both_ways([&](int i) { big_copy->run(i); }, kRunsPerGraph);
  const std::string how =
      "copy, eltwise, softmax, row mean (64K fp16 elements, 512 x 128) and a cuBLASLt fp16 GEMM "
      "(16 x 576 x 576): " +
      number(alone_us, 2) + " us timed alone between events, " + number(in_graph.median_us, 2) +
      " us as steps of a CUDA graph; an empty kernel " + number(empty_alone.median_us, 2) +
      " us alone, " + number(empty_in_graph.median_us, 2) +
      " us in a graph; a 32M-element fp16 copy " + number(copy_alone.median_us, 2) + " us alone, " +
      number(copy_in_graph.median_us, 2) + " us in a graph";
  if (log) log("step overhead " + number(overhead, 2) + " us: " + how);
  // Ceilings are positive rates; a GPU where events cost nothing records no overhead.
  if (overhead > 0 && !profile.has_ceiling("step_overhead_us"))
    profile.add_ceiling("step_overhead_us", overhead, "us", how);
  if (!profile.has_ceiling("graph_step_us"))
    profile.add_ceiling("graph_step_us", empty_in_graph.median_us, "us", how);
}

// W4A16 and W8A16 above m = 16 have two implementations: bitplan's kernel, or "dequantise the
// weights, then a cuBLASLt fp16 GEMM". A deployment would run the faster, so the profile and
// the chains time both and keep the faster.
bool has_weight_only_alternative(const LayerShape& shape, Precision p) {
  if ((p != Precision::w4a16 && p != Precision::w8a16) || shape.depthwise()) return false;
  const std::int64_t gemm_m =
      shape.op == LayerOp::gemm ? shape.m : shape.batch * shape.out_h() * shape.out_w();
  return gemm_m > 16;
}

// The ways a GEMM-shaped layer can run at p, each a deployment's option: the W4A16 paths
// above, and for int8 (times_gemm_algorithms) the first LtGemm::kMaxAlgorithms of cuBLASLt's
// heuristic ranking, whose first choice is not always the fastest.
std::vector<LayerRunOptions> gemm_variants(const LayerShape& shape, Precision p,
                                           const LayerRunOptions& base) {
  std::vector<LayerRunOptions> variants = {base};
  if (has_weight_only_alternative(shape, p)) {
    variants.push_back(base);
    variants.back().weight_only_path = WeightOnlyPath::dequantize_then_cublaslt;
  }
  if (times_gemm_algorithms(p))
    for (int rank = 1; rank < LtGemm::kMaxAlgorithms; ++rank) {
      variants.push_back(base);
      variants.back().gemm_algorithm = rank;
    }
  return variants;
}

std::string variant_name(const LayerRunOptions& variant, Precision p) {
  if (p == Precision::w4a16 || p == Precision::w8a16)
    return variant.weight_only_path == WeightOnlyPath::own_kernel
               ? (p == Precision::w4a16 ? "own int4 kernel" : "own int8 kernel")
               : "dequant + cublasLt fp16";
  return "cublasLt #" + std::to_string(variant.gemm_algorithm);
}

// The fastest variant of a GEMM-shaped layer (gemm_variants) on `timing`; variants that
// cannot run the shape are skipped, and when none can, the first one's reason is thrown.
struct Fastest {
  LayerRunOptions options;
  TimingResult timing;
  std::string implementation;  // the fastest's text, then "(timed: ...)" when several ran
};

Fastest fastest_gemm_variant(GpuContext& gpu, const LayerShape& shape, Precision p,
                             const LayerRunOptions& base, const TimingOptions& timing,
                             bool rotate_sets) {
  std::optional<Fastest> best;
  std::string timed, first_refusal;
  int ran = 0;
  for (const LayerRunOptions& variant : gemm_variants(shape, p, base)) {
    try {
      auto run = make_layer_run(gpu, shape, p, variant);
      const TimingResult t = time_on_gpu(
          gpu, [&](int i) { run->run(rotate_sets ? i : 0); }, timing);
      timed += (timed.empty() ? "" : ", ") + variant_name(variant, p) + " " +
               number(t.median_us, 1) + " us";
      ++ran;
      if (!best || t.median_us < best->timing.median_us)
        best = Fastest{variant, t, run->implementation()};
    } catch (const Unsupported& e) {
      if (first_refusal.empty()) first_refusal = e.what();
    }
  }
  if (!best) throw Unsupported(first_refusal);
  if (ran > 1) best->implementation += " (timed: " + timed + ")";
  return *best;
}

// A conv has several kernels (conv_kernels(): cuDNN, bitplan's depthwise, im2col + GEMM, the
// last at w4a16 in both WeightOnlyPath variants); a deployment would run the fastest, so the
// profile and the chains time every one that runs the shape and keep the fastest (its
// implementation text then lists "| timed: ..." and "| not run: ...").
Fastest time_conv_kernels(GpuContext& gpu, const LayerShape& shape, Precision p,
                          const LayerRunOptions& run_options, const TimingOptions& timing) {
  Fastest out;
  std::string timed, not_run;
  bool any = false;
  for (const ConvKernel& kernel : conv_kernels()) {
    if (auto declined = kernel.declines(shape, p)) {
      not_run += (not_run.empty() ? "" : "; ") + std::string(kernel.name) + ": " + *declined;
      continue;
    }
    LayerRunOptions options = run_options;
    options.conv_kernel = kernel.name;
    try {
      // im2col + GEMM has the GEMM's variants; the other kernels one way to run.
      Fastest f;
      if (kernel.name == "bitplan_im2col_gemm") {
        f = fastest_gemm_variant(gpu, shape, p, options, timing, true);
      } else {
        auto run = make_layer_run(gpu, shape, p, options);
        f = {options,
             time_on_gpu(
                 gpu, [&](int i) { run->run(i); }, timing),
             run->implementation()};
      }
      timed += (timed.empty() ? "" : ", ") + std::string(kernel.name) + " " +
               number(f.timing.median_us, 2) + " us";
      if (!any || f.timing.median_us < out.timing.median_us) out = f;
      any = true;
    } catch (const Unsupported& e) {
      not_run += (not_run.empty() ? "" : "; ") + std::string(kernel.name) + ": " + e.what();
    }
  }
  if (!any) throw Unsupported(not_run);
  out.implementation += " | timed: " + timed;
  if (!not_run.empty()) out.implementation += " | not run: " + not_run;
  return out;
}

// A gemm layer's entry: the fastest of its variants (gemm_variants).
void measure_gemm(GpuContext& gpu, const LayerShape& shape, Precision p,
                  const LayerRunOptions& run_options, const ProfileOptions& options,
                  ProfileFile& profile) {
  const std::string key = layer_key(shape);
  const Fastest f = fastest_gemm_variant(gpu, shape, p, run_options, options.timing, true);
  profile.add_entry(key, to_string(p), f.timing, f.implementation);
  if (options.log)
    options.log(key + " " + to_string(p) + " " + number(f.timing.median_us, 2) + " us " +
                f.implementation);
}

}  // namespace

int run_profile(GpuContext& gpu, const ProfileOptions& options) {
  // Everything the workloads ask for, in file order, each key once.
  std::vector<std::pair<LayerShape, std::vector<Precision>>> wanted;
  std::map<std::string, std::size_t> position;
  // The model's other ops, each key once, in the float types the precisions' layers write.
  std::vector<std::pair<OpShape, std::vector<ElementType>>> wanted_ops;
  std::map<std::string, std::size_t> op_position;
  std::set<std::int64_t> conversion_sizes;
  std::set<Precision> precisions_used;
  for (const auto& path : options.workloads) {
    const Workloads w = read_workloads(path);
    const std::vector<Precision>& precisions =
        options.precisions.empty() ? w.precisions : options.precisions;
    if (precisions.empty())
      throw ProfileError("reading workloads '" + path +
                         "': no \"precisions\" list: give one in the file or with --precisions");
    for (const auto& layer : w.layers) {
      auto [it, added] = position.emplace(layer.key, wanted.size());
      if (added) wanted.push_back({layer.shape, {}});
      auto& list = wanted[it->second].second;
      for (Precision p : precisions)
        if (std::find(list.begin(), list.end(), p) == list.end()) list.push_back(p);
      conversion_sizes.insert(layer.shape.input_elements());
    }
    for (const auto& op : w.ops) {
      if (!op.unsupported.empty()) continue;
      auto [it, added] = op_position.emplace(op.key, wanted_ops.size());
      if (added) wanted_ops.push_back({op.shape, {}});
      auto& types = wanted_ops[it->second].second;
      for (Precision p : precisions)
        if (std::find(types.begin(), types.end(), float_type_after(p)) == types.end())
          types.push_back(float_type_after(p));
    }
    precisions_used.insert(precisions.begin(), precisions.end());
  }

  ProfileFile profile = ProfileFile::load_or_empty(options.out);
  const CudaDevice& device = gpu.device();
  if (!profile.device_name().empty() && profile.device_name() != device.name)
    throw ProfileError("merging into profile '" + options.out + "': it was measured on '" +
                       profile.device_name() + "', this GPU is '" + device.name +
                       "': a profile holds one device; choose another --out");
  const ProfileHeader header{options.target.empty() ? target_name(device.name) : options.target,
                             device,
                             gpu.driver(),
                             gpu.cuda_runtime(),
                             cublaslt_version(),
                             options.timing,
                             cudnn_runtime_version()};
  const auto save = [&] { profile.save(options.out, header); };

  if (options.ceilings) measure_ceilings(gpu, profile, options.log);
  measure_step_overhead(gpu, profile, options.log);
  save();

  LayerRunOptions run_options;
  run_options.rotate_bytes = 2 * gpu.device().l2_bytes + (8 << 20);
  int measured = 0;
  // The model's other ops first: few, quick, and what a profile of earlier workloads lacks.
  for (const auto& [shape, types] : wanted_ops) {
    const std::string key = op_key(shape);
    for (ElementType type : types) {
      const std::string name = precision_name(type);
      if (profile.has_entry(key, name)) continue;
      try {
        auto run = make_op_run(gpu, shape, type, run_options.rotate_bytes);
        const TimingResult t = time_on_gpu(
            gpu, [&](int i) { run->run(i); }, options.timing);
        profile.add_entry(key, name, t, run->implementation());
        if (options.log) options.log(key + " " + name + " " + number(t.median_us, 2) + " us");
      } catch (const Unsupported& e) {
        profile.add_unsupported(key, name, e.what());
        if (options.log) options.log(key + " " + name + " unsupported: " + e.what());
      }
      if (++measured % 50 == 0) save();
    }
  }

  for (const auto& [shape, precisions] : wanted) {
    const std::string key = layer_key(shape);
    for (Precision p : precisions) {
      if (profile.has_entry(key, to_string(p))) continue;
      try {
        if (shape.op == LayerOp::conv) {
          const Fastest c = time_conv_kernels(gpu, shape, p, run_options, options.timing);
          profile.add_entry(key, to_string(p), c.timing, c.implementation);
          if (options.log)
            options.log(key + " " + to_string(p) + " " + number(c.timing.median_us, 2) + " us " +
                        c.implementation);
        } else {
          measure_gemm(gpu, shape, p, run_options, options, profile);
        }
      } catch (const Unsupported& e) {
        profile.add_unsupported(key, to_string(p), e.what());
        if (options.log) options.log(key + " " + to_string(p) + " unsupported: " + e.what());
      }
      if (++measured % 50 == 0) save();
    }
  }

  // Activation conversions: float types in use (fp16 whenever a layer emits it) to and from
  // the quantised types in use, and between the float types.
  std::vector<ElementType> floats, quantized;
  const auto add_type = [](std::vector<ElementType>& list, ElementType t) {
    if (std::find(list.begin(), list.end(), t) == list.end()) list.push_back(t);
  };
  for (Precision p : precisions_used) {
    if (reads_codes(p)) add_type(quantized, input_type(p));
    if (output_type(p) != input_type(p) || !reads_codes(p)) add_type(floats, output_type(p));
  }
  std::vector<std::pair<ElementType, ElementType>> pairs;
  for (ElementType f : floats) {
    for (ElementType q : quantized) pairs.push_back({f, q}), pairs.push_back({q, f});
    for (ElementType g : floats)
      if (f != g) pairs.push_back({f, g});
  }
  TimingOptions conversion_timing = options.timing;
  conversion_timing.budget_ms = std::min(options.timing.budget_ms, 10.0);
  for (std::int64_t elements : conversion_sizes) {
    for (const auto& [from, to] : pairs) {
      if (profile.has_conversion(precision_name(from), precision_name(to), elements)) continue;
      auto run = make_conversion_run(gpu, elements, from, to, run_options.rotate_bytes);
      const TimingResult t = time_on_gpu(
          gpu, [&](int i) { run->run(i); }, conversion_timing);
      profile.add_conversion(precision_name(from), precision_name(to), elements, t);
      ++measured;
    }
  }
  save();
  return measured;
}

namespace {

// One step of a chain: a layer at a precision, or one of the model's other ops, whose float
// type follows from the step before it.
struct ChainItem {
  std::string key;
  std::optional<LayerShape> layer;
  std::optional<OpShape> op;
  Precision precision = Precision::fp32;  // a layer's
  std::optional<ElementType> op_type;     // an op's, when the plan names it
};

struct Chain {
  std::vector<std::unique_ptr<LayerRun>> steps;
  int layers = 0, ops = 0, conversions = 0, chained = 0;
};

// Builds the runs of `items` in order. An int8 (fp8) layer whose next step is another int8
// (fp8) layer writes the reader's codes itself (int8_chained, fp8_e4m3_chained) where a kernel
// does that for its shape, as a deployment would; an op between them needs the float output,
// so it does not. An op runs in the float type the step before it writes (the first layer's
// float input type when it leads); a conversion kernel goes wherever the type one step
// writes differs from the type the next reads.
Chain build_chain(GpuContext& gpu, const std::vector<ChainItem>& items) {
  Chain chain;
  // The same choices as the profile makes, timed briefly on the chain's own buffers.
  TimingOptions quick;
  quick.min_repeats = 10;
  quick.budget_ms = 2;
  std::optional<ElementType> previous_out;
  for (std::size_t i = 0; i < items.size(); ++i) {
    const ChainItem& item = items[i];
    try {
      if (item.op) {
        ElementType type = ElementType::f32;
        if (item.op_type) {
          type = *item.op_type;
        } else if (previous_out) {
          type = *previous_out;
        } else {
          const auto first_layer =
              std::find_if(items.begin(), items.end(), [](const ChainItem& c) { return c.layer; });
          if (first_layer != items.end()) type = float_type_before(first_layer->precision);
        }
        if (previous_out && *previous_out != type) {
          chain.steps.push_back(
              make_conversion_run(gpu, item.op->elements_read(), *previous_out, type, 0));
          ++chain.conversions;
        }
        chain.steps.push_back(make_op_run(gpu, *item.op, type, 0));
        previous_out = type;
        ++chain.ops;
        continue;
      }
      const LayerShape& shape = *item.layer;
      Precision p = item.precision;
      const std::optional<Precision> chained_as = chained_precision(p);
      const bool same_reader =
          i + 1 < items.size() && items[i + 1].layer && items[i + 1].precision == p;
      if (chained_as && same_reader) {
        try {
          make_layer_run(gpu, shape, *chained_as, LayerRunOptions{});
          p = *chained_as;
          ++chain.chained;
        } catch (const Unsupported&) {
        }
      }
      if (previous_out && *previous_out != input_type(p)) {
        chain.steps.push_back(
            make_conversion_run(gpu, shape.input_elements(), *previous_out, input_type(p), 0));
        ++chain.conversions;
      }
      if (shape.op == LayerOp::conv) {
        const LayerRunOptions fastest =
            time_conv_kernels(gpu, shape, p, LayerRunOptions{}, quick).options;
        chain.steps.push_back(make_layer_run(gpu, shape, p, fastest));
      } else {
        const LayerRunOptions fastest =
            fastest_gemm_variant(gpu, shape, p, LayerRunOptions{}, quick, false).options;
        chain.steps.push_back(make_layer_run(gpu, shape, p, fastest));
      }
      previous_out = output_type(p);
      ++chain.layers;
    } catch (const Unsupported& e) {
      throw Unsupported("step " + std::to_string(i) + " (" + item.key +
                        (item.layer ? ", " + to_string(item.precision) : "") + "): " + e.what());
    }
  }
  return chain;
}

// Times a built chain and fills the result's numbers.
void time_chain(GpuContext& gpu, Chain& chain, const TimingOptions& timing, nlohmann::json& result,
                const std::function<void(const std::string&)>& log) {
  result["layers"] = chain.layers;
  result["ops"] = chain.ops;
  result["conversions"] = chain.conversions;
  result["chained"] = chain.chained;
  const auto whole_model = [&](int) {
    for (auto& step : chain.steps) step->run(0);
  };
  // Issued step by step (an eager runtime: at small batches the host's launches can be
  // what bounds it), and as one CUDA graph (a deployment's steady state).
  const TimingResult t = time_on_gpu(gpu, whole_model, timing);
  result["median_us"] = t.median_us;
  result["iqr_us"] = t.iqr_us;
  result["repeats"] = t.repeats;
  std::string graph_text;
  try {
    const TimingResult g = time_in_graph(gpu, whole_model, 1, timing);
    result["graph_median_us"] = g.median_us;
    result["graph_iqr_us"] = g.iqr_us;
    graph_text = ", " + number(g.median_us, 1) + " us as a CUDA graph";
  } catch (const Unsupported& e) {
    result["graph_unsupported"] = e.what();
    graph_text = ", no CUDA graph: " + std::string(e.what());
  }
  if (log)
    log("chain " + result["name"].get<std::string>() + ": " + number(t.median_us, 1) + " us eager" +
        graph_text + " (" + std::to_string(chain.layers) + " layers, " + std::to_string(chain.ops) +
        " other ops, " + std::to_string(chain.conversions) + " conversions, " +
        std::to_string(chain.chained) + " int8/fp8 layers writing their reader's codes)");
}

}  // namespace

void run_chains(GpuContext& gpu, const ChainOptions& options) {
  nlohmann::json results = nlohmann::json::array();
  // Written after every chain (through a temporary file renamed over the target), so a run
  // cut off by a time limit keeps what it measured.
  const auto save = [&] {
    nlohmann::json out;
    out["bitplan_chain_results"] = 1;
    out["device"] = gpu.device().name;
    out["what"] =
        "layer sequence: each plan's steps back to back in one stream (conv/gemm layers and, "
        "where the plan or workloads file lists them, the model's other ops on bitplan's "
        "kernels), plus a conversion kernel wherever a step's output type differs from the "
        "next step's input type; each step reads its own buffers, not its predecessor's output";
    out["timing"] = {{"warmup_runs", options.timing.warmup_runs},
                     {"min_repeats", options.timing.min_repeats},
                     {"budget_ms", options.timing.budget_ms},
                     {"statistic", "median"},
                     {"clock", "cuda_events"},
                     {"graph",
                      "graph_median_us: the same steps captured once into a CUDA "
                      "graph and replayed (no host launches between them)"},
                     {"buffers", "one set per step, reused every repeat (steady-state inference)"}};
    out["results"] = results;
    write_atomically(options.out, "chain results",
                     [&](std::ostream& file) { file << out.dump(2) << "\n"; });
  };
  if (!options.plans.empty()) {
    std::ifstream file(options.plans);
    if (!file)
      throw ProfileError("reading plans '" + options.plans + "': the file must be readable");
    nlohmann::json doc;
    try {
      doc = nlohmann::json::parse(file);
    } catch (const nlohmann::json::exception& e) {
      throw ProfileError("reading plans '" + options.plans + "': must be JSON (" + e.what() + ")");
    }
    const nlohmann::json plans = doc.is_object() && doc.contains("plans") ? doc["plans"] : doc;
    if (!plans.is_array())
      throw ProfileError("reading plans '" + options.plans +
                         "': top level: must be an array of plans or {\"plans\": [...]}");
    for (const auto& plan : plans) {
      nlohmann::json result;
      try {
        result["name"] = plan.at("name").get<std::string>();
        std::vector<ChainItem> items;
        for (const auto& layer : plan.at("layers")) {
          ChainItem item;
          item.key = layer.at("key").get<std::string>();
          const std::string precision = layer.at("precision").get<std::string>();
          if (is_op_key(item.key)) {
            item.op = parse_op_key(item.key);
            item.op_type = input_type(parse_precision(precision));
          } else {
            item.layer = parse_layer_key(item.key);
            item.precision = parse_precision(precision);
          }
          items.push_back(std::move(item));
        }
        Chain chain = build_chain(gpu, items);
        time_chain(gpu, chain, options.timing, result, options.log);
      } catch (const Unsupported& e) {
        result["unsupported"] = e.what();
        if (options.log) options.log("chain unsupported: " + std::string(e.what()));
      } catch (const nlohmann::json::exception& e) {
        throw ProfileError("reading plans '" + options.plans + "': plan " + result.dump() + ": " +
                           e.what() +
                           ": each plan needs \"name\" and \"layers\" of {key, precision}");
      }
      results.push_back(result);
      save();
    }
  }

  for (const auto& path : options.model_workloads) {
    const Workloads w = read_workloads(path);
    const std::vector<Precision>& precisions =
        options.model_precisions.empty() ? w.precisions : options.model_precisions;
    int unsupported_ops = 0;
    std::vector<ChainItem> base;
    std::size_t next_op = 0;
    for (std::size_t layer = 0; layer <= w.layers.size(); ++layer) {
      for (; next_op < w.ops.size() && w.ops[next_op].layers_before <= layer; ++next_op) {
        const WorkloadOp& op = w.ops[next_op];
        if (!op.unsupported.empty()) {
          ++unsupported_ops;
          continue;
        }
        ChainItem item;
        item.key = op.key;
        item.op = op.shape;
        base.push_back(std::move(item));
      }
      if (layer == w.layers.size()) break;
      ChainItem item;
      item.key = w.layers[layer].key;
      item.layer = w.layers[layer].shape;
      base.push_back(std::move(item));
    }
    for (Precision p : precisions) {
      nlohmann::json result;
      result["name"] = w.model + " b" + std::to_string(w.batch) + " " + to_string(p);
      result["model"] = w.model;
      result["batch"] = w.batch;
      result["precision"] = to_string(p);
      result["workloads"] = path;
      result["ops_without_kernel"] = unsupported_ops;
      std::vector<ChainItem> items = base;
      for (auto& item : items) item.precision = p;
      try {
        Chain chain = build_chain(gpu, items);
        time_chain(gpu, chain, options.timing, result, options.log);
      } catch (const Unsupported& e) {
        result["unsupported"] = e.what();
        if (options.log) options.log("chain unsupported: " + std::string(e.what()));
      }
      results.push_back(result);
      save();
    }
  }

  save();
}

}  // namespace bitplan::cuda
