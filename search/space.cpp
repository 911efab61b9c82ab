#include "search/space.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>

#include "core/error.hpp"

namespace bitplan::search {

double SearchSpace::size() const {
  double log10_plans = 0;
  for (const LayerOptions& layer : layers) log10_plans += std::log10(double(layer.options.size()));
  return log10_plans;
}

void SearchSpace::validate() const {
  if (layers.empty()) fail_input("build search space: no layers: a search needs at least one");
  std::set<std::string_view> layer_names;
  for (std::size_t i = 0; i < layers.size(); ++i) {
    const LayerOptions& layer = layers[i];
    if (layer.layer.empty())
      fail_input("build search space: layer {} has no name: every layer needs its ONNX name", i);
    if (!layer_names.insert(layer.layer).second)
      fail_input("build search space: layer '{}' appears twice: each layer is listed once",
                 layer.layer);
    if (layer.options.empty())
      fail_input("build search space: layer '{}' has no options: each layer needs at least one",
                 layer.layer);
    std::set<std::string_view> labels;
    for (const std::string& option : layer.options) {
      if (option.empty())
        fail_input("build search space: layer '{}' has an empty option label", layer.layer);
      if (!labels.insert(option).second)
        fail_input("build search space: layer '{}' lists option '{}' twice: labels are unique",
                   layer.layer, option);
    }
  }
}

void SearchSpace::check(const Genome& genome) const {
  if (genome.size() != layers.size())
    fail_input("check plan: {} option indices for {} layers: one index per layer", genome.size(),
               layers.size());
  for (std::size_t i = 0; i < genome.size(); ++i)
    if (genome[i] < 0 || std::size_t(genome[i]) >= layers[i].options.size())
      fail_input("check plan: option index {} for layer '{}': it has options 0..{}", genome[i],
                 layers[i].layer, layers[i].options.size() - 1);
}

std::optional<std::size_t> SearchSpace::plan_count() const {
  std::size_t count = 1;
  for (const LayerOptions& layer : layers) {
    if (count > std::numeric_limits<std::size_t>::max() / layer.options.size()) return std::nullopt;
    count *= layer.options.size();
  }
  return count;
}

namespace {

void append_escaped(std::string& out, std::string_view text) {
  for (char c : text) {
    if (c == '\\' || c == '=' || c == ';') out += '\\';
    out += c;
  }
}

// Splits a key into (layer, option) pairs, undoing the escapes; nullopt on malformed text.
std::optional<std::vector<std::pair<std::string, std::string>>> split_key(std::string_view key) {
  std::vector<std::pair<std::string, std::string>> pairs;
  std::string layer, option;
  bool in_option = false;
  for (std::size_t i = 0; i < key.size(); ++i) {
    char c = key[i];
    if (c == '\\') {
      if (++i == key.size()) return std::nullopt;
      (in_option ? option : layer) += key[i];
    } else if (c == '=') {
      if (in_option) return std::nullopt;
      in_option = true;
    } else if (c == ';') {
      if (!in_option) return std::nullopt;
      pairs.emplace_back(std::move(layer), std::move(option));
      layer.clear();
      option.clear();
      in_option = false;
    } else {
      (in_option ? option : layer) += c;
    }
  }
  if (!in_option) return std::nullopt;
  pairs.emplace_back(std::move(layer), std::move(option));
  return pairs;
}

}  // namespace

std::string genome_key(const SearchSpace& space, const Genome& genome) {
  space.check(genome);
  std::string key;
  for (std::size_t i = 0; i < genome.size(); ++i) {
    if (i > 0) key += ';';
    append_escaped(key, space.layers[i].layer);
    key += '=';
    append_escaped(key, space.layers[i].options[std::size_t(genome[i])]);
  }
  return key;
}

std::optional<Genome> parse_genome_key(const SearchSpace& space, std::string_view key) {
  const auto pairs = split_key(key);
  if (!pairs || pairs->size() != space.layers.size()) return std::nullopt;
  Genome genome(space.layers.size());
  for (std::size_t i = 0; i < genome.size(); ++i) {
    const LayerOptions& layer = space.layers[i];
    if ((*pairs)[i].first != layer.layer) return std::nullopt;
    auto found = std::find(layer.options.begin(), layer.options.end(), (*pairs)[i].second);
    if (found == layer.options.end()) return std::nullopt;
    genome[i] = int(found - layer.options.begin());
  }
  return genome;
}

namespace {

void check_table_shape(const SearchSpace& space, const std::vector<std::vector<double>>& table,
                       std::string_view name, bool required) {
  if (table.empty() && !required) return;
  if (table.size() != space.layers.size())
    fail_input("check cost table: '{}' has {} layers, the search space {}: one row per layer", name,
               table.size(), space.layers.size());
  for (std::size_t i = 0; i < table.size(); ++i) {
    const LayerOptions& layer = space.layers[i];
    if (table[i].size() != layer.options.size())
      fail_input("check cost table: '{}' has {} values for layer '{}', which has {} options", name,
                 table[i].size(), layer.layer, layer.options.size());
    for (std::size_t j = 0; j < table[i].size(); ++j)
      if (!std::isfinite(table[i][j]))
        fail_input("check cost table: '{}' of layer '{}' option '{}' is {}: values must be finite",
                   name, layer.layer, layer.options[j], table[i][j]);
  }
}

}  // namespace

void LayerCostTable::validate(const SearchSpace& space) const {
  check_table_shape(space, sensitivity, "sensitivity", true);
  check_table_shape(space, latency, "latency", false);
  check_table_shape(space, size, "size", false);
  if (!latency_edge.empty()) {
    if (latency_edge.size() != space.layers.size())
      fail_input("check cost table: 'latency_edge' has {} layers, the search space {}",
                 latency_edge.size(), space.layers.size());
    for (std::size_t l = 1; l < space.layers.size(); ++l) {
      const auto& edge = latency_edge[l];
      bool shaped = edge.size() == space.layers[l - 1].options.size();
      for (const auto& row : edge) {
        shaped = shaped && row.size() == space.layers[l].options.size();
        for (double v : row)
          if (!std::isfinite(v))
            fail_input("check cost table: 'latency_edge' into layer '{}' has a non-finite value",
                       space.layers[l].layer);
      }
      if (!shaped)
        fail_input(
            "check cost table: 'latency_edge' into layer '{}' must be {} x {} (options of the "
            "previous layer x options of this one)",
            space.layers[l].layer, space.layers[l - 1].options.size(),
            space.layers[l].options.size());
    }
  }
  if (unsupported_reason.empty()) return;
  if (unsupported_reason.size() != space.layers.size())
    fail_input("check cost table: 'unsupported_reason' has {} layers, the search space {}",
               unsupported_reason.size(), space.layers.size());
  for (std::size_t i = 0; i < space.layers.size(); ++i) {
    const LayerOptions& layer = space.layers[i];
    if (unsupported_reason[i].size() != layer.options.size())
      fail_input(
          "check cost table: 'unsupported_reason' has {} entries for layer '{}', which has {}"
          " options",
          unsupported_reason[i].size(), layer.layer, layer.options.size());
    bool any_supported = false;
    std::string reasons;
    for (std::size_t j = 0; j < layer.options.size(); ++j) {
      if (unsupported_reason[i][j].empty()) {
        any_supported = true;
        break;
      }
      reasons += fmt::format("{}{}: {}", reasons.empty() ? "" : "; ", layer.options[j],
                             unsupported_reason[i][j]);
    }
    if (!any_supported)
      fail_unsupported("build search space: layer '{}' has no option the target supports ({})",
                       layer.layer, reasons);
  }
}

bool LayerCostTable::supported(std::size_t layer, std::size_t option) const {
  return unsupported_reason.empty() || unsupported_reason[layer][option].empty();
}

std::vector<std::vector<int>> allowed_options(const SearchSpace& space,
                                              const LayerCostTable* costs) {
  std::vector<std::vector<int>> allowed(space.layers.size());
  for (std::size_t i = 0; i < space.layers.size(); ++i)
    for (std::size_t j = 0; j < space.layers[i].options.size(); ++j)
      if (!costs || costs->supported(i, j)) allowed[i].push_back(int(j));
  return allowed;
}

}  // namespace bitplan::search
