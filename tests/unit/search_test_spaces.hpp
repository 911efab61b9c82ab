// Synthetic search spaces the search unit tests share.
#pragma once

#include <cmath>
#include <random>
#include <string>

#include "search/space.hpp"

namespace bitplan::search::test_spaces {

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

// Costs for make_space(22, 2) past the exact solver's state limit: latency and size trade
// exactly (option 1 of layer l costs 2^l latency, option 0 as much size), so every one of
// the 2^22 plans is non-dominated and the programme would hold 2^21 > kMaxStates candidate
// partial plans at layer20, the 21st.
inline LayerCostTable past_the_state_limit(const SearchSpace& space) {
  LayerCostTable costs;
  std::mt19937_64 rng(5);
  std::uniform_real_distribution<double> sensitivity(0, 1);
  for (std::size_t l = 0; l < space.layers.size(); ++l) {
    const double weight = std::ldexp(1.0, int(l));
    costs.latency.push_back({0, weight});
    costs.size.push_back({weight, 0});
    costs.sensitivity.push_back({sensitivity(rng), sensitivity(rng)});
  }
  return costs;
}

}  // namespace bitplan::search::test_spaces
