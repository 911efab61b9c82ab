// PyTorch parity on the whole test set (the unit test checks a 1000-sample subset): top-1
// agreement with the predictions PyTorch recorded at export (models/<name>.preds.npy, all
// test samples), bitplan's own accuracy, and the worst relative logit error on the samples
// whose logits were recorded (models/<name>.logits.npy).
//
//   parity_full [REPO_DIR]     (reads configs/<model>.yaml; the CIFAR-10 configs need
//                               ../shared/data/cifar10 next to the repo)
#include <fmt/format.h>

#include <cmath>
#include <filesystem>
#include <iostream>
#include <numeric>

#include "cli/run_config.hpp"
#include "data/npy.hpp"
#include "executor/evaluate.hpp"
#include "executor/model.hpp"

namespace fs = std::filesystem;
using namespace bitplan;

int main(int argc, char** argv) {
  const fs::path repo = argc > 1 ? argv[1] : ".";
  fmt::print("{:<20} {:>7} {:>14} {:>12} {:>12} {:>16}\n", "model", "samples", "top1_agree",
             "bitplan_acc", "torch_acc", "max_rel_logit_err");
  for (const std::string name : {"fmnist_mlp", "fmnist_resnet", "fmnist_mobilenetv2", "fmnist_vit",
                                 "cifar10_resnet20", "cifar10_resnet32"}) {
    try {
      // The model's own run config names its dataset and preprocessing.
      const RunConfig run = load_run_config(repo / "configs" / (name + ".yaml"));
      const fs::path& model_file = run.model;
      const DatasetConfig& config = run.dataset;
      if (!fs::exists(model_file) || !fs::exists(config.images)) {
        fmt::print("{:<20} skipped: {} or {} missing\n", name, model_file.string(),
                   config.images.string());
        continue;
      }
      const LoadedModel model = load_model(model_file);
      const auto dataset = open_dataset(config);
      std::vector<std::int64_t> all(static_cast<std::size_t>(dataset->size()));
      std::iota(all.begin(), all.end(), 0);
      const EvalResult r = evaluate(model.graph, *dataset, all, EvalOptions{128, true});
      const auto preds = read_npy(repo / "models" / (name + ".preds.npy")).to_int64_vector();
      const Tensor want = read_npy(repo / "models" / (name + ".logits.npy"));
      std::int64_t agree = 0, torch_correct = 0;
      for (std::size_t i = 0; i < preds.size(); ++i) {
        agree += preds[i] == r.predictions[i];
        torch_correct += preds[i] == dataset->label(static_cast<std::int64_t>(i));
      }
      double worst = 0;
      const std::int64_t classes = want.dim(1);
      for (std::int64_t i = 0; i < want.dim(0); ++i) {
        double err = 0, scale = 0;
        for (std::int64_t c = 0; c < classes; ++c) {
          const double w = want.data<float>()[i * classes + c];
          err = std::max(err, std::abs(r.logits[static_cast<std::size_t>(i * r.classes + c)] - w));
          scale = std::max(scale, std::abs(w));
        }
        worst = std::max(worst, err / scale);
      }
      const double n = static_cast<double>(preds.size());
      fmt::print("{:<20} {:>7} {:>13.2f}% {:>11.2f}% {:>11.2f}% {:>16.2e}\n", name, preds.size(),
                 100.0 * static_cast<double>(agree) / n, 100.0 * r.top1,
                 100.0 * static_cast<double>(torch_correct) / n, worst);
    } catch (const std::exception& e) {
      fmt::print("{:<20} error: {}\n", name, e.what());
      return 1;
    }
  }
  return 0;
}
