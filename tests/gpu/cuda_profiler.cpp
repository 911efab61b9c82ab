// GPU tests of the CUDA latency backend (CTest label "gpu"): every GEMM path (fp32, fp16,
// bf16, int8, fp8, w4a16), the conv paths (cuDNN, im2col + GEMM, depthwise) and the conversions
// against CPU references on small shapes, then a profile/merge round trip. Where no GPU is
// usable each case is skipped (tests/skip.hpp) with the CUDA runtime's reason.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "backends/cuda/check.hpp"
#include "backends/cuda/cudnn_conv.hpp"
#include "backends/cuda/gemm.hpp"
#include "backends/cuda/kernels.hpp"
#include "backends/cuda/layers.hpp"
#include "backends/cuda/profile_file.hpp"
#include "backends/cuda/profiler.hpp"
#include "backends/cuda/runtime.hpp"
#include "backends/cuda/workloads.hpp"
#include "tests/gpu/gpu_test_util.hpp"
#include "tests/skip.hpp"

using namespace bitplan::cuda;

namespace {

using bitplan::testing::gpu_available;
using bitplan::testing::rng;

std::vector<float> random_floats(std::size_t count, float low, float high, bool integers = false) {
  std::uniform_real_distribution<float> dist(low, high);
  std::vector<float> v(count);
  for (auto& x : v) x = integers ? std::round(dist(rng())) : dist(rng());
  return v;
}

// Uploads fp32 values and converts them on the GPU to `type` (factor 1); returns the device
// buffer and, through `rounded`, the values as the GPU holds them (for the CPU reference).
DeviceBuffer upload_as(const GpuContext& gpu, const std::vector<float>& values, ElementType type,
                       std::vector<float>& rounded) {
  const std::int64_t n = static_cast<std::int64_t>(values.size());
  DeviceBuffer f32(values.size() * 4), typed(values.size() * element_bytes(type));
  check_cuda(cudaMemcpy(f32.get(), values.data(), values.size() * 4, cudaMemcpyHostToDevice),
             "uploading test data");
  convert(f32.get(), ElementType::f32, typed.get(), type, n, 1.0f, gpu.stream());
  convert(typed.get(), type, f32.get(), ElementType::f32, n, 1.0f, gpu.stream());
  rounded.resize(values.size());
  gpu.synchronize();
  check_cuda(cudaMemcpy(rounded.data(), f32.get(), values.size() * 4, cudaMemcpyDeviceToHost),
             "downloading test data");
  return typed;
}

std::vector<float> download_as_f32(const GpuContext& gpu, const void* data, ElementType type,
                                   std::size_t count) {
  DeviceBuffer f32(count * 4);
  convert(data, type, f32.get(), ElementType::f32, std::int64_t(count), 1.0f, gpu.stream());
  std::vector<float> host(count);
  gpu.synchronize();
  check_cuda(cudaMemcpy(host.data(), f32.get(), count * 4, cudaMemcpyDeviceToHost),
             "downloading results");
  return host;
}

// Fills with 0xFF bytes: NaN in every float type, so unwritten outputs fail the comparison.
void poison(DeviceBuffer& b) {
  check_cuda(cudaMemset(b.get(), 0xFF, b.bytes()), "poisoning");
}

// ||out - ref|| / ||ref||, NaN-propagating.
double relative_error(const std::vector<float>& out, const std::vector<double>& ref) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    num += (out[i] - ref[i]) * (out[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return std::sqrt(num / den);
}

// Y[m][n] = sum_k X[m][k] * W[n][k] (weights K-major, as the backend stores them).
std::vector<double> reference_gemm(const std::vector<float>& x, const std::vector<float>& w,
                                   std::int64_t m, std::int64_t n, std::int64_t k,
                                   double scale = 1.0) {
  std::vector<double> y(m * n);
  for (std::int64_t i = 0; i < m; ++i)
    for (std::int64_t j = 0; j < n; ++j) {
      double acc = 0;
      for (std::int64_t q = 0; q < k; ++q) acc += double(x[i * k + q]) * w[j * k + q];
      y[i * n + j] = acc * scale;
    }
  return y;
}

struct GemmCase {
  Precision precision;
  ElementType type;
  double tolerance;
};

}  // namespace

TEST_CASE("cuBLASLt GEMMs match a CPU reference in every precision") {
  if (!gpu_available()) return;
  GpuContext gpu;
  // Odd m; n and k meet the int8/fp8 alignment rules.
  for (auto [m, n, k] : {std::tuple<std::int64_t, std::int64_t, std::int64_t>{37, 72, 80},
                         {1, 40, 256},
                         {300, 136, 96},
                         {17, 64, 128}}) {
    for (const GemmCase& c : {GemmCase{Precision::fp32, ElementType::f32, 1e-5},
                              GemmCase{Precision::fp16, ElementType::f16, 2e-3},
                              GemmCase{Precision::bf16, ElementType::bf16, 1e-2},
                              GemmCase{Precision::fp8_e4m3, ElementType::e4m3, 1e-2},
                              // e4m3 out: 3 mantissa bits, rounding error up to 2^-4 each.
                              GemmCase{Precision::fp8_e4m3_chained, ElementType::e4m3, 4e-2}}) {
      CAPTURE(to_string(c.precision));
      CAPTURE(m);
      if (c.precision == Precision::fp8_e4m3_chained && n % 16 != 0) {
        CHECK_THROWS_WITH_AS(LtGemm(gpu.lt(), c.precision, m, n, k, k, k),
                             doctest::Contains("n a multiple of 16"), Unsupported);
        continue;
      }
      std::vector<float> xr, wr;
      DeviceBuffer x = upload_as(gpu, random_floats(m * k, -2, 2), c.type, xr);
      DeviceBuffer w = upload_as(gpu, random_floats(n * k, -2, 2), c.type, wr);
      const ElementType out_type = output_type(c.precision);
      DeviceBuffer y(m * n * element_bytes(out_type));
      poison(y);
      // Weight and input scales, and the chained output's scale (1 / s_y = 0.5).
      DeviceBuffer scales(12 * sizeof(float)), unread_c(m * n * 2);
      const float fp8_scales[12] = {0.5f, 0, 0, 0, 0.25f, 0, 0, 0, 0.5f};
      check_cuda(cudaMemcpy(scales.get(), fp8_scales, sizeof(fp8_scales), cudaMemcpyHostToDevice),
                 "uploading scales");
      LtGemm gemm(gpu.lt(), c.precision, m, n, k, k, k, scales.as<float>(), scales.as<float>() + 4,
                  scales.as<float>() + 8);
      gemm.run(w.get(), x.get(), y.get(), gpu.workspace(), gpu.workspace_bytes(), gpu.stream(),
               unread_c.get());
      const double scale = c.precision == Precision::fp8_e4m3           ? 0.125
                           : c.precision == Precision::fp8_e4m3_chained ? 0.0625
                                                                        : 1.0;
      const double error = relative_error(download_as_f32(gpu, y.get(), out_type, m * n),
                                          reference_gemm(xr, wr, m, n, k, scale));
      CAPTURE(error);
      CHECK(error < c.tolerance);
    }
  }
}

// What an int8_chained layer writes: the reader's codes, round-to-nearest and saturated, of the
// exact integer sums times the per-channel factor. The GPU multiplies in fp32, so a sum whose
// product lies within float rounding of a .5 may round the other way: at most one code off.
void check_requantized(const std::vector<float>& codes, const std::vector<double>& sums,
                       const std::vector<float>& factor, std::int64_t channels) {
  REQUIRE(codes.size() == sums.size());
  std::int64_t off_by_one = 0, worse = 0, saturated = 0;
  for (std::size_t i = 0; i < sums.size(); ++i) {
    const double want = std::clamp(std::nearbyint(sums[i] * factor[i % channels]), -128.0, 127.0);
    const double diff = std::abs(codes[i] - want);
    off_by_one += diff == 1, worse += diff > 1;
    saturated += std::abs(want) == 128 || want == 127;
  }
  CAPTURE(off_by_one);
  CHECK(worse == 0);
  CHECK(off_by_one * 100 <= static_cast<std::int64_t>(sums.size()));
  // The factors keep most codes inside the range, so rounding is what is checked.
  CHECK(saturated * 4 < static_cast<std::int64_t>(sums.size()));
}

TEST_CASE("int8 GEMM with per-channel dequantisation, or requantization, matches a CPU reference") {
  if (!gpu_available()) return;
  GpuContext gpu;
  const std::int64_t m = 45, n = 64, k = 128;
  std::vector<float> xr, wr;
  DeviceBuffer x = upload_as(gpu, random_floats(m * k, -127, 127, true), ElementType::s8, xr);
  DeviceBuffer w = upload_as(gpu, random_floats(n * k, -127, 127, true), ElementType::s8, wr);
  const std::vector<float> channel = random_floats(n, 0.001f, 0.01f);
  DeviceBuffer scales(n * sizeof(float)), acc(m * n * 4), y(m * n * 2);
  check_cuda(cudaMemcpy(scales.get(), channel.data(), n * 4, cudaMemcpyHostToDevice), "upload");
  poison(y);
  LtGemm gemm(gpu.lt(), Precision::int8, m, n, k, k, k);
  gemm.run(w.get(), x.get(), acc.get(), gpu.workspace(), gpu.workspace_bytes(), gpu.stream());
  const float input_scale = 0.02f;
  dequantize_s32(acc.as<std::int32_t>(), input_scale, scales.as<float>(), m, n, y.get(),
                 gpu.stream());
  const std::vector<double> sums = reference_gemm(xr, wr, m, n, k);
  std::vector<double> ref = sums;
  for (std::int64_t i = 0; i < m * n; ++i) ref[i] *= double(input_scale) * channel[i % n];
  const double error = relative_error(download_as_f32(gpu, y.get(), ElementType::f16, m * n), ref);
  CAPTURE(error);
  CHECK(error < 1e-3);  // exact integer products; only the fp16 output rounds

  SUBCASE("int8_chained writes the reader's codes: per-channel requantization in the epilogue") {
    // s_x s_w[c] / s_y: sums of 128 products of up to 127 x 127 spread about +-1e5.
    const std::vector<float> alpha = random_floats(n, 1e-4f, 1e-3f);
    DeviceBuffer alpha_d(n * sizeof(float)), codes(m * n);
    check_cuda(cudaMemcpy(alpha_d.get(), alpha.data(), n * 4, cudaMemcpyHostToDevice), "upload");
    poison(codes);
    LtGemm chained(gpu.lt(), Precision::int8_chained, m, n, k, k, k, nullptr, nullptr,
                   alpha_d.as<float>());
    chained.run(w.get(), x.get(), codes.get(), gpu.workspace(), gpu.workspace_bytes(),
                gpu.stream());
    check_requantized(download_as_f32(gpu, codes.get(), ElementType::s8, m * n), sums, alpha, n);
    CHECK_THROWS_AS(LtGemm(gpu.lt(), Precision::int8_chained, 8, 64, 64, 64, 64), ProfileError);
  }

  SUBCASE("shapes that break the IMMA rules are refused with the rule") {
    CHECK_THROWS_AS(LtGemm(gpu.lt(), Precision::int8, 8, 10, 64, 64, 64), Unsupported);
    CHECK_THROWS_AS(LtGemm(gpu.lt(), Precision::fp8_e4m3, 8, 64, 40, 40, 40), Unsupported);
  }
}

TEST_CASE("W4A16 kernel matches fp32 GEMM on dequantised weights, for any m and k") {
  if (!gpu_available()) return;
  GpuContext gpu;
  std::uniform_int_distribution<int> nibble(0, 15);
  // k: multiple of 128 (group 128), multiple of 8 only (group k, vector loads), odd (group k,
  // scalar loads); n not a multiple of 8; m across the 1/2/4-tile kernels.
  for (std::int64_t k : {256, 200, 100}) {
    for (std::int64_t m : {1, 5, 16, 33, 70}) {
      const std::int64_t n = 44;
      CAPTURE(k);
      CAPTURE(m);
      const W4Layout layout = w4_layout(n, k);
      CHECK(layout.group == (k % 128 == 0 ? 128 : k));
      std::vector<std::uint8_t> q(n * k);
      for (auto& v : q) v = static_cast<std::uint8_t>(nibble(rng()));
      const std::vector<float> group_scales = random_floats(n * (k / layout.group), 0.01f, 0.1f);
      std::vector<std::uint8_t> packed;
      std::vector<std::uint16_t> chunk_scales;
      w4_pack(layout, q, group_scales, packed, chunk_scales);
      DeviceBuffer dpacked(packed.size()), dscales(chunk_scales.size() * 2);
      check_cuda(cudaMemcpy(dpacked.get(), packed.data(), packed.size(), cudaMemcpyHostToDevice),
                 "upload");
      check_cuda(cudaMemcpy(dscales.get(), chunk_scales.data(), chunk_scales.size() * 2,
                            cudaMemcpyHostToDevice),
                 "upload");
      // The reference uses the weights exactly as the kernel sees them: (q - 8) * fp16(scale).
      std::vector<float> wref(n * k), scale_rounded;
      DeviceBuffer scratch = upload_as(gpu, group_scales, ElementType::f16, scale_rounded);
      for (std::int64_t j = 0; j < n; ++j)
        for (std::int64_t kk = 0; kk < k; ++kk)
          wref[j * k + kk] = float(int(q[j * k + kk]) - 8) *
                             scale_rounded[j * (k / layout.group) + kk / layout.group];
      std::vector<float> xr;
      DeviceBuffer x = upload_as(gpu, random_floats(m * k, -1, 1), ElementType::f16, xr);
      DeviceBuffer y(m * n * 2);
      poison(y);
      w4a16_gemm(x.get(), k, dpacked.as<std::uint8_t>(), dscales.get(), layout, m, y.get(),
                 gpu.stream());
      const double error = relative_error(download_as_f32(gpu, y.get(), ElementType::f16, m * n),
                                          reference_gemm(xr, wref, m, n, k));
      CAPTURE(error);
      CHECK(error < 2e-3);

      // The dequantise-then-cuBLASLt path starts from the same packed weights.
      DeviceBuffer wdq(layout.padded_n * layout.padded_k * 2);
      w4_dequantize(dpacked.as<std::uint8_t>(), dscales.get(), layout, wdq.get(), gpu.stream());
      const std::vector<float> w_back =
          download_as_f32(gpu, wdq.get(), ElementType::f16, layout.padded_n * layout.padded_k);
      int mismatches = 0;
      for (std::int64_t j = 0; j < n; ++j)
        for (std::int64_t kk = 0; kk < k; ++kk)
          mismatches += std::fabs(w_back[j * layout.padded_k + kk] - wref[j * k + kk]) >
                        1e-3f * std::fabs(wref[j * k + kk]) + 1e-6f;
      CHECK(mismatches == 0);
    }
  }
}

namespace {

// Direct NHWC convolution on the CPU; weights [k][r][s][c/groups] (depthwise: [c][r][s]).
std::vector<double> reference_conv(const std::vector<float>& in, const std::vector<float>& w,
                                   const LayerShape& s) {
  const std::int64_t oh = s.out_h(), ow = s.out_w(), cg = s.c / s.groups, kg = s.k / s.groups;
  std::vector<double> out(s.batch * oh * ow * s.k, 0.0);
  for (std::int64_t n = 0; n < s.batch; ++n)
    for (std::int64_t y = 0; y < oh; ++y)
      for (std::int64_t x = 0; x < ow; ++x)
        for (std::int64_t o = 0; o < s.k; ++o) {
          double acc = 0;
          const std::int64_t g = o / kg;
          for (std::int64_t ky = 0; ky < s.r; ++ky)
            for (std::int64_t kx = 0; kx < s.s; ++kx) {
              const std::int64_t iy = y * s.stride_h - s.pad_top + ky * s.dilation_h;
              const std::int64_t ix = x * s.stride_w - s.pad_left + kx * s.dilation_w;
              if (iy < 0 || iy >= s.h || ix < 0 || ix >= s.w) continue;
              for (std::int64_t ci = 0; ci < cg; ++ci)
                acc += double(in[((n * s.h + iy) * s.w + ix) * s.c + g * cg + ci]) *
                       w[((o * s.r + ky) * s.s + kx) * cg + ci];
            }
          out[((n * oh + y) * ow + x) * s.k + o] = acc;
        }
  return out;
}

}  // namespace

TEST_CASE("conv as im2col + GEMM matches a direct CPU convolution (fp16, int8)") {
  if (!gpu_available()) return;
  GpuContext gpu;
  for (const char* key : {"conv:n2:c3:h9:w7:k8:r3:s3:st2x1:p1x0x1x2:d1x1:g1",
                          "conv:n1:c16:h6:w5:k24:r3:s3:st1x1:p2x2x2x2:d2x2:g1",
                          "conv:n2:c20:h4:w4:k16:r1:s1:st2x2:p0x0x0x0:d1x1:g1"}) {
    CAPTURE(key);
    const LayerShape s = parse_layer_key(key);
    const std::int64_t m = s.batch * s.out_h() * s.out_w(), real_k = s.c * s.r * s.s;
    const std::int64_t padded_k = (real_k + 15) / 16 * 16;
    for (Precision p : {Precision::fp16, Precision::int8}) {
      CAPTURE(to_string(p));
      const ElementType t = input_type(p);
      const bool integers = p == Precision::int8;
      std::vector<float> xr, wr;
      DeviceBuffer x = upload_as(gpu, random_floats(s.input_elements(), -20, 20, integers), t, xr);
      // Weights [k][padded_k] with zero padding columns, as the GEMM consumes them.
      std::vector<float> w = random_floats(s.k * padded_k, -20, 20, integers);
      for (std::int64_t o = 0; o < s.k; ++o)
        for (std::int64_t j = real_k; j < padded_k; ++j) w[o * padded_k + j] = 0;
      DeviceBuffer wd = upload_as(gpu, w, t, wr);
      std::vector<float> wdense(s.k * real_k);
      for (std::int64_t o = 0; o < s.k; ++o)
        for (std::int64_t j = 0; j < real_k; ++j) wdense[o * real_k + j] = wr[o * padded_k + j];
      DeviceBuffer columns(m * padded_k * element_bytes(t)), y(m * s.k * 4), yh(m * s.k * 2);
      poison(columns);
      im2col_nhwc(x.get(), element_bytes(t), s, columns.get(), padded_k, gpu.stream());
      LtGemm gemm(gpu.lt(), p, m, s.k, padded_k, padded_k, padded_k);
      gemm.run(wd.get(), columns.get(), y.get(), gpu.workspace(), gpu.workspace_bytes(),
               gpu.stream());
      std::vector<float> out;
      if (p == Precision::int8) {
        std::vector<float> ones(s.k, 1.0f);
        DeviceBuffer scales(s.k * 4);
        check_cuda(cudaMemcpy(scales.get(), ones.data(), s.k * 4, cudaMemcpyHostToDevice), "up");
        dequantize_s32(y.as<std::int32_t>(), 1.0f / 64, scales.as<float>(), m, s.k, yh.get(),
                       gpu.stream());
        out = download_as_f32(gpu, yh.get(), ElementType::f16, m * s.k);
        for (auto& v : out) v *= 64;
      } else {
        out = download_as_f32(gpu, y.get(), ElementType::f16, m * s.k);
      }
      const double error = relative_error(out, reference_conv(xr, wdense, s));
      CAPTURE(error);
      CHECK(error < 2e-3);
    }
  }
}

TEST_CASE("depthwise conv kernel matches a CPU reference (fp32, fp16, int8)") {
  if (!gpu_available()) return;
  GpuContext gpu;
  const LayerShape s = parse_layer_key("conv:n2:c24:h7:w9:k24:r3:s3:st2x2:p1x1x1x1:d1x1:g24");
  REQUIRE(s.depthwise());
  for (Precision p : {Precision::fp32, Precision::fp16, Precision::int8}) {
    CAPTURE(to_string(p));
    const ElementType t = input_type(p);
    const bool integers = p == Precision::int8;
    std::vector<float> xr, wr;
    DeviceBuffer x = upload_as(gpu, random_floats(s.input_elements(), -50, 50, integers), t, xr);
    DeviceBuffer w = upload_as(gpu, random_floats(s.c * 9, -50, 50, integers), t, wr);
    const std::vector<float> ones(s.c, 1.0f);
    DeviceBuffer scales(s.c * 4), y(s.output_elements() * element_bytes(output_type(p)));
    check_cuda(cudaMemcpy(scales.get(), ones.data(), s.c * 4, cudaMemcpyHostToDevice), "up");
    poison(y);
    const float input_scale = integers ? 1.0f / 256 : 1.0f;
    depthwise_conv_nhwc(x.get(), t, w.get(), scales.as<float>(), input_scale, s, y.get(),
                        output_type(p), gpu.stream());
    std::vector<float> out = download_as_f32(gpu, y.get(), output_type(p), s.output_elements());
    for (auto& v : out) v /= input_scale;
    const double error = relative_error(out, reference_conv(xr, wr, s));
    CAPTURE(error);
    CHECK(error < (p == Precision::fp32 ? 1e-6 : 2e-3));
  }
}

TEST_CASE("depthwise conv kernel writes int8 codes for an int8 reader") {
  if (!gpu_available()) return;
  GpuContext gpu;
  const LayerShape s = parse_layer_key("conv:n2:c24:h7:w9:k24:r3:s3:st2x2:p1x1x1x1:d1x1:g24");
  std::vector<float> xr, wr;
  DeviceBuffer x =
      upload_as(gpu, random_floats(s.input_elements(), -127, 127, true), ElementType::s8, xr);
  DeviceBuffer w = upload_as(gpu, random_floats(s.c * 9, -127, 127, true), ElementType::s8, wr);
  const std::vector<float> factor = random_floats(s.c, 2e-3f, 8e-3f);
  DeviceBuffer scales(s.c * 4), y(s.output_elements());
  check_cuda(cudaMemcpy(scales.get(), factor.data(), s.c * 4, cudaMemcpyHostToDevice), "up");
  poison(y);
  depthwise_conv_nhwc(x.get(), ElementType::s8, w.get(), scales.as<float>(), 1.0f, s, y.get(),
                      ElementType::s8, gpu.stream());
  check_requantized(download_as_f32(gpu, y.get(), ElementType::s8, s.output_elements()),
                    reference_conv(xr, wr, s), factor, s.c);
  CHECK_THROWS_AS(depthwise_conv_nhwc(x.get(), ElementType::s8, w.get(), scales.as<float>(), 1.0f,
                                      s, y.get(), ElementType::f32, gpu.stream()),
                  ProfileError);

  SUBCASE("and e4m3 codes for an fp8 reader") {
    std::vector<float> xf, wf;
    DeviceBuffer x8 =
        upload_as(gpu, random_floats(s.input_elements(), -4, 4), ElementType::e4m3, xf);
    DeviceBuffer w8 = upload_as(gpu, random_floats(s.c * 9, -1, 1), ElementType::e4m3, wf);
    const std::vector<float> ones(s.c, 1.0f);
    check_cuda(cudaMemcpy(scales.get(), ones.data(), s.c * 4, cudaMemcpyHostToDevice), "up");
    DeviceBuffer y8(s.output_elements());
    depthwise_conv_nhwc(x8.get(), ElementType::e4m3, w8.get(), scales.as<float>(), 0.5f, s,
                        y8.get(), ElementType::e4m3, gpu.stream());
    std::vector<double> ref = reference_conv(xf, wf, s);
    for (double& v : ref) v *= 0.5;
    const double error =
        relative_error(download_as_f32(gpu, y8.get(), ElementType::e4m3, s.output_elements()), ref);
    CAPTURE(error);
    CHECK(error < 4e-2);  // e4m3 out: 3 mantissa bits
  }
}

TEST_CASE("conversions round to nearest and saturate") {
  if (!gpu_available()) return;
  GpuContext gpu;
  const std::vector<float> values = {0.0f, 1.4f, -1.6f, 2.5f, 126.6f, 300.0f, -1000.0f, 7.0f, 3.3f};
  std::vector<float> as_int8;
  DeviceBuffer q = upload_as(gpu, values, ElementType::s8, as_int8);
  const std::vector<float> expected = {0, 1, -2, 2, 127, 127, -128, 7, 3};  // rint: ties to even
  CHECK(as_int8 == expected);
  std::vector<float> as_fp8;
  DeviceBuffer f = upload_as(gpu, {1.0f, 448.0f, 1000.0f, -0.3f}, ElementType::e4m3, as_fp8);
  CHECK(as_fp8[0] == 1.0f);
  CHECK(as_fp8[1] == 448.0f);
  CHECK(as_fp8[2] == 448.0f);  // saturates to the largest finite e4m3
  CHECK(std::fabs(as_fp8[3] + 0.3f) < 0.02f);
}

// Its own ctest entry (gpu_cuda_cudnn): it skips in a build without cuDNN.
TEST_CASE("cuDNN convolutions match a direct CPU convolution (fp32, fp16, bf16, int8)") {
  if (!gpu_available()) return;
  const LayerShape probe = parse_layer_key("conv:n1:c8:h4:w4:k8:r1:s1:st1x1:p0x0x0x0:d1x1:g1");
  if (auto why = cudnn_conv_declines(probe, Precision::fp16)) {
    bitplan::testing::skip(*why);
    return;
  }
  GpuContext gpu;
  MESSAGE("cuDNN " << cudnn_runtime_version());
  // Stride 2 with padding, dilation, pointwise, groups = 2, depthwise 3x3 stride 2 and 5x5,
  // and TF "SAME" padding at stride 2 (none before, one after: cuDNN gets a padded copy).
  for (const std::string key : {"conv:n2:c16:h9:w7:k24:r3:s3:st2x1:p1x1x1x1:d1x1:g1",
                                "conv:n1:c16:h6:w5:k24:r3:s3:st1x1:p2x2x2x2:d2x2:g1",
                                "conv:n2:c20:h4:w4:k16:r1:s1:st1x1:p0x0x0x0:d1x1:g1",
                                "conv:n2:c16:h8:w8:k32:r3:s3:st1x1:p1x1x1x1:d1x1:g2",
                                "conv:n2:c32:h8:w8:k32:r3:s3:st2x2:p1x1x1x1:d1x1:g32",
                                "conv:n2:c24:h7:w9:k24:r5:s5:st1x1:p2x2x2x2:d1x1:g24",
                                "conv:n2:c16:h9:w8:k16:r3:s3:st2x2:p0x0x1x1:d1x1:g16",
                                "conv:n2:c8:h8:w9:k16:r5:s5:st2x2:p1x1x2x2:d1x1:g1"}) {
    CAPTURE(key);
    const LayerShape s = parse_layer_key(key);
    for (Precision p : {Precision::fp32, Precision::fp16, Precision::bf16, Precision::int8}) {
      CAPTURE(to_string(p));
      const bool integers = p == Precision::int8;
      if (auto why = cudnn_conv_declines(s, p)) {
        // int8 needs 4k channels per group: the depthwise shapes (1 per group) are declined.
        CHECK_MESSAGE((integers && s.c / s.groups % 4 != 0), std::string(*why));
        continue;
      }
      std::unique_ptr<CudnnConv> conv;
      try {
        conv = std::make_unique<CudnnConv>(gpu, s, p);
      } catch (const Unsupported& e) {
        // Float convs of every kind must plan, and int8 pointwise convs (the bulk of a CNN's
        // int8 work); other int8 shapes may be refused by cuDNN's INT8_EXT_CONFIG kernels.
        const std::string why = e.what();
        CAPTURE(why);
        CHECK((integers && !(s.r == 1 && s.s == 1)));
        continue;
      }
      const ElementType t = input_type(p);
      std::vector<float> xr, wr;
      DeviceBuffer x = upload_as(gpu, random_floats(s.input_elements(), -20, 20, integers), t, xr);
      DeviceBuffer w = upload_as(gpu, random_floats(s.weight_elements(), -20, 20, integers), t, wr);
      DeviceBuffer y(s.output_elements() * conv->output_element_bytes());
      poison(y);
      conv->run(x.get(), w.get(), y.get());
      const std::vector<double> ref = reference_conv(xr, wr, s);
      if (integers) {
        // int32 sums written as fp32 (exact below 2^24): bit-exact against the reference.
        std::vector<float> sums(s.output_elements());
        gpu.synchronize();
        check_cuda(cudaMemcpy(sums.data(), y.get(), sums.size() * 4, cudaMemcpyDeviceToHost),
                   "downloading sums");
        std::int64_t mismatches = 0;
        for (std::size_t i = 0; i < ref.size(); ++i) mismatches += double(sums[i]) != ref[i];
        CHECK(mismatches == 0);
        // Then the int8 entry's per-channel scaling into fp16.
        const std::vector<float> ones(s.k, 1.0f);
        DeviceBuffer scales(s.k * 4), yh(s.output_elements() * 2);
        check_cuda(cudaMemcpy(scales.get(), ones.data(), s.k * 4, cudaMemcpyHostToDevice), "up");
        dequantize_f32(y.as<float>(), 1.0f / 64, scales.as<float>(),
                       s.batch * s.out_h() * s.out_w(), s.k, yh.get(), gpu.stream());
        std::vector<float> out = download_as_f32(gpu, yh.get(), ElementType::f16, ref.size());
        for (auto& v : out) v *= 64;
        const double error = relative_error(out, ref);
        CAPTURE(error);
        CHECK(error < 2e-3);
        continue;
      }
      // fp32: TF32 off, so only summation order differs; fp16 and bf16: fp32 sums of exactly
      // rounded inputs, then one rounding of the output (2^-11 and 2^-8 relative), with room
      // for the Winograd/FFT transforms cuDNN may pick.
      const double bound = p == Precision::fp32 ? 1e-5 : p == Precision::fp16 ? 4e-3 : 1e-2;
      const double error =
          relative_error(download_as_f32(gpu, y.get(), output_type(p), ref.size()), ref);
      CAPTURE(error);
      CHECK(error < bound);
    }
  }
}

TEST_CASE("every conv kernel that takes a shape runs it through make_layer_run") {
  if (!gpu_available()) return;
  GpuContext gpu;
  TimingOptions quick;
  quick.warmup_runs = 2;
  quick.min_repeats = 5;
  quick.budget_ms = 1;
  for (const char* key : {"conv:n2:c16:h9:w7:k24:r3:s3:st2x1:p1x1x1x1:d1x1:g1",
                          "conv:n2:c32:h8:w8:k32:r3:s3:st2x2:p1x1x1x1:d1x1:g32",
                          "conv:n1:c16:h9:w9:k16:r3:s3:st2x2:p0x0x1x1:d1x1:g16"}) {
    const LayerShape shape = parse_layer_key(key);
    for (Precision p : all_precisions()) {
      int ran = 0;
      std::string reasons;
      for (const ConvKernel& kernel : conv_kernels()) {
        CAPTURE(key);
        CAPTURE(to_string(p));
        CAPTURE(kernel.name);
        LayerRunOptions options;
        options.rotate_bytes = 1 << 20;
        options.conv_kernel = kernel.name;
        if (auto why = kernel.declines(shape, p)) {
          // A declined kernel is refused by name too, with the same reason.
          CHECK_THROWS_WITH_AS(make_layer_run(gpu, shape, p, options),
                               doctest::Contains(why->c_str()), Unsupported);
          reasons += *why;
          continue;
        }
        try {
          auto run = make_layer_run(gpu, shape, p, options);
          CHECK(time_on_gpu(
                    gpu, [&](int i) { run->run(i); }, quick)
                    .median_us > 0);
          CHECK(!run->implementation().empty());
          ++ran;
        } catch (const Unsupported& e) {
          reasons += e.what();  // planning refusals (cuDNN int8 grouped, fp8 alignment)
        }
      }
      CAPTURE(reasons);
      // Every precision but w4a16 on a depthwise layer has at least one kernel, and e4m3
      // outputs need 16-byte rows (k a multiple of 16) where a GEMM writes them.
      const bool none_expected =
          (shape.depthwise() && p == Precision::w4a16) ||
          (!shape.depthwise() && p == Precision::fp8_e4m3_chained && shape.k % 16 != 0);
      CHECK((ran > 0 || none_expected));
    }
  }
}

TEST_CASE("every layer kind runs through make_layer_run and the timer") {
  if (!gpu_available()) return;
  GpuContext gpu;
  TimingOptions quick;
  quick.warmup_runs = 2;
  quick.min_repeats = 5;
  quick.budget_ms = 1;
  for (const char* key : {"gemm:m3:n72:k200", "gemm:m64:n128:k256",
                          "conv:n1:c3:h32:w32:k16:r7:s7:st2x2:p3x3x3x3:d1x1:g1",
                          "conv:n2:c32:h8:w8:k32:r3:s3:st1x1:p1x1x1x1:d1x1:g32"}) {
    const LayerShape shape = parse_layer_key(key);
    for (Precision p : all_precisions()) {
      CAPTURE(key);
      CAPTURE(to_string(p));
      for (WeightOnlyPath path :
           {WeightOnlyPath::own_kernel, WeightOnlyPath::dequantize_then_cublaslt}) {
        if (path == WeightOnlyPath::dequantize_then_cublaslt && p != Precision::w4a16) continue;
        LayerRunOptions options;
        options.rotate_bytes = 1 << 20;
        options.weight_only_path = path;
        try {
          auto run = make_layer_run(gpu, shape, p, options);
          const TimingResult t = time_on_gpu(
              gpu, [&](int i) { run->run(i); }, quick);
          CHECK(t.median_us > 0);
          CHECK(t.repeats >= 5);
          CHECK(run->sets() >= 2);
          // Every kernel a chain may hold can be a step of a CUDA graph.
          const TimingResult g = time_in_graph(
              gpu, [&](int i) { run->run(i); }, 4, quick);
          CHECK(g.median_us > 0);
        } catch (const Unsupported& e) {
          // Only the documented refusals: gemm k=200 is no multiple of 16 for fp8, and there
          // is no w4a16 depthwise kernel.
          const bool expected = (std::string(key) == "gemm:m3:n72:k200" &&
                                 (p == Precision::fp8_e4m3 || p == Precision::fp8_e4m3_chained)) ||
                                (shape.depthwise() && p == Precision::w4a16);
          CHECK_MESSAGE(expected, e.what());
        }
      }
    }
  }
}

TEST_CASE("a profile is written, then merged without re-measuring") {
  if (!gpu_available()) return;
  GpuContext gpu;
  const auto folder = std::filesystem::temp_directory_path() / "bitplan_cuda_profiler_test";
  std::filesystem::create_directories(folder);
  const std::string workloads = (folder / "w.json").string(), out = (folder / "p.yaml").string();
  std::filesystem::remove(out);
  std::ofstream(workloads) << R"({"bitplan_workloads": 1, "model": "t", "batch": 1,
    "precisions": ["fp16", "int8"],
    "layers": [{"name": "fc", "key": "gemm:m4:n64:k128", "op": "gemm", "m": 4, "n": 64, "k": 128,
                "input_elements": 512, "output_elements": 256},
               {"name": "fc2", "key": "gemm:m4:n64:k128", "op": "gemm", "m": 4, "n": 64, "k": 128,
                "input_elements": 512, "output_elements": 256}]})";
  ProfileOptions options;
  options.workloads = {workloads};
  options.out = out;
  options.ceilings = false;
  options.timing.min_repeats = 5;
  options.timing.budget_ms = 1;
  // 2 entries (the duplicate key is measured once) + conversions fp16<->int8 for 512 elements.
  CHECK(run_profile(gpu, options) == 4);
  CHECK(run_profile(gpu, options) == 0);
  const ProfileFile profile = ProfileFile::load_or_empty(out);
  CHECK(profile.device_name() == gpu.device().name);
  CHECK(profile.has_entry("gemm:m4:n64:k128", "int8"));
  CHECK(profile.has_entry("gemm:m4:n64:k128", "fp16"));
  CHECK(profile.has_conversion("fp16", "int8", 512));
  CHECK(profile.has_conversion("int8", "fp16", 512));
  // How much the events around an entry add over a step of a CUDA graph (the cost model
  // takes it off each entry): measured once, with the graph's floor for a step.
  CHECK(profile.has_ceiling("graph_step_us"));
  CHECK(profile.has_ceiling("step_overhead_us"));
  std::filesystem::remove_all(folder);
}

TEST_CASE("a CUDA graph of empty kernels times each below the same kernel between events") {
  if (!gpu_available()) return;
  GpuContext gpu;
  const auto empty = [&](int) { spin(0.0, gpu.stream()); };
  const TimingResult evented = time_on_gpu(gpu, empty, TimingOptions{});
  const TimingResult in_graph = time_in_graph(gpu, empty, 64, TimingOptions{});
  MESSAGE("empty kernel: " << evented.median_us << " us between events, " << in_graph.median_us
                           << " us as a graph step");
  CHECK(in_graph.median_us > 0);
  CHECK(in_graph.median_us < evented.median_us);
  CHECK(in_graph.repeats >= 64);
  // A run that cannot be captured (it synchronises) is refused with the runtime's reason.
  CHECK_THROWS_AS(CapturedGraph(
                      gpu, [&](int) { gpu.synchronize(); }, 1),
                  Unsupported);
  // ... and leaves the stream usable.
  CHECK(time_on_gpu(gpu, empty, TimingOptions{}).median_us > 0);
}

TEST_CASE("a chain's int8 layers before int8 layers write their reader's codes") {
  if (!gpu_available()) return;
  GpuContext gpu;
  const auto folder = std::filesystem::temp_directory_path() / "bitplan_cuda_chain_test";
  std::filesystem::create_directories(folder);
  const std::string plans = (folder / "plans.json").string(), out = (folder / "c.json").string();
  // int8 -> int8 -> int8 -> fp16: the first two write codes (no conversion before layers 2
  // and 3), the third writes fp16 for the fp16 layer (no conversion either); then fp16 ->
  // int8 after an fp16 layer is one conversion, int8 -> fp8 another (from the int8 layer's
  // fp16), and the first fp8 layer writes the second's e4m3 codes.
  std::ofstream(plans) << R"({"plans": [
    {"name": "int8_run", "layers": [
      {"key": "gemm:m4:n64:k128", "precision": "int8"},
      {"key": "gemm:m4:n64:k64", "precision": "int8"},
      {"key": "conv:n1:c64:h8:w8:k64:r3:s3:st1x1:p1x1x1x1:d1x1:g64", "precision": "int8"},
      {"key": "gemm:m64:n32:k64", "precision": "fp16"},
      {"key": "gemm:m64:n32:k32", "precision": "int8"},
      {"key": "gemm:m64:n32:k32", "precision": "fp8_e4m3"},
      {"key": "gemm:m64:n32:k32", "precision": "fp8_e4m3"}]}]})";
  ChainOptions options;
  options.plans = plans;
  options.out = out;
  options.timing.min_repeats = 5;
  options.timing.budget_ms = 1;
  run_chains(gpu, options);
  const nlohmann::json results = nlohmann::json::parse(std::ifstream(out));
  REQUIRE(results["results"].size() == 1);
  const nlohmann::json& r = results["results"][0];
  CAPTURE(r.dump());
  REQUIRE(!r.contains("unsupported"));
  CHECK(r["chained"] == 3);
  CHECK(r["conversions"] == 2);
  CHECK(r["median_us"].get<double>() > 0);
  std::filesystem::remove_all(folder);
}

TEST_CASE("the model's other ops match CPU references (fp32, fp16, bf16)") {
  if (!gpu_available()) return;
  GpuContext gpu;
  for (ElementType type : {ElementType::f32, ElementType::f16, ElementType::bf16}) {
    CAPTURE(to_string(type));
    // Half-precision outputs round once: 2^-8 relative (bf16), a little more after sums.
    const double tolerance = type == ElementType::f32   ? 1e-6
                             : type == ElementType::f16 ? 2e-3
                                                        : 1e-2;
    SUBCASE("eltwise: a sum of inputs broadcast by index (scalar and 16-byte paths)") {
      using Case = std::pair<std::int64_t, std::vector<std::int64_t>>;
      for (const Case& c : {Case{6 * 40, {6 * 40, 40, 1}}, Case{5 * 64, {5 * 64, 64}},
                            Case{5 * 64, {5 * 64}}, Case{5 * 64, {5 * 64, 64, 1}}}) {
        const std::int64_t outputs = c.first;
        const std::vector<std::int64_t>& counts = c.second;
        CAPTURE(counts.size());
        std::vector<std::vector<float>> held(counts.size());
        std::vector<DeviceBuffer> buffers;
        std::vector<const void*> pointers;
        for (std::size_t j = 0; j < counts.size(); ++j) {
          buffers.push_back(
              upload_as(gpu, random_floats(std::size_t(counts[j]), -2, 2), type, held[j]));
          pointers.push_back(buffers.back().get());
        }
        DeviceBuffer y(std::size_t(outputs) * element_bytes(type));
        poison(y);
        eltwise_op(pointers, counts, type, y.get(), outputs, gpu.stream());
        const auto out = download_as_f32(gpu, y.get(), type, std::size_t(outputs));
        std::vector<double> ref(outputs);
        for (std::int64_t i = 0; i < outputs; ++i)
          for (std::size_t j = 0; j < counts.size(); ++j) ref[i] += held[j][i % counts[j]];
        CHECK(relative_error(out, ref) < tolerance);
      }
    }
    SUBCASE("reduce: the mean of each row; rownorm: each row's softmax") {
      for (std::int64_t cols : {1, 7, 33, 576}) {
        CAPTURE(cols);
        const std::int64_t rows = 70;
        std::vector<float> x;
        DeviceBuffer in = upload_as(gpu, random_floats(std::size_t(rows * cols), -4, 4), type, x);
        DeviceBuffer means(std::size_t(rows) * element_bytes(type));
        DeviceBuffer soft(std::size_t(rows * cols) * element_bytes(type));
        poison(means);
        poison(soft);
        reduce_rows(in.get(), type, rows, cols, means.get(), false, gpu.stream());
        reduce_rows(in.get(), type, rows, cols, soft.get(), true, gpu.stream());
        const auto mean_out = download_as_f32(gpu, means.get(), type, std::size_t(rows));
        const auto soft_out = download_as_f32(gpu, soft.get(), type, std::size_t(rows * cols));
        std::vector<double> mean_ref(rows), soft_ref(rows * cols);
        for (std::int64_t r = 0; r < rows; ++r) {
          double peak = -1e30, sum = 0;
          for (std::int64_t c = 0; c < cols; ++c) {
            mean_ref[r] += x[r * cols + c] / double(cols);
            peak = std::max(peak, double(x[r * cols + c]));
          }
          for (std::int64_t c = 0; c < cols; ++c) sum += std::exp(x[r * cols + c] - peak);
          for (std::int64_t c = 0; c < cols; ++c)
            soft_ref[r * cols + c] = std::exp(x[r * cols + c] - peak) / sum;
        }
        // Means of values in [-4, 4] can be near zero: compare against the values' scale.
        for (std::int64_t r = 0; r < rows; ++r)
          CHECK(std::abs(mean_out[r] - mean_ref[r]) < 4 * tolerance + 1e-6);
        CHECK(relative_error(soft_out, soft_ref) < 2 * tolerance + 1e-5);
      }
    }
    SUBCASE("copy: outputs gathered from a smaller input (scalar and 16-byte paths)") {
      for (const auto& [inputs, outputs] : {std::pair<int, int>{50, 120}, {64, 192}, {64, 64}}) {
        CAPTURE(inputs);
        std::vector<float> x;
        DeviceBuffer in = upload_as(gpu, random_floats(std::size_t(inputs), -1, 1), type, x);
        DeviceBuffer y(std::size_t(outputs) * element_bytes(type));
        poison(y);
        copy_op(in.get(), inputs, type, y.get(), outputs, gpu.stream());
        const auto out = download_as_f32(gpu, y.get(), type, std::size_t(outputs));
        for (int i = 0; i < outputs; ++i) CHECK(out[i] == x[i % inputs]);
      }
    }
    SUBCASE("bmm: batched products of two activations on cuBLASLt and the direct kernel") {
      const std::int64_t batch = 3, m = 5, n = 16, k = 32;
      const Precision p = type == ElementType::f32   ? Precision::fp32
                          : type == ElementType::f16 ? Precision::fp16
                                                     : Precision::bf16;
      std::vector<float> w, x;
      DeviceBuffer wb = upload_as(gpu, random_floats(batch * n * k, -1, 1), type, w);
      DeviceBuffer xb = upload_as(gpu, random_floats(batch * m * k, -1, 1), type, x);
      DeviceBuffer y(std::size_t(batch * m * n) * element_bytes(type));
      poison(y);
      const LtGemm gemm(gpu.lt(), p, m, n, k, k, k, nullptr, nullptr, nullptr, batch);
      gemm.run(wb.get(), xb.get(), y.get(), gpu.workspace(), gpu.workspace_bytes(), gpu.stream());
      const auto lt_out = download_as_f32(gpu, y.get(), type, std::size_t(batch * m * n));
      poison(y);
      bmm_direct(wb.get(), xb.get(), type, y.get(), batch, m, n, k, gpu.stream());
      const auto direct_out = download_as_f32(gpu, y.get(), type, std::size_t(batch * m * n));
      for (const auto* out_ptr : {&lt_out, &direct_out})
        for (std::int64_t b = 0; b < batch; ++b) {
          const auto& out = *out_ptr;
          const std::vector<float> wi(w.begin() + b * n * k, w.begin() + (b + 1) * n * k);
          const std::vector<float> xi(x.begin() + b * m * k, x.begin() + (b + 1) * m * k);
          const std::vector<float> oi(out.begin() + b * m * n, out.begin() + (b + 1) * m * n);
          CHECK(relative_error(oi, reference_gemm(xi, wi, m, n, k)) < 4 * tolerance + 1e-5);
        }
    }
  }
}

namespace {

// A two-layer model with ops before, between and after its layers.
constexpr const char* kModelWorkloads = R"({"bitplan_workloads": 1, "model": "m", "batch": 1,
    "precisions": ["fp16", "int8"],
    "layers": [{"name": "fc", "key": "gemm:m4:n64:k128", "op": "gemm", "m": 4, "n": 64, "k": 128,
                "input_elements": 512, "output_elements": 256},
               {"name": "fc2", "key": "gemm:m4:n64:k64", "op": "gemm", "m": 4, "n": 64, "k": 64,
                "input_elements": 256, "output_elements": 256}],
    "ops": [{"name": "embed", "op_type": "Gather", "key": "copy:i516:o512", "layers_before": 0},
            {"name": "bias", "op_type": "Add", "key": "eltwise:o256:i256x64", "layers_before": 1},
            {"name": "odd", "op_type": "Foo", "unsupported": "op Foo: no kernel", "layers_before": 1},
            {"name": "probs", "op_type": "Softmax", "key": "rownorm:r4:c64", "layers_before": 2},
            {"name": "scores", "op_type": "MatMul", "key": "bmm:b2:m4:n8:k32", "layers_before": 2}]})";

}  // namespace

TEST_CASE("a profile measures the model's other ops in the float types its layers write") {
  if (!gpu_available()) return;
  GpuContext gpu;
  const auto folder = std::filesystem::temp_directory_path() / "bitplan_cuda_ops_test";
  std::filesystem::create_directories(folder);
  const std::string workloads = (folder / "w.json").string(), out = (folder / "p.yaml").string();
  std::filesystem::remove(out);
  std::ofstream(workloads) << kModelWorkloads;
  ProfileOptions options;
  options.workloads = {workloads};
  options.out = out;
  options.ceilings = false;
  options.timing.min_repeats = 5;
  options.timing.budget_ms = 1;
  options.precisions = {Precision::fp32, Precision::int8};
  run_profile(gpu, options);
  const ProfileFile profile = ProfileFile::load_or_empty(out);
  // fp32 layers write fp32; int8 layers write fp16 beside their codes.
  for (const char* key :
       {"copy:i516:o512", "eltwise:o256:i256x64", "rownorm:r4:c64", "bmm:b2:m4:n8:k32"}) {
    CAPTURE(key);
    CHECK(profile.has_entry(key, "fp32"));
    CHECK(profile.has_entry(key, "fp16"));
    CHECK(!profile.has_entry(key, "bf16"));
  }
  std::filesystem::remove_all(folder);
}

TEST_CASE("a workloads file runs as a whole model: layers and other ops in order") {
  if (!gpu_available()) return;
  GpuContext gpu;
  const auto folder = std::filesystem::temp_directory_path() / "bitplan_cuda_model_chain_test";
  std::filesystem::create_directories(folder);
  const std::string workloads = (folder / "w.json").string(), out = (folder / "c.json").string();
  std::ofstream(workloads) << kModelWorkloads;
  ChainOptions options;
  options.model_workloads = {workloads};
  options.model_precisions = {Precision::fp32, Precision::int8};
  options.out = out;
  options.timing.min_repeats = 5;
  options.timing.budget_ms = 1;
  run_chains(gpu, options);
  const nlohmann::json results = nlohmann::json::parse(std::ifstream(out));
  REQUIRE(results["results"].size() == 2);
  for (const auto& r : results["results"]) {
    CAPTURE(r.dump());
    REQUIRE(!r.contains("unsupported"));
    CHECK(r["layers"] == 2);
    CHECK(r["ops"] == 4);
    CHECK(r["ops_without_kernel"] == 1);
    CHECK(r["median_us"].get<double>() > 0);
    // As one CUDA graph: no host launches between the steps, so never much slower.
    REQUIRE(r.contains("graph_median_us"));
    CHECK(r["graph_median_us"].get<double>() > 0);
    CHECK(r["graph_median_us"].get<double>() <= 1.1 * r["median_us"].get<double>());
    // The bias add between the int8 layers needs fp16, so the first writes no codes: fp16 ->
    // int8 before each int8 layer (the leading gather runs in fp16, the first layer's float
    // type). fp32 converts nothing.
    CHECK(r["chained"] == 0);
    CHECK(r["conversions"] == (r["precision"] == "int8" ? 2 : 0));
  }
  std::filesystem::remove_all(folder);
}

TEST_CASE(
    "int8 GEMMs run on any of cuBLASLt's offered algorithms, and say when one is not offered") {
  if (!gpu_available()) return;
  GpuContext gpu;
  const LayerShape shape = parse_layer_key("gemm:m64:n64:k128");
  CHECK(times_gemm_algorithms(Precision::int8));
  CHECK(times_gemm_algorithms(Precision::int8_chained));
  CHECK(!times_gemm_algorithms(Precision::fp16));
  int ran = 0;
  for (int rank = 0; rank < LtGemm::kMaxAlgorithms; ++rank) {
    LayerRunOptions options;
    options.gemm_algorithm = rank;
    try {
      auto run = make_layer_run(gpu, shape, Precision::int8, options);
      run->run(0);
      gpu.synchronize();
      CHECK(run->implementation().find("heuristic #" + std::to_string(rank)) != std::string::npos);
      ++ran;
    } catch (const Unsupported& e) {
      CHECK_MESSAGE(std::string(e.what()).find("offers") != std::string::npos, e.what());
    }
  }
  CHECK(ran >= 1);
  LayerRunOptions beyond;
  beyond.gemm_algorithm = LtGemm::kMaxAlgorithms;
  CHECK_THROWS_AS(make_layer_run(gpu, shape, Precision::int8, beyond), Unsupported);
}
