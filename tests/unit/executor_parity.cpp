// Parity with PyTorch on the committed fixture models: bitplan's fp32 executor against the
// logits and predictions PyTorch recorded at export (models/<name>.logits.npy: first 1000
// test samples; .preds.npy: top-1 on the whole test set). Needs the datasets; skips with
// the reason when they are absent.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <numeric>

#include "data/dataset.hpp"
#include "data/npy.hpp"
#include "executor/evaluate.hpp"
#include "executor/model.hpp"
#include "fashion_mnist.hpp"

namespace executor_parity_test {

namespace fs = std::filesystem;
using namespace bitplan;

namespace {

const fs::path kSource = BITPLAN_SOURCE_DIR;
const fs::path kCifar = kSource / "../shared/data/cifar10/test";

DatasetConfig fashion_test() {
  return testing::fashion_mnist_test_config();
}

DatasetConfig cifar_test() {
  DatasetConfig c;
  c.format = "image_folder";
  c.images = kCifar;
  // The published weights were trained with these (ImageNet) statistics; see
  // ../shared/models/cifar10-resnet/README.md and models/cifar10_resnet20.json.
  c.preprocess.mean = {0.485f, 0.456f, 0.406f};
  c.preprocess.std = {0.229f, 0.224f, 0.225f};
  return c;
}

// `reference` names the recorded PyTorch outputs (the same model exported at another
// opset shares them).
void check_parity(const std::string& name, const DatasetConfig& config,
                  std::string reference = "") {
  if (reference.empty()) reference = name;
  const fs::path logits_file = kSource / "models" / (reference + ".logits.npy");
  const LoadedModel model = load_model(kSource / "models" / (name + ".onnx"));
  const auto dataset = open_dataset(config);
  const Tensor want = read_npy(logits_file);
  const Tensor want_preds = read_npy(kSource / "models" / (reference + ".preds.npy"));
  const std::int64_t n = want.dim(0), classes = want.dim(1);
  std::vector<std::int64_t> indices(static_cast<std::size_t>(n));
  std::iota(indices.begin(), indices.end(), 0);
  const EvalResult r = evaluate(model.graph, *dataset, indices, EvalOptions{128, true});
  REQUIRE(static_cast<std::int64_t>(r.logits.size()) == n * classes);
  // Relative error per sample: max |got - want| over the row divided by max |want|.
  double worst = 0;
  std::int64_t agree = 0;
  const auto preds = want_preds.to_int64_vector();
  for (std::int64_t i = 0; i < n; ++i) {
    double err = 0, scale = 0;
    for (std::int64_t c = 0; c < classes; ++c) {
      const double w = want.data<float>()[i * classes + c];
      err = std::max(err, std::abs(r.logits[static_cast<std::size_t>(i * classes + c)] - w));
      scale = std::max(scale, std::abs(w));
    }
    worst = std::max(worst, err / std::max(scale, 1e-6));
    agree += r.predictions[static_cast<std::size_t>(i)] == preds[static_cast<std::size_t>(i)];
  }
  MESSAGE(name << ": " << n << " samples, top-1 agreement " << agree << "/" << n
               << ", worst per-sample relative logit error " << worst);
  CHECK(worst < 1e-4);
  CHECK(static_cast<double>(agree) >= 0.999 * static_cast<double>(n));
}

}  // namespace

TEST_CASE("fp32 parity with PyTorch on Fashion-MNIST fixtures") {
  if (!fs::exists(fashion_test().images)) {
    testing::skip(testing::kFashionMnistMissing);
    return;
  }
  for (const std::string name :
       {"fmnist_mlp", "fmnist_resnet", "fmnist_mobilenetv2", "fmnist_vit"}) {
    SUBCASE(name.c_str()) {
      check_parity(name, fashion_test());
    }
  }
  SUBCASE("fmnist_vit_opset17") {
    check_parity("fmnist_vit_opset17", fashion_test(), "fmnist_vit");
  }
}

TEST_CASE("the opset-13 ViT's decomposed LayerNorms and GELUs are all recognised") {
  const LoadedModel vit = load_model(kSource / "models/fmnist_vit.onnx");
  CHECK(vit.simplification.fused_layernorm == 5);  // 2 blocks x 2 + final
  CHECK(vit.simplification.fused_gelu == 2);
  for (const auto& node : vit.graph.nodes) CHECK(node.op_type != "Erf");
}

TEST_CASE("fp32 parity with PyTorch on the published CIFAR-10 ResNets") {
  if (!fs::is_directory(kCifar)) {
    testing::skip(kCifar.string() + " not present (it ships in ../shared, not in the repo)");
    return;
  }
  for (const std::string name : {"cifar10_resnet20", "cifar10_resnet32"}) {
    SUBCASE(name.c_str()) {
      check_parity(name, cifar_test());
    }
  }
}

}  // namespace executor_parity_test
