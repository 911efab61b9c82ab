#include "executor/quant/hessian.hpp"

#include <fmt/format.h>

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <set>

#include "core/error.hpp"
#include "core/files.hpp"
#include "core/parallel.hpp"
#include "executor/op_registry.hpp"
#include "executor/ops/window.hpp"
#include "executor/quant/simulate.hpp"

namespace bitplan {
namespace fs = std::filesystem;
namespace {

using RowMajorMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

const Node& node_of(const Graph& graph, const QuantizableLayer& layer) {
  const auto it = std::find_if(graph.nodes.begin(), graph.nodes.end(),
                               [&](const Node& n) { return n.name == layer.name; });
  BITPLAN_ASSERT(it != graph.nodes.end());
  return *it;
}

// How a Conv reads its input: the window per spatial dim and the channel groups.
struct ConvView {
  std::int64_t groups = 1, channels_per_group = 0;
  WindowGeometry window;
  Dims input_spatial;
  std::int64_t kernel_positions() const { return product(window.kernel); }
  std::int64_t output_positions() const { return product(window.output); }
};

ConvView conv_view(const Graph& graph, const QuantizableLayer& layer, const Dims& input_dims) {
  const Node& node = node_of(graph, layer);
  const Tensor& w = *graph.initializer(layer.weight);
  ConvView v;
  v.groups = node.attr_int("group", 1);
  v.channels_per_group = w.dim(1);
  if (input_dims.size() != w.rank() || input_dims[1] != v.groups * v.channels_per_group)
    fail_input(
        "collecting the input Hessian of layer '{}': input {} does not match weight {} with {} "
        "group(s)",
        layer.name, to_string(input_dims), to_string(w.dims()), v.groups);
  v.input_spatial.assign(input_dims.begin() + 2, input_dims.end());
  const Dims kernel(w.dims().begin() + 2, w.dims().end());
  const OpContext ctx(node, graph.opset, {});
  v.window = resolve_window(ctx, v.input_spatial, kernel, /*allow_ceil_mode=*/false);
  return v;
}

// The input vector of one Conv window: out[c·P + p] for channel c of group g and kernel
// position p (row-major over the kernel dims), zero where the window covers padding.
void conv_window_vector(const ConvView& v, const float* sample, std::int64_t g,
                        std::int64_t output_position, float* out) {
  const std::size_t dims = v.input_spatial.size();
  // The output coordinate, row-major over the output dims.
  std::int64_t origin[8] = {}, rest = output_position;
  for (std::size_t d = dims; d-- > 0;) {
    origin[d] = (rest % v.window.output[d]) * v.window.strides[d] - v.window.pads_begin[d];
    rest /= v.window.output[d];
  }
  const std::int64_t positions = v.kernel_positions();
  const std::int64_t plane = product(v.input_spatial);
  for (std::int64_t p = 0; p < positions; ++p) {
    std::int64_t offset = 0, kp = p;
    bool inside = true;
    std::int64_t coord[8] = {};
    for (std::size_t d = dims; d-- > 0;) {
      coord[d] = origin[d] + (kp % v.window.kernel[d]) * v.window.dilations[d];
      kp /= v.window.kernel[d];
      inside = inside && coord[d] >= 0 && coord[d] < v.input_spatial[d];
    }
    if (inside)
      for (std::size_t d = 0; d < dims; ++d) offset = offset * v.input_spatial[d] + coord[d];
    for (std::int64_t c = 0; c < v.channels_per_group; ++c)
      out[c * positions + p] =
          inside ? sample[(g * v.channels_per_group + c) * plane + offset] : 0.f;
  }
}

// One group's accumulators, [K x K] and [K] each.
struct GroupSums {
  float* h;
  double* sums;
  double* abs_sums;
  float* mins;
  float* maxs;
};

GroupSums group_sums(InputHessian& h, std::int64_t g) {
  const std::int64_t k = h.size;
  return {h.values.data() + g * k * k, h.sums.data() + g * k, h.abs_sums.data() + g * k,
          h.mins.data() + g * k, h.maxs.data() + g * k};
}

// H += Xᵀ X for `count` row-major rows of length K (the lower triangle by a rank update,
// then mirrored: H stays symmetric between calls), and the column sums of X and |X| and the
// column minima and maxima.
void add_rows(const float* rows, std::int64_t count, std::int64_t k, const GroupSums& to) {
  if (count == 0) return;
  const Eigen::Map<const RowMajorMatrix> x(rows, count, k);
  Eigen::Map<Eigen::MatrixXf> hm(to.h, k, k);
  hm.selfadjointView<Eigen::Lower>().rankUpdate(x.transpose());
  hm.triangularView<Eigen::StrictlyUpper>() = hm.transpose();
  Eigen::Map<Eigen::VectorXd>(to.sums, k) += x.colwise().sum().transpose().cast<double>();
  Eigen::Map<Eigen::VectorXd>(to.abs_sums, k) +=
      x.cwiseAbs().colwise().sum().transpose().cast<double>();
  Eigen::Map<Eigen::VectorXf> mins(to.mins, k), maxs(to.maxs, k);
  mins = mins.cwiseMin(x.colwise().minCoeff().transpose());
  maxs = maxs.cwiseMax(x.colwise().maxCoeff().transpose());
}

// The input as [outer, K, inner] around the axis the layer reduces over.
struct RowView {
  std::int64_t outer = 1, k = 0, inner = 1;
};

RowView row_view(const QuantizableLayer& layer, const Tensor& input) {
  const auto rank = static_cast<std::int64_t>(input.rank());
  const std::int64_t axis = layer.input_reduction_axis < 0 ? rank + layer.input_reduction_axis
                                                           : layer.input_reduction_axis;
  BITPLAN_ASSERT(axis >= 0 && axis < rank);
  RowView v;
  for (std::int64_t d = 0; d < rank; ++d) {
    if (d < axis) v.outer *= input.dim(static_cast<std::size_t>(d));
    if (d > axis) v.inner *= input.dim(static_cast<std::size_t>(d));
  }
  v.k = input.dim(static_cast<std::size_t>(axis));
  return v;
}

void size_hessian(InputHessian& h, std::int64_t groups, std::int64_t k, const std::string& layer) {
  if (h.size == 0) {
    h.groups = groups;
    h.size = k;
    h.values.assign(static_cast<std::size_t>(groups * k * k), 0.f);
    h.sums.assign(static_cast<std::size_t>(groups * k), 0.0);
    h.abs_sums.assign(static_cast<std::size_t>(groups * k), 0.0);
    h.mins.assign(static_cast<std::size_t>(groups * k), INFINITY);
    h.maxs.assign(static_cast<std::size_t>(groups * k), -INFINITY);
  } else if (h.groups != groups || h.size != k) {
    fail_input(
        "collecting the input Hessian of layer '{}': a batch gives {} group(s) of {} "
        "values, earlier batches {} of {}",
        layer, groups, k, h.groups, h.size);
  }
}

// 4: with the sums of x and |x| and the minima and maxima
constexpr char kMagic[8] = {'B', 'P', 'H', 'E', 'S', 'S', '4', '\0'};

}  // namespace

std::string input_hessian_key(const Graph& graph, const QuantizableLayer& layer) {
  if (layer.op_type != "Conv")
    return fmt::format("{}|axis{}", layer.input, layer.input_reduction_axis);
  const Node& node = node_of(graph, layer);
  const Tensor& w = *graph.initializer(layer.weight);
  return fmt::format("{}|conv k{} s{} p{} d{} g{} auto_pad={}", layer.input,
                     fmt::join(Dims(w.dims().begin() + 2, w.dims().end()), "x"),
                     fmt::join(node.attr_ints("strides", {}), ","),
                     fmt::join(node.attr_ints("pads", {}), ","),
                     fmt::join(node.attr_ints("dilations", {}), ","), node.attr_int("group", 1),
                     node.attr_string("auto_pad", "NOTSET"));
}

std::string input_hessian_refusal(const QuantizableLayer& layer) {
  if (layer.op_type == "ConvTranspose")
    return "a ConvTranspose scatters each input value over a window instead of reducing a "
           "window of the input, so its weights have no per-row input Hessian; methods that need "
           "one cover Conv, Gemm and MatMul";
  return "";
}

void accumulate_input_hessian(const Graph& graph, const QuantizableLayer& layer,
                              const Tensor& input, InputHessian& h) {
  if (auto why = input_hessian_refusal(layer); !why.empty())
    fail_unsupported("collecting the input Hessian of layer '{}': {}", layer.name, why);
  const float* x = input.data<float>();
  constexpr std::int64_t kChunkRows = 2048;  // rows gathered per rank update
  std::vector<float> rows;
  if (layer.op_type == "Conv") {
    const ConvView v = conv_view(graph, layer, input.dims());
    const std::int64_t k = v.channels_per_group * v.kernel_positions();
    size_hessian(h, v.groups, k, layer.name);
    const std::int64_t batch = input.dim(0), positions = v.output_positions();
    const std::int64_t sample_size = input.numel() / std::max<std::int64_t>(batch, 1);
    // Groups are independent: parallel over them; a depthwise conv has many small ones.
    parallel_for(v.groups, 1, [&](std::int64_t g0, std::int64_t g1) {
      std::vector<float> chunk(
          static_cast<std::size_t>(std::min(kChunkRows, batch * positions) * k));
      for (std::int64_t g = g0; g < g1; ++g) {
        const GroupSums to = group_sums(h, g);
        std::int64_t filled = 0;
        for (std::int64_t n = 0; n < batch; ++n)
          for (std::int64_t p = 0; p < positions; ++p) {
            conv_window_vector(v, x + n * sample_size, g, p, chunk.data() + filled * k);
            if (++filled == kChunkRows) {
              add_rows(chunk.data(), filled, k, to);
              filled = 0;
            }
          }
        add_rows(chunk.data(), filled, k, to);
      }
    });
    h.vectors += batch * positions;
    return;
  }
  const RowView v = row_view(layer, input);
  size_hessian(h, 1, v.k, layer.name);
  if (v.inner == 1) {
    for (std::int64_t r = 0; r < v.outer; r += kChunkRows)
      add_rows(x + r * v.k, std::min(kChunkRows, v.outer - r), v.k, group_sums(h, 0));
  } else {  // Gemm with transA: A [K, M], each column a vector
    rows.resize(static_cast<std::size_t>(v.inner * v.k));
    for (std::int64_t o = 0; o < v.outer; ++o) {
      for (std::int64_t i = 0; i < v.inner; ++i)
        for (std::int64_t d = 0; d < v.k; ++d)
          rows[static_cast<std::size_t>(i * v.k + d)] = x[(o * v.k + d) * v.inner + i];
      add_rows(rows.data(), v.inner, v.k, group_sums(h, 0));
    }
  }
  h.vectors += v.outer * v.inner;
}

InputHessian input_hessian_reference(const Graph& graph, const QuantizableLayer& layer,
                                     const Tensor& input) {
  std::vector<std::vector<float>> vectors;  // (group, vector)
  std::vector<std::int64_t> group_of;
  InputHessian h;
  const float* x = input.data<float>();
  if (layer.op_type == "Conv") {
    const ConvView v = conv_view(graph, layer, input.dims());
    h.groups = v.groups;
    h.size = v.channels_per_group * v.kernel_positions();
    const std::int64_t sample_size = input.numel() / input.dim(0);
    for (std::int64_t n = 0; n < input.dim(0); ++n)
      for (std::int64_t g = 0; g < v.groups; ++g)
        for (std::int64_t p = 0; p < v.output_positions(); ++p) {
          std::vector<float> vec(static_cast<std::size_t>(h.size));
          conv_window_vector(v, x + n * sample_size, g, p, vec.data());
          vectors.push_back(std::move(vec));
          group_of.push_back(g);
        }
    h.vectors = input.dim(0) * v.output_positions();
  } else {
    const RowView v = row_view(layer, input);
    h.size = v.k;
    for (std::int64_t o = 0; o < v.outer; ++o)
      for (std::int64_t i = 0; i < v.inner; ++i) {
        std::vector<float> vec(static_cast<std::size_t>(v.k));
        for (std::int64_t d = 0; d < v.k; ++d)
          vec[static_cast<std::size_t>(d)] = x[(o * v.k + d) * v.inner + i];
        vectors.push_back(std::move(vec));
        group_of.push_back(0);
      }
    h.vectors = v.outer * v.inner;
  }
  std::vector<double> sums(static_cast<std::size_t>(h.groups * h.size * h.size), 0.0);
  h.sums.assign(static_cast<std::size_t>(h.groups * h.size), 0.0);
  h.abs_sums.assign(static_cast<std::size_t>(h.groups * h.size), 0.0);
  h.mins.assign(static_cast<std::size_t>(h.groups * h.size), INFINITY);
  h.maxs.assign(static_cast<std::size_t>(h.groups * h.size), -INFINITY);
  for (std::size_t i = 0; i < vectors.size(); ++i)
    for (std::int64_t a = 0; a < h.size; ++a) {
      const auto at = static_cast<std::size_t>(group_of[i] * h.size + a);
      const float v = vectors[i][static_cast<std::size_t>(a)];
      h.sums[at] += v;
      h.abs_sums[at] += std::fabs(v);
      h.mins[at] = std::min(h.mins[at], v);
      h.maxs[at] = std::max(h.maxs[at], v);
    }
  for (std::size_t i = 0; i < vectors.size(); ++i)
    for (std::int64_t a = 0; a < h.size; ++a)
      for (std::int64_t b = 0; b < h.size; ++b)
        sums[static_cast<std::size_t>((group_of[i] * h.size + a) * h.size + b)] +=
            double(vectors[i][static_cast<std::size_t>(a)]) *
            vectors[i][static_cast<std::size_t>(b)];
  h.values.assign(sums.begin(), sums.end());
  return h;
}

std::map<std::string, InputHessian> collect_input_hessians(
    const Graph& graph, const Dataset& dataset, std::span<const std::int64_t> indices,
    const std::vector<QuantizableLayer>& layers, std::int64_t batch) {
  // One representative layer per key, and the tensors they read.
  std::map<std::string, const QuantizableLayer*> by_key;
  for (const auto& layer : layers)
    if (input_hessian_refusal(layer).empty())
      by_key.emplace(input_hessian_key(graph, layer), &layer);
  std::vector<std::string> tensors;
  std::set<std::string> seen;
  for (const auto& [key, layer] : by_key)
    if (seen.insert(layer->input).second) tensors.push_back(layer->input);
  std::map<std::string, InputHessian> hessians;
  std::vector<std::pair<const QuantizableLayer*, InputHessian*>> work;
  for (const auto& [key, layer] : by_key) work.emplace_back(layer, &hessians[key]);
  observe_activations(graph, dataset, indices, tensors, batch, [&](const std::vector<Tensor>& out) {
    std::map<std::string, const Tensor*> values;
    for (std::size_t i = 0; i < tensors.size(); ++i) values[tensors[i]] = &out[i];
    // Keys are independent: one task each (a Conv's groups split further inside).
    parallel_for(static_cast<std::int64_t>(work.size()), 1, [&](std::int64_t b, std::int64_t e) {
      for (std::int64_t i = b; i < e; ++i) {
        const auto& [layer, h] = work[static_cast<std::size_t>(i)];
        accumulate_input_hessian(graph, *layer, *values.at(layer->input), *h);
      }
    });
  });
  return hessians;
}

void write_input_hessian(const fs::path& path, const InputHessian& h) {
  std::string bytes(kMagic, sizeof kMagic);
  for (const std::int64_t v : {h.groups, h.size, h.vectors})
    bytes.append(reinterpret_cast<const char*>(&v), sizeof v);
  bytes.append(reinterpret_cast<const char*>(h.values.data()), h.values.size() * sizeof(float));
  bytes.append(reinterpret_cast<const char*>(h.sums.data()), h.sums.size() * sizeof(double));
  bytes.append(reinterpret_cast<const char*>(h.abs_sums.data()),
               h.abs_sums.size() * sizeof(double));
  bytes.append(reinterpret_cast<const char*>(h.mins.data()), h.mins.size() * sizeof(float));
  bytes.append(reinterpret_cast<const char*>(h.maxs.data()), h.maxs.size() * sizeof(float));
  write_file_atomic(path, bytes);
}

InputHessian read_input_hessian(const fs::path& path) {
  const std::string bytes = read_file(path, std::uint64_t{1} << 32, "input Hessian cache");
  InputHessian h;
  constexpr std::size_t header = sizeof kMagic + 3 * sizeof(std::int64_t);
  const auto damaged = [&](std::string_view why) {
    fail_input("reading input Hessian cache '{}': {}; delete the file to recompute it",
               path.string(), why);
  };
  if (bytes.size() < header || std::memcmp(bytes.data(), kMagic, sizeof kMagic) != 0)
    damaged("not a bitplan Hessian file (bad header)");
  std::memcpy(&h.groups, bytes.data() + sizeof kMagic, sizeof(std::int64_t));
  std::memcpy(&h.size, bytes.data() + sizeof kMagic + 8, sizeof(std::int64_t));
  std::memcpy(&h.vectors, bytes.data() + sizeof kMagic + 16, sizeof(std::int64_t));
  const auto values = static_cast<std::size_t>(h.groups * h.size * h.size);
  const auto sums = static_cast<std::size_t>(h.groups * h.size);
  if (h.groups < 1 || h.groups > (1 << 20) || h.size < 1 || h.size > (1 << 20) || h.vectors < 0 ||
      bytes.size() != header + (values + 2 * sums) * sizeof(float) + 2 * sums * sizeof(double))
    damaged(fmt::format("{} group(s) of size {} do not match the file's {} bytes", h.groups, h.size,
                        bytes.size()));
  h.values.resize(values);
  h.sums.resize(sums);
  h.abs_sums.resize(sums);
  h.mins.resize(sums);
  h.maxs.resize(sums);
  const char* at = bytes.data() + header;
  for (const auto& [to, size] :
       {std::pair<void*, std::size_t>{h.values.data(), values * sizeof(float)},
        {h.sums.data(), sums * sizeof(double)},
        {h.abs_sums.data(), sums * sizeof(double)},
        {h.mins.data(), sums * sizeof(float)},
        {h.maxs.data(), sums * sizeof(float)}}) {
    std::memcpy(to, at, size);
    at += size;
  }
  return h;
}

WeightRows weight_rows(const Tensor& weights, const QuantizableLayer& layer, std::int64_t groups,
                       std::int64_t size, const std::string& action) {
  WeightRows v;
  if (layer.reduction_axis == 1 && layer.channel_axis == 0) {
    v.rows = weights.dim(0);
    v.k = weights.numel() / std::max<std::int64_t>(v.rows, 1);
  } else if (layer.reduction_axis == 0 && layer.channel_axis == 1 && weights.rank() == 2) {
    v.rows = weights.dim(1);
    v.k = weights.dim(0);
    v.rows_contiguous = false;
  } else {
    fail_unsupported(
        "{}: weights {} of a {} with channel axis {} and reduction axis {} are not "
        "rows of output channels",
        action, to_string(weights.dims()), layer.op_type, layer.channel_axis, layer.reduction_axis);
  }
  v.groups = groups;
  if (size != v.k || v.groups < 1 || v.rows % v.groups != 0)
    fail_input(
        "{}: the input Hessian ({} group(s) of {} values) does not fit weights {} ({} "
        "rows of {} values)",
        action, groups, size, to_string(weights.dims()), v.rows, v.k);
  return v;
}

}  // namespace bitplan
