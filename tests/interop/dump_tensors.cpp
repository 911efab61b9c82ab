// Writes every intermediate tensor of bitplan's simulation of a uniform plan as .npy, for a
// layer-by-layer comparison with ONNX Runtime on the exported QDQ model (compare_layers.py).
// The graph is the unfused simulation (QuantSimulator::build(plan, false)): the float
// convolutions keep their original output names, and each layer's input quantization is a
// FakeQuant whose output is named "<input>@q@<layer>" (the export's
// "<layer>/input_quant_dequantized"). `--fused` dumps the graph `bitplan evaluate` runs
// (the FakeQuant fused into the producing layer's oneDNN epilogue) instead.
//
//   bitplan_interop_dump_tensors RUN.yaml PLAN FIRST COUNT CACHE_DIR OUT_DIR [--fused]
//
// OUT_DIR gets input.npy (the preprocessed samples FIRST .. FIRST+COUNT-1 of the dataset),
// tensors.txt (one "file<TAB>tensor name" a line, in execution order) and t<N>.npy per
// tensor, [COUNT, ...].
#include <fmt/format.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <string>

#include "cli/run_config.hpp"
#include "data/npy.hpp"
#include "executor/model.hpp"
#include "executor/plan.hpp"
#include "executor/quant/plan.hpp"
#include "executor/quant/simulate.hpp"

int main(int argc, char** argv) {
  using namespace bitplan;
  namespace fs = std::filesystem;
  if (argc != 7 && !(argc == 8 && std::string(argv[7]) == "--fused")) {
    std::cerr << "usage: bitplan_interop_dump_tensors RUN.yaml PLAN FIRST COUNT CACHE_DIR OUT_DIR "
                 "[--fused]\n";
    return 2;
  }
  try {
    const RunConfig config = load_run_config(argv[1]);
    const LoadedModel loaded = load_model(config.model);
    const auto dataset = open_dataset(config.dataset);
    const std::int64_t first = std::stoll(argv[3]), count = std::stoll(argv[4]);
    const fs::path out_dir = argv[6];
    const bool fused = argc == 8;
    const std::string hash = model_file_hash(config.model);
    QuantPlan plan = uniform_plan(argv[2], loaded.graph);
    plan.model_hash = hash;
    QuantSimulator simulator(
        loaded.graph, hash,
        calibration_data(config.dataset, *dataset, argv[5], config.evaluate.batch));
    Graph g = simulator.build(plan, fused);
    // Every float tensor a node writes becomes a graph output, in execution order.
    std::vector<std::string> names;
    std::set<std::string> seen;
    for (const auto& n : g.nodes)
      for (const auto& o : n.outputs)
        if (seen.insert(o).second) names.push_back(o);
    g.outputs.clear();
    for (const auto& name : names) g.outputs.push_back({name, DType::f32, {}, {}});

    std::vector<std::int64_t> indices;
    for (std::int64_t i = first; i < first + count; ++i) indices.push_back(i);
    ExecutionPlan run(g, PlanOptions{count});
    Tensor input(DType::f32, run.input_meta()[0].dims);
    dataset->load(indices, input.data<float>());
    const auto outputs = run.run(std::span<const Tensor>(&input, 1));
    fs::create_directories(out_dir);
    write_npy(out_dir / "input.npy", input);
    std::ofstream list(out_dir / "tensors.txt");
    for (std::size_t i = 0; i < names.size(); ++i) {
      if (outputs[i].dtype() != DType::f32) continue;
      const std::string file = fmt::format("t{}.npy", i);
      write_npy(out_dir / file, outputs[i]);
      list << file << '\t' << names[i] << '\n';
    }
  } catch (const std::exception& e) {
    std::cerr << "bitplan_interop_dump_tensors: " << e.what() << "\n";
    return 3;
  }
  return 0;
}
