// cudnn_conv.hpp for builds without cuDNN (BITPLAN_CUDNN=OFF, or AUTO and not found): every
// shape is declined with the way to build with cuDNN, so the profile says why its convs
// run on bitplan's own kernels.
#include "backends/cuda/cudnn_conv.hpp"

#include "backends/cuda/errors.hpp"

namespace bitplan::cuda {

std::optional<std::string> cudnn_conv_declines(const LayerShape&, Precision) {
  return std::string(
      "cuDNN conv: this build has no cuDNN: configure with -DBITPLAN_CUDNN=ON "
      "-DCUDNN_ROOT=DIR (a folder with include/cudnn.h and lib/libcudnn.so*)");
}

std::string cudnn_runtime_version() {
  return {};
}

struct CudnnConv::Plan {};

CudnnConv::CudnnConv(const GpuContext&, const LayerShape& shape, Precision precision) {
  throw Unsupported(*cudnn_conv_declines(shape, precision));
}

CudnnConv::~CudnnConv() = default;

void CudnnConv::run(const void*, const void*, void*) const {}

const std::string& CudnnConv::description() const {
  static const std::string none;
  return none;
}

std::size_t CudnnConv::output_element_bytes() const {
  return 0;
}

}  // namespace bitplan::cuda
