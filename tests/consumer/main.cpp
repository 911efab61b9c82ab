// Uses the installed library the way an embedding program would: loads a fixture model, runs
// it in fp32 and under a uniform W8A8 plan (simulated), costs both plans on a hardware
// profile, checks that the answers are sane and that misuse is refused with bitplan::Error.
// Exits 0 when all is well, 1 otherwise (each check is printed).
//   bitplan_consumer MODEL.onnx PROFILE.yaml   (fmnist_mlp.onnx must sit beside MODEL.onnx)
#include <bitplan/bitplan.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

namespace {

int failures = 0;

void expect(bool ok, const std::string& what) {
  std::printf("%s: %s\n", ok ? "ok  " : "FAIL", what.c_str());
  if (!ok) ++failures;
}

// `count` samples of the model's input: smooth patterns in about [-1, 2], like normalised
// images, different for each sample.
bitplan::FloatTensor samples(const bitplan::Model& model, std::int64_t count, int seed) {
  bitplan::FloatTensor t{model.input_dims(), {}};
  t.dims[0] = count;
  std::int64_t numel = 1;
  for (const std::int64_t d : t.dims) numel *= d;
  t.values.resize(static_cast<std::size_t>(numel));
  for (std::int64_t i = 0; i < numel; ++i)
    t.values[static_cast<std::size_t>(i)] =
        0.5f + 1.2f * std::sin(0.05f * static_cast<float>(i) + 1.7f * static_cast<float>(seed));
  return t;
}

std::size_t argmax(const float* row, std::int64_t n) {
  std::size_t best = 0;
  for (std::int64_t j = 1; j < n; ++j)
    if (row[j] > row[best]) best = static_cast<std::size_t>(j);
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: bitplan_consumer MODEL.onnx PROFILE.yaml\n");
    return 2;
  }
  try {
    const bitplan::Model model = bitplan::Model::load(argv[1]);
    expect(!model.quantizable_layers().empty(), "the model has quantizable layers");

    constexpr std::int64_t kBatch = 8;
    const bitplan::FloatTensor input = samples(model, kBatch, 0);
    const std::vector<bitplan::FloatTensor> fp32 = model.run(input);
    expect(fp32.size() == 1 && fp32[0].dims.size() == 2 && fp32[0].dims[0] == kBatch,
           "fp32 gives one [batch, classes] output");
    const std::int64_t classes = fp32[0].dims[1];
    bool finite = true;
    for (const float v : fp32[0].values) finite = finite && std::isfinite(v);
    expect(finite, "fp32 outputs are finite");

    const auto w8a8 = bitplan::QuantizationPlan::uniform(model, "W8A8");
    expect(w8a8.quantized_layers().size() == model.quantizable_layers().size(),
           "W8A8 quantizes every quantizable layer");
    const bitplan::QuantizedModel quantized(model, w8a8, samples(model, 16, 1));
    const std::vector<bitplan::FloatTensor> q = quantized.run(input);
    expect(q.size() == 1 && q[0].dims == fp32[0].dims, "W8A8 output has the fp32 output's dims");
    // 8-bit quantization moves logits a little: the same top-1 class on most samples, and a
    // small error relative to the logits' size.
    int same_top1 = 0;
    double error = 0, norm = 0;
    for (std::int64_t i = 0; i < kBatch; ++i) {
      const float* a = fp32[0].values.data() + i * classes;
      const float* b = q[0].values.data() + i * classes;
      same_top1 += argmax(a, classes) == argmax(b, classes);
      for (std::int64_t j = 0; j < classes; ++j) {
        error += (a[j] - b[j]) * (a[j] - b[j]);
        norm += a[j] * a[j];
      }
    }
    expect(same_top1 >= kBatch - 2, std::to_string(same_top1) + " of " + std::to_string(kBatch) +
                                        " samples keep their class");
    expect(error < 0.01 * norm, "W8A8 logits within 10% (RMS) of fp32");

    const auto profile = bitplan::HardwareProfile::load(argv[2]);
    const bitplan::CostEstimate float_cost =
        bitplan::estimate_cost(model, bitplan::QuantizationPlan::fp32(model), profile);
    const bitplan::CostEstimate int8_cost = bitplan::estimate_cost(model, w8a8, profile);
    expect(float_cost.latency_ms && *float_cost.latency_ms > 0, "fp32 latency is positive");
    // The profiled CPU has no VNNI: its int8 kernels cannot run 8-bit weights exactly, so W8A8
    // has no latency there, and every layer says why; 7-bit weights run on them.
    expect(!int8_cost.latency_ms &&
               int8_cost.unsupported_layers.size() == model.quantizable_layers().size() &&
               int8_cost.unsupported_layers[0].second.find("VNNI") != std::string::npos,
           "W8A8 has no latency on a CPU without VNNI, and each layer says why");
    const bitplan::CostEstimate w7a8_cost =
        bitplan::estimate_cost(model, bitplan::QuantizationPlan::uniform(model, "W7A8"), profile);
    expect(w7a8_cost.latency_ms && *w7a8_cost.latency_ms > 0 &&
               w7a8_cost.unsupported_layers.empty() && w7a8_cost.estimated_layers == 0,
           "W7A8 latency is positive and measured for every layer (" +
               std::to_string(w7a8_cost.latency_ms.value_or(0)) + " ms vs " +
               std::to_string(float_cost.latency_ms.value_or(0)) + " ms in fp32)");
    // Weights go from 32 to 8 bits, plus scales and the float parts.
    expect(int8_cost.size_bytes > 0.2 * float_cost.size_bytes &&
               int8_cost.size_bytes < 0.4 * float_cost.size_bytes,
           "W8A8 size is about a quarter of fp32's (" + std::to_string(int8_cost.size_bytes) +
               " vs " + std::to_string(float_cost.size_bytes) + " bytes)");

    // Errors cross the library boundary as bitplan::Error, with their kind.
    const auto refused = [](const std::string& what, bitplan::ErrorKind kind, const auto& call) {
      try {
        call();
        expect(false, what + " is refused");
      } catch (const bitplan::Error& e) {
        expect(e.kind() == kind, what + " is refused: " + e.what());
      }
    };
    refused("a bad shorthand", bitplan::ErrorKind::invalid_input,
            [&] { (void)bitplan::QuantizationPlan::uniform(model, "W8X8"); });
    refused("a tensor whose dims and values disagree", bitplan::ErrorKind::usage, [&] {
      (void)model.run(bitplan::FloatTensor{{2, 1, 28, 28}, {1.0f}});
    });
    refused("a static plan without calibration samples", bitplan::ErrorKind::usage,
            [&] { (void)bitplan::QuantizedModel(model, w8a8); });
    const std::filesystem::path other_file =
        std::filesystem::path(argv[1]).parent_path() / "fmnist_mlp.onnx";
    const bitplan::Model other = bitplan::Model::load(other_file);
    refused("a plan made for another model", bitplan::ErrorKind::usage,
            [&] { (void)bitplan::estimate_cost(other, w8a8, profile); });
  } catch (const bitplan::Error& e) {
    std::fprintf(stderr, "bitplan_consumer: bitplan error (kind %d): %s\n",
                 static_cast<int>(e.kind()), e.what());
    return 1;
  }
  return failures == 0 ? 0 : 1;
}
