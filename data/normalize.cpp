#include "data/normalize.hpp"

#include <algorithm>

#include "core/error.hpp"

namespace bitplan {

Normalizer::Normalizer(const Preprocess& preprocess, std::int64_t channels, DType stored,
                       std::string_view source)
    : scale_(preprocess.scale.value_or(default_scale(stored))),
      mean_(static_cast<std::size_t>(channels), 0.0f),
      std_(static_cast<std::size_t>(channels), 1.0f),
      nhwc_(preprocess.layout == "NHWC") {
  if (preprocess.layout != "NCHW" && preprocess.layout != "NHWC")
    fail_input("open dataset '{}': preprocess.layout '{}': must be NCHW or NHWC", source,
               preprocess.layout);
  for (auto [values, name, target] :
       {std::tuple{&preprocess.mean, "mean", &mean_}, std::tuple{&preprocess.std, "std", &std_}}) {
    if (values->empty()) continue;
    if (static_cast<std::int64_t>(values->size()) != channels)
      fail_input("open dataset '{}': preprocess.{} has {} values: needs one per channel ({})",
                 source, name, values->size(), channels);
    *target = *values;
  }
  if (std::find(std_.begin(), std_.end(), 0.0f) != std_.end())
    fail_input("open dataset '{}': preprocess.std has a 0: every std must be non-zero", source);
}

Dims Normalizer::sample_dims(std::int64_t height, std::int64_t width) const {
  return nhwc_ ? Dims{height, width, channels()} : Dims{channels(), height, width};
}

}  // namespace bitplan
