// Loading an ONNX model and running it in fp32 on bitplan's own executor (oneDNN + TBB).
//
//   const bitplan::Model model = bitplan::Model::load("models/fmnist_resnet.onnx");
//   bitplan::FloatTensor images{{8, 1, 28, 28}, std::vector<float>(8 * 28 * 28)};
//   const std::vector<bitplan::FloatTensor> outputs = model.run(images);  // outputs[0]: [8, 10]
//
// The model must have one float input whose first axis is the batch; every call plans the
// model for the batch it is given, so run many samples per call rather than one. Failures
// throw bitplan::Error (bitplan/error.hpp).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "bitplan/error.hpp"
#include "bitplan/visibility.hpp"

namespace bitplan {

// Dense row-major float data: `values` holds the product of `dims` elements.
struct FloatTensor {
  std::vector<std::int64_t> dims;
  std::vector<float> values;
};

class BITPLAN_API Model {
 public:
  // Imports the ONNX file, checks that bitplan can run every op (all unsupported ones named in
  // one message) and applies bitplan's import simplifications (BatchNorm folding, fusions).
  static Model load(const std::filesystem::path& onnx_file);

  ~Model();
  Model(const Model&);
  Model& operator=(const Model&);
  Model(Model&&) noexcept;
  Model& operator=(Model&&) noexcept;

  const std::filesystem::path& file() const;
  // The model file's hash as plans record it (16 hex digits); a plan made for another file is
  // refused when loaded.
  const std::string& file_hash() const;
  // The dims of the model's input; -1 marks a free (symbolic) dimension, such as the batch.
  std::vector<std::int64_t> input_dims() const;
  // The layers a plan may quantize (Conv, ConvTranspose, Gemm, MatMul with constant weights),
  // by ONNX node name, in the model's order.
  std::vector<std::string> quantizable_layers() const;

  // Runs the model in fp32 on `input` ([batch, sample dims...]); returns every model output.
  // An output that is not float fails as unsupported.
  std::vector<FloatTensor> run(const FloatTensor& input) const;

  struct Impl;  // the internal objects, defined in lib/library.cpp and opaque here

 private:
  explicit Model(std::shared_ptr<const Impl> impl);
  friend struct LibraryAccess;        // lets lib/library.cpp hand the internals between classes
  std::shared_ptr<const Impl> impl_;  // immutable, so copies share it
};

}  // namespace bitplan
