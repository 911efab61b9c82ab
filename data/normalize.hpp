// Internal to data/: turns one sample's raw values into preprocessed floats, shared by the
// array datasets (IDX/NPY) and image folders so both follow Preprocess the same way.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "core/tensor.hpp"
#include "data/dataset.hpp"

namespace bitplan {

class Normalizer {
 public:
  // Fails naming `source` (the dataset's images) when mean or std does not hold one value
  // per channel, when a std is zero or the layout is unknown. `stored` is the dtype of the
  // raw values: it picks the scale when preprocess.scale is not given (default_scale).
  Normalizer(const Preprocess& preprocess, std::int64_t channels, DType stored,
             std::string_view source);

  std::int64_t channels() const { return static_cast<std::int64_t>(mean_.size()); }
  // {C, H, W} for NCHW, {H, W, C} for NHWC.
  Dims sample_dims(std::int64_t height, std::int64_t width) const;

  // Writes one sample of `pixels` pixels to `dst` in the configured layout. `src` holds the
  // channels planar (channels-first) when `src_planar`, interleaved otherwise.
  template <typename T>
  void apply(const T* src, bool src_planar, std::int64_t pixels, float* dst) const {
    const std::int64_t c_count = channels();
    // Element strides of the channel and pixel axes, in the source and the destination.
    const std::int64_t src_c = src_planar ? pixels : 1;
    const std::int64_t src_p = src_planar ? 1 : c_count;
    const std::int64_t dst_c = nhwc_ ? 1 : pixels;
    const std::int64_t dst_p = nhwc_ ? c_count : 1;
    for (std::int64_t c = 0; c < c_count; ++c) {
      const float mean = mean_[c], std = std_[c];
      for (std::int64_t p = 0; p < pixels; ++p)
        dst[c * dst_c + p * dst_p] =
            (static_cast<float>(src[c * src_c + p * src_p]) * scale_ - mean) / std;
    }
  }

 private:
  float scale_;
  std::vector<float> mean_, std_;  // one per channel, defaults filled in
  bool nhwc_;
};

}  // namespace bitplan
