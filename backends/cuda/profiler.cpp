#include "backends/cuda/profiler.hpp"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <fstream>
#include <map>
#include <optional>
#include <nlohmann/json.hpp>
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

void measure_ceilings(GpuContext& gpu, ProfileFile& profile,
                      const std::function<void(const std::string&)>& log) {
  TimingOptions heavy;
  heavy.warmup_runs = 5;
  heavy.min_repeats = 20;
  heavy.budget_ms = 300;
  const std::int64_t size = 8192;
  const LayerShape square = parse_layer_key("gemm:m8192:n8192:k8192");
  for (Precision p : all_precisions()) {
    if (p == Precision::w4a16 || p == Precision::int8_chained ||
        p == Precision::fp8_e4m3_chained)
      continue;  // the chained GEMMs run at their unchained precision's rate
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

// W4A16 above m = 16 has two implementations: the int4 kernel, or "dequantise the weights,
// then a cuBLASLt fp16 GEMM". A deployment would run the faster, so the profile and the
// chains time both and keep the faster.
bool has_w4_alternative(const LayerShape& shape, Precision p) {
  if (p != Precision::w4a16 || shape.depthwise()) return false;
  const std::int64_t gemm_m =
      shape.op == LayerOp::gemm ? shape.m : shape.batch * shape.out_h() * shape.out_w();
  return gemm_m > 16;
}

// A conv has several kernels (conv_kernels(): cuDNN, bitplan's depthwise, im2col + GEMM, the
// last at w4a16 in both W4Path variants); a deployment would run the fastest, so the
// profile and the chains time every one that runs the shape and keep the fastest.
struct ConvTimings {
  LayerRunOptions fastest;     // the options that make the fastest run
  TimingResult timing;         // its time
  std::string implementation;  // its text, then "| timed: ..." and "| not run: ..."
};

ConvTimings time_conv_kernels(GpuContext& gpu, const LayerShape& shape, Precision p,
                              const LayerRunOptions& run_options, const TimingOptions& timing) {
  ConvTimings out;
  std::string timed, not_run;
  bool any = false;
  for (const ConvKernel& kernel : conv_kernels()) {
    if (auto declined = kernel.declines(shape, p)) {
      not_run += (not_run.empty() ? "" : "; ") + std::string(kernel.name) + ": " + *declined;
      continue;
    }
    std::vector<W4Path> paths = {W4Path::own_kernel};
    if (kernel.name == "bitplan_im2col_gemm" && has_w4_alternative(shape, p))
      paths.push_back(W4Path::dequantize_then_cublaslt);
    for (W4Path path : paths) {
      LayerRunOptions options = run_options;
      options.conv_kernel = kernel.name;
      options.w4_path = path;
      try {
        auto run = make_layer_run(gpu, shape, p, options);
        const TimingResult t = time_on_gpu(
            gpu, [&](int i) { run->run(i); }, timing);
        timed += (timed.empty() ? "" : ", ") + std::string(kernel.name) +
                 (path == W4Path::own_kernel ? "" : " (w4 dequant + cublasLt fp16)") + " " +
                 number(t.median_us, 2) + " us";
        if (!any || t.median_us < out.timing.median_us) out = {options, t, run->implementation()};
        any = true;
      } catch (const Unsupported& e) {
        not_run += (not_run.empty() ? "" : "; ") + std::string(kernel.name) + ": " + e.what();
      }
    }
  }
  if (!any) throw Unsupported(not_run);
  out.implementation += " | timed: " + timed;
  if (!not_run.empty()) out.implementation += " | not run: " + not_run;
  return out;
}

// A gemm layer's entry: cuBLASLt, or at w4a16 the faster of the int4 kernel and
// "dequantise, then a tensor-core GEMM" above m = 16.
void measure_gemm(GpuContext& gpu, const LayerShape& shape, Precision p,
                  const LayerRunOptions& run_options, const ProfileOptions& options,
                  ProfileFile& profile) {
  const std::string key = layer_key(shape);
  auto run = make_layer_run(gpu, shape, p, run_options);
  TimingResult t = time_on_gpu(
      gpu, [&](int i) { run->run(i); }, options.timing);
  std::string implementation = run->implementation();
  // At larger m the int4 kernel competes with "dequantise, then a tensor-core GEMM";
  // a deployment would pick the faster, so the profile does too (and says which).
  if (has_w4_alternative(shape, p)) {
    run.reset();
    LayerRunOptions alternative = run_options;
    alternative.w4_path = W4Path::dequantize_then_cublaslt;
    auto other = make_layer_run(gpu, shape, p, alternative);
    const TimingResult u = time_on_gpu(
        gpu, [&](int i) { other->run(i); }, options.timing);
    if (u.median_us < t.median_us) {
      implementation =
          other->implementation() + " (own int4 kernel: " + number(t.median_us, 1) + " us)";
      t = u;
    } else {
      implementation += " (dequant + cublasLt fp16: " + number(u.median_us, 1) + " us)";
    }
  }
  profile.add_entry(key, to_string(p), t, implementation);
  if (options.log) options.log(key + " " + to_string(p) + " " + number(t.median_us, 2) + " us");
}

}  // namespace

int run_profile(GpuContext& gpu, const ProfileOptions& options) {
  // Everything the workloads ask for, in file order, each key once.
  std::vector<std::pair<LayerShape, std::vector<Precision>>> wanted;
  std::map<std::string, std::size_t> position;
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
  save();

  LayerRunOptions run_options;
  run_options.rotate_bytes = 2 * gpu.device().l2_bytes + (8 << 20);
  int measured = 0;
  for (const auto& [shape, precisions] : wanted) {
    const std::string key = layer_key(shape);
    for (Precision p : precisions) {
      if (profile.has_entry(key, to_string(p))) continue;
      try {
        if (shape.op == LayerOp::conv) {
          const ConvTimings c = time_conv_kernels(gpu, shape, p, run_options, options.timing);
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

void run_chains(GpuContext& gpu, const ChainOptions& options) {
  std::ifstream file(options.plans);
  if (!file) throw ProfileError("reading plans '" + options.plans + "': the file must be readable");
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

  nlohmann::json results = nlohmann::json::array();
  for (const auto& plan : plans) {
    nlohmann::json result;
    std::vector<std::unique_ptr<LayerRun>> steps;
    int conversions = 0, chained = 0;
    try {
      result["name"] = plan.at("name").get<std::string>();
      const auto& layers = plan.at("layers");
      result["layers"] = layers.size();
      ElementType previous_out = ElementType::f32;
      bool first = true;
      for (std::size_t i = 0; i < layers.size(); ++i) {
        const std::string key = layers[i].at("key").get<std::string>();
        const Precision planned = parse_precision(layers[i].at("precision").get<std::string>());
        const LayerShape shape = parse_layer_key(key);
        // An int8 (fp8) layer before another int8 (fp8) layer writes the reader's codes
        // itself (int8_chained, fp8_e4m3_chained) where a kernel does that for its shape, as a
        // deployment would.
        const bool same_reader =
            i + 1 < layers.size() &&
            parse_precision(layers[i + 1].at("precision").get<std::string>()) == planned;
        Precision p = planned;
        const std::optional<Precision> chained_as = chained_precision(planned);
        if (chained_as && same_reader) {
          try {
            make_layer_run(gpu, shape, *chained_as, LayerRunOptions{});
            p = *chained_as;
            ++chained;
          } catch (const Unsupported&) {
          }
        }
        if (!first && previous_out != input_type(p)) {
          steps.push_back(
              make_conversion_run(gpu, shape.input_elements(), previous_out, input_type(p), 0));
          ++conversions;
        }
        try {
          // The same choice as the profile makes, timed briefly on the chain's own buffers.
          TimingOptions quick;
          quick.min_repeats = 10;
          quick.budget_ms = 2;
          if (shape.op == LayerOp::conv) {
            const LayerRunOptions fastest =
                time_conv_kernels(gpu, shape, p, LayerRunOptions{}, quick).fastest;
            steps.push_back(make_layer_run(gpu, shape, p, fastest));
          } else {
            steps.push_back(make_layer_run(gpu, shape, p, LayerRunOptions{}));
            if (has_w4_alternative(shape, p)) {
              LayerRunOptions alternative;
              alternative.w4_path = W4Path::dequantize_then_cublaslt;
              auto other = make_layer_run(gpu, shape, p, alternative);
              const auto time_of = [&](LayerRun& r) {
                return time_on_gpu(
                           gpu, [&](int) { r.run(0); }, quick)
                    .median_us;
              };
              if (time_of(*other) < time_of(*steps.back())) steps.back() = std::move(other);
            }
          }
        } catch (const Unsupported& e) {
          throw Unsupported("layer " + std::to_string(i) + " (" + key + ", " + to_string(p) +
                            "): " + e.what());
        }
        previous_out = output_type(p);
        first = false;
      }
      result["conversions"] = conversions;
      result["chained"] = chained;
      TimingOptions timing = options.timing;
      const TimingResult t = time_on_gpu(
          gpu,
          [&](int) {
            for (auto& step : steps) step->run(0);
          },
          timing);
      result["median_us"] = t.median_us;
      result["iqr_us"] = t.iqr_us;
      result["repeats"] = t.repeats;
      if (options.log)
        options.log("chain " + result["name"].get<std::string>() + ": " + number(t.median_us, 1) +
                    " us (" + std::to_string(layers.size()) + " layers, " +
                    std::to_string(conversions) + " conversions, " + std::to_string(chained) +
                    " int8/fp8 layers writing their reader's codes)");
    } catch (const Unsupported& e) {
      result["unsupported"] = e.what();
      if (options.log) options.log("chain unsupported: " + std::string(e.what()));
    } catch (const nlohmann::json::exception& e) {
      throw ProfileError("reading plans '" + options.plans + "': plan " + result.dump() + ": " +
                         e.what() +
                         ": each plan needs \"name\" and \"layers\" of {key, precision}");
    }
    results.push_back(result);
  }

  nlohmann::json out;
  out["bitplan_chain_results"] = 1;
  out["device"] = gpu.device().name;
  out["what"] =
      "layer sequence: each plan's conv/gemm layers back to back in one stream, plus a "
      "conversion kernel wherever a layer's output type differs from the next layer's input "
      "type; the model's other ops (activations, pooling, residual adds, attention) are not run";
  out["timing"] = {{"warmup_runs", options.timing.warmup_runs},
                   {"min_repeats", options.timing.min_repeats},
                   {"budget_ms", options.timing.budget_ms},
                   {"statistic", "median"},
                   {"clock", "cuda_events"},
                   {"buffers", "one set per layer, reused every repeat (steady-state inference)"}};
  out["results"] = results;
  std::ofstream file_out(options.out);
  if (!file_out)
    throw ProfileError("writing chain results '" + options.out + "': must be writable");
  file_out << out.dump(2) << "\n";
}

}  // namespace bitplan::cuda
