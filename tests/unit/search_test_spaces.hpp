// Synthetic search spaces the search unit tests share.
#pragma once

#include <string>

#include "search/space.hpp"

namespace bitplan::search::test {

// `layers` layers named layer0, layer1, ... each with options opt0, opt1, ...
inline SearchSpace make_space(std::size_t layers, std::size_t options) {
  SearchSpace space;
  for (std::size_t l = 0; l < layers; ++l) {
    LayerOptions layer{"layer" + std::to_string(l), {}};
    for (std::size_t o = 0; o < options; ++o) layer.options.push_back("opt" + std::to_string(o));
    space.layers.push_back(layer);
  }
  return space;
}

}  // namespace bitplan::search::test
