#include "executor/ops/broadcast.hpp"

namespace bitplan {

std::optional<Dims> broadcast_dims(const std::vector<Dims>& inputs) {
  std::size_t rank = 0;
  for (const auto& d : inputs) rank = std::max(rank, d.size());
  Dims out(rank, 1);
  for (const auto& d : inputs) {
    for (std::size_t j = 0; j < d.size(); ++j) {
      std::int64_t& o = out[rank - 1 - j];
      const std::int64_t v = d[d.size() - 1 - j];
      if (v == o || v == 1) continue;
      if (o != 1) return std::nullopt;
      o = v;
    }
  }
  return out;
}

}  // namespace bitplan
