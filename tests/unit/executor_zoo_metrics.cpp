// Real models' data and metrics against the fp32 figures docs/zoo.md records (measured with
// ONNX Runtime by tools/fetch_models.py): MobileNetV2 on float data that is already
// normalised, MiniLM's nearest-centroid accuracy and SimLex Spearman from named int64
// inputs, SmolLM2's perplexity. models/zoo is not in the repository: without it this case
// skips (its own ctest entry, unit_executor_zoo_metrics).
#include <doctest/doctest.h>

#include <filesystem>
#include <numeric>

#include "data/dataset.hpp"
#include "data/npy.hpp"
#include "executor/evaluate.hpp"
#include "executor/metrics.hpp"
#include "executor/model.hpp"
#include "tests/skip.hpp"
#include "tests/temp_dir.hpp"

namespace bitplan::executor_zoo_metrics_test {
namespace {

namespace fs = std::filesystem;
const fs::path kZoo = fs::path(BITPLAN_SOURCE_DIR) / "models/zoo";

std::vector<std::int64_t> every(const Dataset& dataset) {
  std::vector<std::int64_t> indices(static_cast<std::size_t>(dataset.size()));
  std::iota(indices.begin(), indices.end(), std::int64_t{0});
  return indices;
}

TEST_CASE("real models: data and metrics match the zoo fp32 figures") {
  for (const char* file : {"mobilenet_v2.onnx", "minilm_l6.onnx", "smollm2_135m.onnx",
                           "data/imagenet20_images.npy", "data/smollm2_eval_16x128.npy"})
    if (!fs::exists(kZoo / file)) {
      testing::skip((kZoo / file).string() +
                    " not present (models/zoo is built by tools/fetch_models.py, not in the repo)");
      return;
    }
  const fs::path data = kZoo / "data";

  SUBCASE("MobileNetV2: uint8 images at 1/255 and float images already normalised agree") {
    DatasetConfig config;
    config.format = "npy";
    config.images = data / "imagenet20_images.npy";
    config.labels = data / "imagenet20_labels.npy";
    config.preprocess.mean = {0.485f, 0.456f, 0.406f};
    config.preprocess.std = {0.229f, 0.224f, 0.225f};
    const auto images = open_dataset(config);
    LoadedModel model = load_model(kZoo / "mobilenet_v2.onnx");
    const EvalResult u8 = evaluate(model.graph, *images, every(*images), {10, false});
    CHECK(u8.top1 == doctest::Approx(0.90));
    // The same samples as a float32 file, as users export them: fed as they are.
    test::TempDir dir;
    Tensor normalised(DType::f32, {20, 3, 224, 224});
    images->load(every(*images), normalised.data<float>());
    write_npy(dir / "x.npy", normalised);
    DatasetConfig floats;
    floats.format = "npy";
    floats.images = dir / "x.npy";
    floats.labels = config.labels;
    const auto float_images = open_dataset(floats);
    CHECK(float_images->preprocess_note() == "scale 1 (the default for float32 data: no rescaling)");
    const EvalResult f32 = evaluate(model.graph, *float_images, every(*float_images), {10, false});
    CHECK(f32.top1 == doctest::Approx(0.90));
    CHECK(f32.predictions == u8.predictions);
  }

  SUBCASE("MiniLM: named int64 inputs; centroid accuracy and SimLex-999 Spearman") {
    LoadedModel model = load_model(kZoo / "minilm_l6.onnx");
    DatasetConfig polarity;
    polarity.format = "npy";
    polarity.inputs = {{"input_ids", data / "minilm_polarity_input_ids.npy"},
                       {"attention_mask", data / "minilm_polarity_attention_mask.npy"}};
    polarity.labels = data / "minilm_polarity_labels.npy";
    const auto sentences = open_dataset(polarity);
    EvalOptions options{100, true};
    options.score_labels = false;
    const auto indices = every(*sentences);
    const EvalResult r = evaluate(model.graph, *sentences, indices, options);
    std::vector<std::int64_t> labels;
    for (const auto i : indices) labels.push_back(sentences->label(i));
    CHECK(nearest_centroid_accuracy(r.logits, r.width, labels) == doctest::Approx(0.740));

    DatasetConfig simlex;
    simlex.format = "npy";
    simlex.inputs = {{"input_ids", data / "minilm_simlex999_input_ids.npy"},
                     {"attention_mask", data / "minilm_simlex999_attention_mask.npy"}};
    const auto words = open_dataset(simlex);
    const auto all = every(*words);
    const EvalResult w = evaluate(model.graph, *words, all, {256, true});
    MetricConfig metric;
    metric.pairs = data / "minilm_simlex999_pairs.npy";
    metric.scores = data / "minilm_simlex999_scores.npy";
    const EmbeddingPairs pairs = load_embedding_pairs(metric, all, words->size());
    CHECK(pair_spearman(w.logits, w.width, pairs.pairs, pairs.scores) ==
          doctest::Approx(0.446).epsilon(0.002));
  }

  SUBCASE("SmolLM2-135M: perplexity of the 16 x 128 evaluation tokens") {
    LoadedModel model = load_model(kZoo / "smollm2_135m.onnx");
    DatasetConfig tokens;
    tokens.format = "npy";
    tokens.inputs = {{"input_ids", data / "smollm2_eval_16x128.npy"}};
    const auto dataset = open_dataset(tokens);
    NextTokenOptions next;
    EvalOptions options{4, false};
    options.next_token = &next;
    const EvalResult r = evaluate(model.graph, *dataset, every(*dataset), options);
    CHECK(r.next_token.positions == 16 * 127);
    CHECK(r.next_token.perplexity() == doctest::Approx(25.20).epsilon(0.001));
  }
}

}  // namespace
}  // namespace bitplan::executor_zoo_metrics_test
