// The search space and what a search is told about one plan.
//
// A plan picks one option (a spec label such as "W8A8", which the driver maps to a real
// quantization spec) for every layer; the search sees a plan as a Genome, the option index
// per layer. Every objective is minimised. LayerCostTable carries the additive per-layer
// estimates (sensitivity from single-layer analysis, latency and size from cost models)
// that the exact solver and the RL agent use; the driver fills it.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "core/hash.hpp"

namespace bitplan::search {

struct LayerOptions {
  std::string layer;                 // ONNX layer name
  std::vector<std::string> options;  // spec labels, unique within the layer
};

// Option index per layer, in SearchSpace::layers order.
using Genome = std::vector<int>;

struct GenomeHash {
  std::size_t operator()(const Genome& genome) const noexcept {
    Fnv1a64 hash;
    for (const int option : genome) hash.add(static_cast<std::uint64_t>(option));
    return static_cast<std::size_t>(hash.value());
  }
};
using GenomeSet = std::unordered_set<Genome, GenomeHash>;

struct SearchSpace {
  std::vector<LayerOptions> layers;

  // log10 of the number of plans (the product of the option counts).
  double size() const;
  // Fails (invalid_input) on an empty space, an unnamed or repeated layer, a layer without
  // options, or a repeated or empty option label.
  void validate() const;
  // Fails unless `genome` has one in-range option index per layer.
  void check(const Genome& genome) const;
  // The number of plans when it fits in 64 bits; nullopt for larger spaces.
  std::optional<std::size_t> plan_count() const;
};

// Readable, unambiguous text for a plan, "layer=option;layer=option;..." (with '\', '='
// and ';' inside names escaped by '\'). It names labels rather than indices, so it stays
// valid as a results-database key when options are reordered or added.
std::string genome_key(const SearchSpace& space, const Genome& genome);
// The inverse of genome_key; nullopt when the key names a layer or option this space does
// not have (e.g. a stored result from a different space), or is not a key at all.
std::optional<Genome> parse_genome_key(const SearchSpace& space, std::string_view key);

// One evaluated plan. Objectives are all minimised; the driver decides their order
// (typically metric loss, latency, size).
struct Evaluation {
  Genome genome;
  std::vector<double> objectives;
  double constraint_violation = 0;  // 0 = feasible, > 0 = how far outside the constraints
};

// Additive per-layer estimates, indexed [layer][option] like the space. A plan's estimate
// is the sum over layers. `latency` or `size` may be empty when that cost is not modelled;
// `unsupported_reason` may be empty (everything supported) or give, per option, why the
// target cannot run it ("" = supported). Policies never propose unsupported options.
struct LayerCostTable {
  std::vector<std::vector<double>> sensitivity;  // metric loss when only that layer changes
  std::vector<std::vector<double>> latency;
  std::vector<std::vector<double>> size;
  std::vector<std::vector<std::string>> unsupported_reason;
  // Latency between consecutive layers: latency_edge[l][a][b] is added when layer l-1 takes
  // option a and layer l option b (precision conversions, or a negative saving where two
  // layers pass data on directly). Empty: no edge costs; else one (empty) entry for layer 0.
  std::vector<std::vector<std::vector<double>>> latency_edge;

  // Fails unless every non-empty table matches the space's shape, every value is finite,
  // and each layer keeps at least one supported option (the message gives the reasons).
  void validate(const SearchSpace& space) const;
  bool supported(std::size_t layer, std::size_t option) const;
};

// Upper bounds on a plan's summed latency and size (in the cost table's units); an absent
// bound is no constraint.
struct CostBudgets {
  std::optional<double> latency;
  std::optional<double> size;
};

// The option indices each layer may take: all of them, or the supported ones when a cost
// table is given.
std::vector<std::vector<int>> allowed_options(const SearchSpace& space,
                                              const LayerCostTable* costs);

}  // namespace bitplan::search
