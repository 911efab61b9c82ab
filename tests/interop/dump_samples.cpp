// Writes the preprocessed validation samples of a run config and their labels as .npy, so
// the interop test feeds ONNX Runtime exactly the floats bitplan evaluates (JPEG decoding
// and normalisation happen once, in bitplan's readers).
//
//   bitplan_interop_dump_samples RUN.yaml COUNT INPUTS.npy LABELS.npy
#include <fmt/format.h>

#include <iostream>
#include <string>

#include "cli/run_config.hpp"
#include "data/npy.hpp"

int main(int argc, char** argv) {
  using namespace bitplan;
  if (argc != 5) {
    std::cerr << "usage: bitplan_interop_dump_samples RUN.yaml COUNT INPUTS.npy LABELS.npy\n";
    return 2;
  }
  try {
    const RunConfig config = load_run_config(argv[1]);
    const auto dataset = open_dataset(config.dataset);
    Selection selection = config.dataset.validation;
    selection.count = std::stoll(argv[2]);
    const auto indices = select_indices(selection, dataset->size(), "validation");
    Dims dims = dataset->sample_dims();
    dims.insert(dims.begin(), static_cast<std::int64_t>(indices.size()));
    Tensor inputs(DType::f32, dims);
    dataset->load(indices, inputs.data<float>());
    Tensor labels(DType::i64, {static_cast<std::int64_t>(indices.size())});
    for (std::size_t i = 0; i < indices.size(); ++i)
      labels.data<std::int64_t>()[i] = dataset->label(indices[i]);
    write_npy(argv[3], inputs);
    write_npy(argv[4], labels);
  } catch (const std::exception& e) {
    std::cerr << "bitplan_interop_dump_samples: " << e.what() << "\n";
    return 3;
  }
  return 0;
}
