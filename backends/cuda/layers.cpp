#include "backends/cuda/layers.hpp"

#include <algorithm>
#include <cstring>

#include "backends/cuda/check.hpp"
#include "backends/cuda/cudnn_conv.hpp"
#include "backends/cuda/gemm.hpp"
#include "backends/cuda/kernels.hpp"

namespace bitplan::cuda {
namespace {

std::int64_t round_up(std::int64_t v, std::int64_t to) {
  return (v + to - 1) / to * to;
}

int sets_for(std::int64_t bytes_per_set, std::int64_t rotate_bytes, int max_sets) {
  if (rotate_bytes <= 0 || bytes_per_set <= 0) return 1;
  // At least two sets whenever rotation is asked for: the same buffers twice in a row would
  // leave part of a large layer in L2.
  return static_cast<int>(
      std::clamp<std::int64_t>((rotate_bytes + bytes_per_set - 1) / bytes_per_set, 2, max_sets));
}

// Seeds differ per buffer so no two buffers hold the same data.
std::uint32_t next_seed() {
  static std::uint32_t seed = 12345;
  return seed += 7919;
}

DeviceBuffer random_buffer(const GpuContext& gpu, ElementType type, std::int64_t count,
                           float amplitude) {
  DeviceBuffer b(static_cast<std::size_t>(count) * element_bytes(type));
  fill_random(b.get(), type, count, next_seed(), amplitude, gpu.stream());
  return b;
}

// The activation scale of quantised inputs; any positive value times the same work.
constexpr float kActivationScale = 0.05f;

// Layers whose arithmetic is a GEMM: gemm workloads and convolutions with groups == 1
// (im2col into [n*oh*ow][padded c*r*s] unless the conv is 1x1, stride 1, unpadded and the
// channel count is already aligned, when the NHWC input is the GEMM operand as it is).
class GemmLayerRun final : public LayerRun {
 public:
  GemmLayerRun(const GpuContext& gpu, const LayerShape& shape, Precision precision,
               const LayerRunOptions& options)
      : gpu_(gpu), precision_(precision), weight_only_path_(options.weight_only_path) {
    const std::int64_t align = reads_codes(precision) ? 16 : 8;
    if (shape.op == LayerOp::gemm) {
      m_ = shape.m, n_ = shape.n, k_ = shape.k, ldx_ = shape.k;
      input_elements_ = shape.m * shape.k;
    } else {
      conv_ = shape;
      m_ = shape.batch * shape.out_h() * shape.out_w();
      n_ = shape.k;
      k_ = shape.c * shape.r * shape.s;
      input_elements_ = shape.input_elements();
      const bool pointwise = shape.r == 1 && shape.s == 1 && shape.stride_h == 1 &&
                             shape.stride_w == 1 && shape.pad_top == 0 && shape.pad_left == 0 &&
                             shape.pad_bottom == 0 && shape.pad_right == 0;
      im2col_ = !(pointwise && shape.c % align == 0);
      // Padding K with zero columns keeps every precision's alignment rule satisfied.
      if (im2col_) k_ = round_up(k_, align);
      ldx_ = k_;
    }
    const ElementType in_type = input_type(precision);
    const ElementType out_type = output_type(precision);
    std::int64_t weight_bytes = 0;
    if (precision == Precision::w4a16) {
      w4_ = w4_layout(n_, k_);
      weight_bytes = w4_.packed_bytes() + 2 * w4_.scale_count();
    } else if (precision == Precision::w8a16) {
      w8_ = w8_layout(n_, k_);
      weight_bytes = w8_.packed_bytes() + 2 * w8_.scale_count();
    } else {
      weight_bytes = n_ * k_ * static_cast<std::int64_t>(element_bytes(in_type));
    }
    bytes_per_set_ = input_elements_ * std::int64_t(element_bytes(in_type)) + weight_bytes +
                     m_ * n_ * std::int64_t(element_bytes(out_type));

    // GEMM plan first: an unsupported shape fails before any allocation.
    std::string gemm_text;
    if (precision == Precision::w4a16) {
      if (weight_only_path_ == WeightOnlyPath::dequantize_then_cublaslt) {
        gemm_ = std::make_unique<LtGemm>(gpu.lt(), Precision::fp16, m_, n_, k_, w4_.padded_k, ldx_);
        gemm_text = "int4->fp16 weight dequant kernel + cublasLt fp16 " + gemm_->description();
      } else {
        gemm_text = "bitplan w4a16 kernel (" + w4a16_kernel_name(m_, n_) +
                    ", int4 dequantised in registers, group " + std::to_string(w4_.group) + ")";
      }
    } else if (precision == Precision::w8a16) {
      if (weight_only_path_ == WeightOnlyPath::dequantize_then_cublaslt) {
        gemm_ = std::make_unique<LtGemm>(gpu.lt(), Precision::fp16, m_, n_, k_, w8_.padded_k, ldx_);
        gemm_text = "int8->fp16 weight dequant kernel + cublasLt fp16 " + gemm_->description();
      } else {
        gemm_text = "bitplan w8a16 kernel (" + w8a16_kernel_name(n_) +
                    ", int8 dequantised in registers, group " + std::to_string(w8_.group) + ")";
      }
    } else {
      if (precision == Precision::fp8_e4m3 || precision == Precision::fp8_e4m3_chained) {
        // Weight scale at float 0, activation scale at float 4, output scale (1 / s_y, for
        // fp8_e4m3_chained) at float 8: each scalar 16-byte aligned.
        fp8_scales_ = DeviceBuffer(12 * sizeof(float));
        const float scales[12] = {0.02f, 0, 0, 0, kActivationScale, 0, 0, 0, 1 / kActivationScale};
        check_cuda(cudaMemcpy(fp8_scales_.get(), scales, sizeof(scales), cudaMemcpyHostToDevice),
                   "uploading fp8 scales");
      }
      // int8_chained: s_x s_w[c] / s_y per channel, read by the GEMM's epilogue.
      if (precision == Precision::int8_chained)
        channel_scales_ = random_buffer(gpu, ElementType::f32, n_, 0.01f);
      const float* output_scale = precision == Precision::fp8_e4m3_chained
                                      ? fp8_scales_.as<float>() + 8
                                      : channel_scales_.as<float>();
      gemm_ = std::make_unique<LtGemm>(gpu.lt(), precision, m_, n_, k_, k_, ldx_,
                                       fp8_scales_.as<float>(), fp8_scales_.as<float>() + 4,
                                       output_scale, 1, options.gemm_algorithm);
      // cuBLASLt's C beside an fp8 D: 16-bit, never read (beta = 0).
      if (precision == Precision::fp8_e4m3_chained)
        unread_c_ = DeviceBuffer(static_cast<std::size_t>(m_ * n_) * 2);
      gemm_text = gemm_->description();
    }
    implementation_ = (im2col_ ? "im2col kernel + " : "") + gemm_text;
    if (precision == Precision::int8)
      implementation_ += " + int32->fp16 per-channel dequant kernel";
    if (precision == Precision::int8_chained)
      implementation_ += ", int8 out (per-channel requantization as the alpha vector)";
    if (precision == Precision::fp8_e4m3_chained)
      implementation_ += ", e4m3 out (D scale)";

    sets_ = sets_for(bytes_per_set_, options.rotate_bytes, options.max_sets);
    for (int s = 0; s < sets_; ++s) {
      inputs_.push_back(random_buffer(gpu, in_type, input_elements_, 1.0f));
      if (precision == Precision::w4a16) {
        DeviceBuffer packed(static_cast<std::size_t>(w4_.packed_bytes()));
        fill_random_bytes(packed.get(), w4_.packed_bytes(), next_seed(), gpu.stream());
        weights_.push_back(std::move(packed));
        weight_scales_.push_back(random_buffer(gpu, ElementType::f16, w4_.scale_count(), 0.01f));
      } else if (precision == Precision::w8a16) {
        DeviceBuffer packed(static_cast<std::size_t>(w8_.packed_bytes()));
        fill_random_bytes(packed.get(), w8_.packed_bytes(), next_seed(), gpu.stream());
        weights_.push_back(std::move(packed));
        weight_scales_.push_back(random_buffer(gpu, ElementType::f16, w8_.scale_count(), 0.01f));
      } else {
        weights_.push_back(random_buffer(gpu, in_type, n_ * k_, 0.05f));
      }
      outputs_.push_back(DeviceBuffer(static_cast<std::size_t>(m_ * n_) * element_bytes(out_type)));
    }
    if (im2col_)
      columns_ = DeviceBuffer(static_cast<std::size_t>(m_ * k_) * element_bytes(in_type));
    if (precision == Precision::int8) {
      accumulators_ = DeviceBuffer(static_cast<std::size_t>(m_ * n_) * sizeof(std::int32_t));
      channel_scales_ = random_buffer(gpu, ElementType::f32, n_, 0.01f);
    }
    if (precision == Precision::w4a16 &&
        weight_only_path_ == WeightOnlyPath::dequantize_then_cublaslt)
      dequantized_ = DeviceBuffer(static_cast<std::size_t>(w4_.padded_n * w4_.padded_k) * 2);
    if (precision == Precision::w8a16 &&
        weight_only_path_ == WeightOnlyPath::dequantize_then_cublaslt)
      dequantized_ = DeviceBuffer(static_cast<std::size_t>(w8_.padded_n * w8_.padded_k) * 2);
    gpu.synchronize();
  }

  void run(int set) override {
    const int s = set % sets_;
    const cudaStream_t stream = gpu_.stream();
    const void* x = inputs_[s].get();
    if (im2col_) {
      im2col_nhwc(x, element_bytes(input_type(precision_)), conv_, columns_.get(), k_, stream);
      x = columns_.get();
    }
    switch (precision_) {
      case Precision::int8:
        gemm_->run(weights_[s].get(), x, accumulators_.get(), gpu_.workspace(),
                   gpu_.workspace_bytes(), stream);
        dequantize_s32(accumulators_.as<std::int32_t>(), kActivationScale,
                       channel_scales_.as<float>(), m_, n_, outputs_[s].get(), stream);
        break;
      case Precision::w4a16:
        if (weight_only_path_ == WeightOnlyPath::own_kernel) {
          w4a16_gemm(x, ldx_, weights_[s].as<std::uint8_t>(), weight_scales_[s].get(), w4_, m_,
                     outputs_[s].get(), stream);
        } else {
          w4_dequantize(weights_[s].as<std::uint8_t>(), weight_scales_[s].get(), w4_,
                        dequantized_.get(), stream);
          gemm_->run(dequantized_.get(), x, outputs_[s].get(), gpu_.workspace(),
                     gpu_.workspace_bytes(), stream);
        }
        break;
      case Precision::w8a16:
        if (weight_only_path_ == WeightOnlyPath::own_kernel) {
          w8a16_gemm(x, ldx_, weights_[s].as<std::uint8_t>(), weight_scales_[s].get(), w8_, m_,
                     outputs_[s].get(), stream);
        } else {
          w8_dequantize(weights_[s].as<std::uint8_t>(), weight_scales_[s].get(), w8_,
                        dequantized_.get(), stream);
          gemm_->run(dequantized_.get(), x, outputs_[s].get(), gpu_.workspace(),
                     gpu_.workspace_bytes(), stream);
        }
        break;
      default:
        gemm_->run(weights_[s].get(), x, outputs_[s].get(), gpu_.workspace(),
                   gpu_.workspace_bytes(), stream, unread_c_.get());
    }
  }

 private:
  const GpuContext& gpu_;
  Precision precision_;
  WeightOnlyPath weight_only_path_;
  LayerShape conv_;
  bool im2col_ = false;
  std::int64_t m_ = 0, n_ = 0, k_ = 0, ldx_ = 0, input_elements_ = 0;
  W4Layout w4_;
  W8Layout w8_;
  std::unique_ptr<LtGemm> gemm_;
  std::vector<DeviceBuffer> inputs_, weights_, outputs_, weight_scales_;
  DeviceBuffer columns_, accumulators_, channel_scales_, fp8_scales_, dequantized_, unread_c_;
};

// Any convolution cuDNN plans (cudnn_conv.hpp): NHWC input, KRSC weights, NHWC output in
// the precision's output type; int8 writes fp32 sums that a per-channel kernel scales into
// fp16, as the GEMM path's int8 entry does with its int32 sums.
class CudnnConvRun final : public LayerRun {
 public:
  CudnnConvRun(const GpuContext& gpu, const LayerShape& shape, Precision precision,
               const LayerRunOptions& options)
      : gpu_(gpu), precision_(precision), conv_(gpu, shape, precision) {
    const ElementType in_type = input_type(precision), out_type = output_type(precision);
    m_ = shape.batch * shape.out_h() * shape.out_w();
    k_ = shape.k;
    bytes_per_set_ =
        (shape.input_elements() + shape.weight_elements()) * std::int64_t(element_bytes(in_type)) +
        m_ * k_ * std::int64_t(element_bytes(out_type));
    sets_ = sets_for(bytes_per_set_, options.rotate_bytes, options.max_sets);
    for (int s = 0; s < sets_; ++s) {
      inputs_.push_back(random_buffer(gpu, in_type, shape.input_elements(), 1.0f));
      weights_.push_back(random_buffer(gpu, in_type, shape.weight_elements(), 0.05f));
      outputs_.push_back(DeviceBuffer(static_cast<std::size_t>(m_ * k_) * element_bytes(out_type)));
    }
    implementation_ = conv_.description();
    if (precision == Precision::int8) {
      sums_ = DeviceBuffer(static_cast<std::size_t>(m_ * k_) * conv_.output_element_bytes());
      channel_scales_ = random_buffer(gpu, ElementType::f32, k_, 0.01f);
      implementation_ += " + fp32->fp16 per-channel dequant kernel";
    }
    gpu.synchronize();
  }

  void run(int set) override {
    const int s = set % sets_;
    if (precision_ != Precision::int8) {
      conv_.run(inputs_[s].get(), weights_[s].get(), outputs_[s].get());
      return;
    }
    conv_.run(inputs_[s].get(), weights_[s].get(), sums_.get());
    dequantize_f32(sums_.as<float>(), kActivationScale, channel_scales_.as<float>(), m_, k_,
                   outputs_[s].get(), gpu_.stream());
  }

 private:
  const GpuContext& gpu_;
  Precision precision_;
  CudnnConv conv_;
  std::int64_t m_ = 0, k_ = 0;
  std::vector<DeviceBuffer> inputs_, weights_, outputs_;
  DeviceBuffer sums_, channel_scales_;
};

// Depthwise convolution (groups == c == k) on bitplan's direct NHWC kernel.
class DepthwiseRun final : public LayerRun {
 public:
  DepthwiseRun(const GpuContext& gpu, const LayerShape& shape, Precision precision,
               const LayerRunOptions& options)
      : gpu_(gpu), shape_(shape), type_(input_type(precision)), out_type_(output_type(precision)) {
    const std::int64_t weights = shape.c * shape.r * shape.s;
    bytes_per_set_ = (shape.input_elements() + weights) * std::int64_t(element_bytes(type_)) +
                     shape.output_elements() * std::int64_t(element_bytes(out_type_));
    sets_ = sets_for(bytes_per_set_, options.rotate_bytes, options.max_sets);
    for (int s = 0; s < sets_; ++s) {
      inputs_.push_back(random_buffer(gpu, type_, shape.input_elements(), 1.0f));
      weights_.push_back(random_buffer(gpu, type_, weights, 0.2f));
      outputs_.push_back(DeviceBuffer(static_cast<std::size_t>(shape.output_elements()) *
                                      element_bytes(out_type_)));
    }
    if (type_ == ElementType::s8 || type_ == ElementType::e4m3)
      channel_scales_ = random_buffer(gpu, ElementType::f32, shape.c, 0.01f);
    implementation_ = "bitplan direct depthwise kernel (NHWC, " +
                      std::string(type_ == ElementType::s8 ? "int32" : "fp32") + " accumulate)";
    gpu.synchronize();
  }

  void run(int set) override {
    const int s = set % sets_;
    depthwise_conv_nhwc(inputs_[s].get(), type_, weights_[s].get(), channel_scales_.as<float>(),
                        kActivationScale, shape_, outputs_[s].get(), out_type_, gpu_.stream());
  }

 private:
  const GpuContext& gpu_;
  LayerShape shape_;
  ElementType type_, out_type_;
  std::vector<DeviceBuffer> inputs_, weights_, outputs_;
  DeviceBuffer channel_scales_;
};

class ConversionRun final : public LayerRun {
 public:
  ConversionRun(const GpuContext& gpu, std::int64_t elements, ElementType from, ElementType to,
                std::int64_t rotate_bytes, int max_sets)
      : gpu_(gpu), elements_(elements), from_(from), to_(to) {
    const bool quantize = to == ElementType::s8 || to == ElementType::e4m3;
    const bool dequantize = from == ElementType::s8 || from == ElementType::e4m3;
    factor_ = quantize ? 1.0f / kActivationScale : dequantize ? kActivationScale : 1.0f;
    bytes_per_set_ = elements * std::int64_t(element_bytes(from) + element_bytes(to));
    sets_ = sets_for(bytes_per_set_, rotate_bytes, max_sets);
    for (int s = 0; s < sets_; ++s) {
      inputs_.push_back(random_buffer(gpu, from, elements, 1.0f));
      outputs_.push_back(DeviceBuffer(static_cast<std::size_t>(elements) * element_bytes(to)));
    }
    implementation_ = "bitplan convert kernel (8 elements per thread)";
    gpu.synchronize();
  }

  void run(int set) override {
    const int s = set % sets_;
    convert(inputs_[s].get(), from_, outputs_[s].get(), to_, elements_, factor_, gpu_.stream());
  }

 private:
  const GpuContext& gpu_;
  std::int64_t elements_;
  ElementType from_, to_;
  float factor_ = 1.0f;
  std::vector<DeviceBuffer> inputs_, outputs_;
};

// One of the model's other ops (workloads.hpp, OpKind) in a float type: its inputs are
// random, its outputs written by the op kind's kernel (kernels.hpp) or, for bmm, cuBLASLt.
class OpRun final : public LayerRun {
 public:
  OpRun(const GpuContext& gpu, const OpShape& shape, ElementType type, std::int64_t rotate_bytes,
        int max_sets)
      : gpu_(gpu), shape_(shape), type_(type) {
    if (type != ElementType::f32 && type != ElementType::f16 && type != ElementType::bf16)
      throw ProfileError("running op " + op_key(shape) + " in " + to_string(type) +
                         ": other ops run in fp32, fp16 or bf16");
    std::vector<std::int64_t> input_sizes = shape.inputs;
    if (shape.kind == OpKind::reduce || shape.kind == OpKind::rownorm)
      input_sizes = {shape.rows * shape.cols};
    if (shape.kind == OpKind::bmm) {
      const Precision p = type == ElementType::f32   ? Precision::fp32
                          : type == ElementType::f16 ? Precision::fp16
                                                     : Precision::bf16;
      try {
        gemm_ = std::make_unique<LtGemm>(gpu.lt(), p, shape.m, shape.n, shape.k, shape.k, shape.k,
                                         nullptr, nullptr, nullptr, shape.batch);
      } catch (const Unsupported& e) {
        direct_reason_ = e.what();  // runs on bitplan's direct kernel instead
      }
      // W holds the second operand as [n][k] per product (K's rows for Q.K^T; P.V's V
      // transposed, which times the same work).
      input_sizes = {shape.batch * shape.n * shape.k, shape.batch * shape.m * shape.k};
    }
    const std::size_t bytes = element_bytes(type);
    bytes_per_set_ = (shape.elements_read() + shape.elements_written()) * std::int64_t(bytes);
    sets_ = sets_for(bytes_per_set_, rotate_bytes, max_sets);
    for (int s = 0; s < sets_; ++s) {
      std::vector<DeviceBuffer> set;
      for (std::int64_t count : input_sizes) set.push_back(random_buffer(gpu, type, count, 1.0f));
      inputs_.push_back(std::move(set));
      outputs_.push_back(DeviceBuffer(static_cast<std::size_t>(shape.elements_written()) * bytes));
    }
    switch (shape.kind) {
      case OpKind::eltwise:
        implementation_ = "bitplan eltwise kernel (broadcast by index)";
        break;
      case OpKind::reduce:
        implementation_ = "bitplan row reduction kernel (a warp per row)";
        break;
      case OpKind::rownorm:
        implementation_ = "bitplan softmax kernel (a warp per row, online max and sum)";
        break;
      case OpKind::copy:
        implementation_ = "bitplan copy kernel";
        break;
      case OpKind::bmm:
        implementation_ = gemm_ ? "batched " + gemm_->description()
                                : "bitplan direct batched matmul kernel (" + direct_reason_ + ")";
        break;
    }
    gpu.synchronize();
  }

  void run(int set) override {
    const int s = set % sets_;
    const cudaStream_t stream = gpu_.stream();
    const std::vector<DeviceBuffer>& in = inputs_[s];
    void* y = outputs_[s].get();
    switch (shape_.kind) {
      case OpKind::eltwise: {
        std::vector<const void*> pointers;
        for (const auto& b : in) pointers.push_back(b.get());
        eltwise_op(pointers, shape_.inputs, type_, y, shape_.outputs, stream);
        break;
      }
      case OpKind::reduce:
      case OpKind::rownorm:
        reduce_rows(in[0].get(), type_, shape_.rows, shape_.cols, y, shape_.kind == OpKind::rownorm,
                    stream);
        break;
      case OpKind::copy:
        copy_op(in[0].get(), shape_.inputs[0], type_, y, shape_.outputs, stream);
        break;
      case OpKind::bmm:
        if (gemm_)
          gemm_->run(in[0].get(), in[1].get(), y, gpu_.workspace(), gpu_.workspace_bytes(), stream);
        else
          bmm_direct(in[0].get(), in[1].get(), type_, y, shape_.batch, shape_.m, shape_.n, shape_.k,
                     stream);
        break;
    }
  }

 private:
  const GpuContext& gpu_;
  OpShape shape_;
  ElementType type_;
  std::unique_ptr<LtGemm> gemm_;  // bmm on cuBLASLt; null: on bmm_direct, for direct_reason_
  std::string direct_reason_;
  std::vector<std::vector<DeviceBuffer>> inputs_;
  std::vector<DeviceBuffer> outputs_;
};

std::optional<std::string> depthwise_declines(const LayerShape& shape, Precision precision) {
  if (!shape.depthwise())
    return "bitplan depthwise kernel on a conv with groups=" + std::to_string(shape.groups) +
           ", c=" + std::to_string(shape.c) + ", k=" + std::to_string(shape.k) +
           ": it runs groups == c == k only";
  if (precision == Precision::w4a16 || precision == Precision::w8a16)
    return to_string(precision) +
           " depthwise conv: the weight-only kernels are GEMMs; a depthwise layer has only r*s "
           "weights per channel, so there is no weight-only depthwise kernel";
  return std::nullopt;
}

std::optional<std::string> im2col_gemm_declines(const LayerShape& shape, Precision) {
  if (shape.groups != 1)
    return "im2col + GEMM on a conv with groups=" + std::to_string(shape.groups) +
           ": one GEMM runs groups == 1 only";
  return std::nullopt;
}

template <typename Run>
std::unique_ptr<LayerRun> make_run(const GpuContext& gpu, const LayerShape& shape,
                                   Precision precision, const LayerRunOptions& options) {
  return std::make_unique<Run>(gpu, shape, precision, options);
}

}  // namespace

std::unique_ptr<LayerRun> make_layer_run(const GpuContext& gpu, const LayerShape& shape,
                                         Precision precision, const LayerRunOptions& options) {
  if (shape.op == LayerOp::gemm)
    return std::make_unique<GemmLayerRun>(gpu, shape, precision, options);
  std::string reasons;
  const auto refused = [&](std::string_view kernel, const std::string& why) {
    reasons += (reasons.empty() ? "" : "; ") + std::string(kernel) + ": " + why;
  };
  for (const ConvKernel& kernel : conv_kernels()) {
    if (!options.conv_kernel.empty() && kernel.name != options.conv_kernel) continue;
    if (auto why = kernel.declines(shape, precision)) {
      refused(kernel.name, *why);
      continue;
    }
    try {
      return kernel.make(gpu, shape, precision, options);
    } catch (const Unsupported& e) {
      refused(kernel.name, e.what());
    }
  }
  if (reasons.empty())
    throw ProfileError("running " + layer_key(shape) + " on conv kernel '" + options.conv_kernel +
                       "': must be one of cudnn, bitplan_depthwise, bitplan_im2col_gemm");
  throw Unsupported(reasons);
}

std::span<const ConvKernel> conv_kernels() {
  static constexpr ConvKernel kernels[] = {
      {"cudnn", cudnn_conv_declines, make_run<CudnnConvRun>},
      {"bitplan_depthwise", depthwise_declines, make_run<DepthwiseRun>},
      {"bitplan_im2col_gemm", im2col_gemm_declines, make_run<GemmLayerRun>},
  };
  return kernels;
}

std::unique_ptr<LayerRun> make_conversion_run(const GpuContext& gpu, std::int64_t elements,
                                              ElementType from, ElementType to,
                                              std::int64_t rotate_bytes, int max_sets) {
  return std::make_unique<ConversionRun>(gpu, elements, from, to, rotate_bytes, max_sets);
}

bool times_gemm_algorithms(Precision p) {
  return p == Precision::int8 || p == Precision::int8_chained;
}

std::unique_ptr<LayerRun> make_op_run(const GpuContext& gpu, const OpShape& shape, ElementType type,
                                      std::int64_t rotate_bytes, int max_sets) {
  return std::make_unique<OpRun>(gpu, shape, type, rotate_bytes, max_sets);
}

}  // namespace bitplan::cuda
