// GPU tests of the weight-only kernels: the W4A16 decode kernels
// (backends/cuda/w4a16_decode.hpp), every compiled variant and w4a16_gemm's choice by m, and
// the W8A16 kernel's variants (w8a16.cu), against a CPU reference on shapes that leave every
// kernel a ragged edge. Skipped (tests/skip.hpp) where no GPU is usable.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "backends/cuda/check.hpp"
#include "backends/cuda/kernels.hpp"
#include "backends/cuda/runtime.hpp"
#include "backends/cuda/w4a16_decode.hpp"
#include "tests/gpu/gpu_test_util.hpp"

namespace cuda_w4a16_decode_test {

using namespace bitplan::cuda;

using bitplan::testing::gpu_available;
using bitplan::testing::rng;

// Uploads values that fp16 holds exactly (the callers' choice), converting on the GPU.
DeviceBuffer upload_f16(const GpuContext& gpu, const std::vector<float>& values) {
  DeviceBuffer f32(values.size() * 4), f16(values.size() * 2);
  check_cuda(cudaMemcpy(f32.get(), values.data(), values.size() * 4, cudaMemcpyHostToDevice),
             "uploading test data");
  convert(f32.get(), ElementType::f32, f16.get(), ElementType::f16, std::int64_t(values.size()),
          1.0f, gpu.stream());
  gpu.synchronize();
  return f16;
}

std::vector<float> download_f16(const GpuContext& gpu, const DeviceBuffer& f16,
                                std::int64_t count) {
  DeviceBuffer f32(static_cast<std::size_t>(count) * 4);
  convert(f16.get(), ElementType::f16, f32.get(), ElementType::f32, count, 1.0f, gpu.stream());
  std::vector<float> host(static_cast<std::size_t>(count));
  gpu.synchronize();
  check_cuda(cudaMemcpy(host.data(), f32.get(), host.size() * 4, cudaMemcpyDeviceToHost),
             "downloading results");
  return host;
}

// One weight matrix, packed and uploaded, with its dequantised fp32 copy for the reference.
struct Weights {
  W4Layout layout;
  DeviceBuffer packed, scales;
  std::vector<float> dequantised;  // [n][k]: (q - 8) * scale, exactly as the kernels see it
};

Weights make_weights(std::int64_t n, std::int64_t k) {
  Weights w;
  w.layout = w4_layout(n, k);
  const std::int64_t groups = k / w.layout.group;
  std::uniform_int_distribution<int> nibble(0, 15), step(0, 15);
  std::vector<std::uint8_t> q(static_cast<std::size_t>(n * k));
  for (auto& v : q) v = static_cast<std::uint8_t>(nibble(rng()));
  // (16 + s) / 512: exact in fp16, so w4_pack's rounding leaves them unchanged.
  std::vector<float> group_scales(static_cast<std::size_t>(n * groups));
  for (auto& s : group_scales) s = float(16 + step(rng())) / 512.0f;
  std::vector<std::uint8_t> packed;
  std::vector<std::uint16_t> chunk_scales;
  w4_pack(w.layout, q, group_scales, packed, chunk_scales);
  w.packed = DeviceBuffer(packed.size());
  w.scales = DeviceBuffer(chunk_scales.size() * 2);
  check_cuda(cudaMemcpy(w.packed.get(), packed.data(), packed.size(), cudaMemcpyHostToDevice),
             "uploading packed weights");
  check_cuda(cudaMemcpy(w.scales.get(), chunk_scales.data(), chunk_scales.size() * 2,
                        cudaMemcpyHostToDevice),
             "uploading scales");
  w.dequantised.resize(q.size());
  for (std::int64_t j = 0; j < n; ++j)
    for (std::int64_t kk = 0; kk < k; ++kk)
      w.dequantised[j * k + kk] =
          float(int(q[j * k + kk]) - 8) * group_scales[j * groups + kk / w.layout.group];
  return w;
}

// Activations i / 64 for integers i in [-64, 64]: exact in fp16.
std::vector<float> make_activations(std::int64_t count) {
  std::uniform_int_distribution<int> i(-64, 64);
  std::vector<float> x(static_cast<std::size_t>(count));
  for (auto& v : x) v = float(i(rng())) / 64.0f;
  return x;
}

// ||out - ref|| / ||ref|| with Y[m][n] = X[m][k] * W[n][k]^T in double.
double relative_error(const std::vector<float>& out, const std::vector<float>& x,
                      const std::vector<float>& w, std::int64_t m, std::int64_t n, std::int64_t k) {
  double num = 0, den = 0;
  for (std::int64_t i = 0; i < m; ++i)
    for (std::int64_t j = 0; j < n; ++j) {
      double ref = 0;
      for (std::int64_t q = 0; q < k; ++q) ref += double(x[i * k + q]) * w[j * k + q];
      const double d = out[i * n + j] - ref;
      num += d * d;
      den += ref * ref;
    }
  return std::sqrt(num / den);
}

// k: not a multiple of the 128-k chunk (one scale group of k, the last chunk partly past k),
// a multiple of 8 (the decode kernels' 16-byte activation loads); or several whole groups.
// n: not a multiple of 8 nor of any variant's columns per block (8, 16, 32).
struct Case {
  std::int64_t n, k;
};
constexpr Case kCases[] = {{44, 200}, {37, 1000}, {269, 264}, {75, 512}};

TEST_CASE("kDecodeChoices names compiled decode variants, and every name is unique") {
  // Host only: runs where no GPU is usable too.
  for (std::int64_t m = 1; m <= 17; ++m)
    for (const std::int64_t n : {1, 1024, 4096, 8192, 16384, 28672}) {
      CAPTURE(m);
      CAPTURE(n);
      CHECK_NOTHROW(w4a16_kernel_name(m, n));
    }
  const std::vector<W4DecodeVariant>& variants = w4_decode_variants();
  for (std::size_t i = 0; i < variants.size(); ++i) {
    CAPTURE(variants[i].name);
    CHECK(find_w4_decode_variant(variants[i].name) == &variants[i]);
  }
  CHECK(find_w4_decode_variant("no_such_variant") == nullptr);
}

TEST_CASE("W4A16 decode variants match a CPU reference for m = 1..5 and ragged n, k") {
  if (!gpu_available()) return;
  GpuContext gpu;
  for (const Case& c : kCases) {
    const Weights w = make_weights(c.n, c.k);
    for (std::int64_t m = 1; m <= 16; m = m < 5 ? m + 1 : m * 2) {  // 1..5, 10 (mma16)
      const std::vector<float> x = make_activations(m * c.k);
      const DeviceBuffer dx = upload_f16(gpu, x);
      DeviceBuffer y(static_cast<std::size_t>(m * c.n) * 2);
      for (const W4DecodeVariant& v : w4_decode_variants()) {
        CAPTURE(v.name);
        CAPTURE(c.n);
        CAPTURE(c.k);
        CAPTURE(m);
        const W4DecodeArgs args{
            dx.get(), c.k, w.packed.as<std::uint8_t>(), w.scales.get(), w.layout, m, y.get()};
        const std::string declines = w4_decode_declines(v, args);
        CHECK(declines.empty() == (m <= v.max_m));
        if (!declines.empty()) continue;
        check_cuda(cudaMemset(y.get(), 0xFF, y.bytes()), "poisoning");  // NaN if unwritten
        check_cuda(v.launch(args, gpu.stream()), "launching");
        const double error =
            relative_error(download_f16(gpu, y, m * c.n), x, w.dequantised, m, c.n, c.k);
        CAPTURE(error);
        CHECK(error < 2e-3);  // exact products, fp32 sums: only the fp16 output rounds
      }
    }
  }
}

TEST_CASE("w4a16_gemm's kernel choice by m computes the GEMM, decode path or not") {
  if (!gpu_available()) return;
  GpuContext gpu;
  // k = 100: activation rows not a multiple of 8 halves, so the decode kernels decline and
  // w4a16_gemm runs the tile kernel instead.
  // n = 1100, 4100, 8200, 16392: the rows of kDecodeChoices from n = 1024, 4096, 8192, 16384.
  for (const Case& c : {Case{44, 200}, Case{269, 264}, Case{21, 100}, Case{1100, 264},
                        Case{4100, 264}, Case{8200, 264}, Case{16392, 264}}) {
    const Weights w = make_weights(c.n, c.k);
    for (std::int64_t m = 1; m <= 17; ++m) {  // every row of kDecodeChoices and beyond
      CAPTURE(w4a16_kernel_name(m, c.n));
      CAPTURE(c.k);
      CAPTURE(m);
      const std::vector<float> x = make_activations(m * c.k);
      const DeviceBuffer dx = upload_f16(gpu, x);
      DeviceBuffer y(static_cast<std::size_t>(m * c.n) * 2);
      check_cuda(cudaMemset(y.get(), 0xFF, y.bytes()), "poisoning");
      w4a16_gemm(dx.get(), c.k, w.packed.as<std::uint8_t>(), w.scales.get(), w.layout, m, y.get(),
                 gpu.stream());
      const double error =
          relative_error(download_f16(gpu, y, m * c.n), x, w.dequantised, m, c.n, c.k);
      CAPTURE(error);
      CHECK(error < 2e-3);
    }
  }
  const W4DecodeVariant& any = w4_decode_variants().front();
  const W4DecodeArgs misaligned{nullptr, 100, nullptr, nullptr, w4_layout(8, 100), 1, nullptr};
  CHECK(w4_decode_declines(any, misaligned).find("multiples of 8") != std::string::npos);
}

// ---- W8A16 ------------------------------------------------------------------------------

struct Weights8 {
  W8Layout layout;
  DeviceBuffer packed, scales;
  std::vector<float> dequantised;  // [n][k]: q * scale, exactly as the kernel sees it
};

Weights8 make_weights8(std::int64_t n, std::int64_t k) {
  Weights8 w;
  w.layout = w8_layout(n, k);
  const std::int64_t groups = k / w.layout.group;
  std::uniform_int_distribution<int> code(-128, 127), step(0, 15);
  std::vector<std::int8_t> q(static_cast<std::size_t>(n * k));
  for (auto& v : q) v = static_cast<std::int8_t>(code(rng()));
  std::vector<float> group_scales(static_cast<std::size_t>(n * groups));
  for (auto& s : group_scales) s = float(16 + step(rng())) / 4096.0f;  // exact in fp16
  std::vector<std::uint8_t> packed;
  std::vector<std::uint16_t> scales;
  w8_pack(w.layout, q, group_scales, packed, scales);
  w.packed = DeviceBuffer(packed.size());
  w.scales = DeviceBuffer(scales.size() * 2);
  check_cuda(cudaMemcpy(w.packed.get(), packed.data(), packed.size(), cudaMemcpyHostToDevice),
             "uploading packed weights");
  check_cuda(cudaMemcpy(w.scales.get(), scales.data(), scales.size() * 2, cudaMemcpyHostToDevice),
             "uploading scales");
  w.dequantised.resize(q.size());
  for (std::int64_t j = 0; j < n; ++j)
    for (std::int64_t kk = 0; kk < k; ++kk)
      w.dequantised[j * k + kk] =
          float(q[j * k + kk]) * group_scales[j * groups + kk / w.layout.group];
  return w;
}

// The host half of the W8A16 kernel's contract, where no GPU is needed: w8_pack's bytes, read
// by each lane as w8a16_kernel reads them and placed where PTX's mma.m16n8k16 fragment
// layout puts each register (A 16x16 row-major: a0a1 (g, 2t..), a2a3 (g + 8, 2t..), a4a5
// (g, 2t + 8..), a6a7 (g + 8, 2t + 8..); B 16x8: b0b1 (2t.., g), b2b3 (2t + 8.., g); C 16x8:
// c0c1 (g, 2t..), c2c3 (g + 8, 2t..)), multiply to X * W^T. A wrong byte order, K
// permutation or column map fails here before any GPU runs.
TEST_CASE("w8_pack's layout is what the W8A16 kernel's fragments assume (host emulation)") {
  for (const std::int64_t n : {1, 1024, 8192, 16384, 49152}) CHECK_NOTHROW(w8a16_kernel_name(n));
  const Case c{37, 300};
  const std::int64_t m = 5;  // rows of B (x); at most 8 per block
  const W8Layout l = w8_layout(c.n, c.k);
  REQUIRE(l.group == c.k);  // 300: one scale per column
  std::uniform_int_distribution<int> code(-128, 127);
  std::vector<std::int8_t> q(static_cast<std::size_t>(c.n * c.k));
  for (auto& v : q) v = static_cast<std::int8_t>(code(rng()));
  std::vector<float> scales(static_cast<std::size_t>(c.n), 1.0f);
  std::vector<std::uint8_t> packed;
  std::vector<std::uint16_t> packed_scales;
  w8_pack(l, q, scales, packed, packed_scales);
  const std::vector<float> x = make_activations(m * c.k);
  const auto x_at = [&](std::int64_t row, std::int64_t kk) {
    return row < m && kk < c.k ? double(x[row * c.k + kk]) : 0.0;
  };
  const std::int64_t chunks = l.padded_k / 32;
  std::vector<double> y(static_cast<std::size_t>(l.padded_n * 8), 0.0);  // [column][row]
  for (std::int64_t group = 0; group < l.padded_n / 16; ++group)
    for (std::int64_t chunk = 0; chunk < chunks; ++chunk)
      for (int step = 0; step < 2; ++step) {  // the kernel's two mma per chunk
        double a[16][16] = {}, b[16][8] = {};
        for (int lane = 0; lane < 32; ++lane) {
          const int g = lane / 4, t = lane % 4;
          const std::uint8_t* bytes = &packed[((group * chunks + chunk) * 32 + lane) * 16];
          // Words x, z (step 0) or y, w (step 1): columns g and g + 8; bytes 0-1 then 2-3.
          const auto code_at = [&](int word, int byte) {
            return double(int(bytes[4 * word + byte]) - 128);
          };
          const int column_g = step, column_g8 = 2 + step;
          a[g][2 * t] = code_at(column_g, 0), a[g][2 * t + 1] = code_at(column_g, 1);
          a[g + 8][2 * t] = code_at(column_g8, 0), a[g + 8][2 * t + 1] = code_at(column_g8, 1);
          a[g][2 * t + 8] = code_at(column_g, 2), a[g][2 * t + 9] = code_at(column_g, 3);
          a[g + 8][2 * t + 8] = code_at(column_g8, 2), a[g + 8][2 * t + 9] = code_at(column_g8, 3);
          // x[g][32 chunk + 8t .. + 7]: halves 0-3 for step 0, 4-7 for step 1.
          const std::int64_t k0 = chunk * 32 + 8 * t + 4 * step;
          b[2 * t][g] = x_at(g, k0), b[2 * t + 1][g] = x_at(g, k0 + 1);
          b[2 * t + 8][g] = x_at(g, k0 + 2), b[2 * t + 9][g] = x_at(g, k0 + 3);
        }
        for (int row = 0; row < 16; ++row)
          for (int col = 0; col < 8; ++col) {
            double d = 0;
            for (int kk = 0; kk < 16; ++kk) d += a[row][kk] * b[kk][col];
            // C row = column `row` of the group, C column = activation row `col`.
            y[(group * 16 + row) * 8 + col] += d;
          }
      }
  int wrong = 0;
  for (std::int64_t j = 0; j < c.n; ++j)
    for (std::int64_t row = 0; row < m; ++row) {
      double expected = 0;
      for (std::int64_t kk = 0; kk < c.k; ++kk) expected += double(q[j * c.k + kk]) * x_at(row, kk);
      if (std::fabs(y[j * 8 + row] - expected) > 1e-9 * (1 + std::fabs(expected))) ++wrong;
    }
  CHECK(wrong == 0);
  // Scales: [16-column group][128-k group][16 columns]; padding columns hold zero.
  const std::int64_t scale_groups = l.padded_k / 128;
  for (std::int64_t j = 0; j < l.padded_n; ++j) {
    const std::uint16_t bits = packed_scales[((j / 16) * scale_groups) * 16 + j % 16];
    CHECK(bits == (j < c.n ? 0x3C00 : 0));  // fp16 1.0 or 0
  }
}

TEST_CASE("W8A16 variants and w8a16_gemm match a CPU reference for m = 1..17 and ragged n, k") {
  if (!gpu_available()) return;
  GpuContext gpu;
  // k = 100: rows not a multiple of 8 halves (the scalar activation path); 200, 1000: one
  // scale per channel, the last chunk partly past k; 512: four groups of 128. n: not a
  // multiple of 16 nor of a block's columns; 1100, 8200, 16400: kW8Choices' rows from n = 1024,
  // 8192 and 16384.
  const Case cases[] = {{44, 200}, {37, 1000},  {269, 264},  {75, 512},
                        {21, 100}, {1100, 264}, {8200, 136}, {16400, 264}};
  for (const Case& c : cases) {
    const Weights8 w = make_weights8(c.n, c.k);
    for (const std::int64_t m : {1, 2, 3, 5, 8, 10, 17}) {
      const std::vector<float> x = make_activations(m * c.k);
      const DeviceBuffer dx = upload_f16(gpu, x);
      DeviceBuffer y(static_cast<std::size_t>(m * c.n) * 2);
      const W8A16Args args{dx.get(), c.k,    w.packed.as<std::uint8_t>(), w.scales.get(), w.layout,
                           m,        y.get()};
      std::vector<std::pair<std::string, std::function<void()>>> runs;
      for (const W8A16Variant& v : w8a16_variants())
        runs.emplace_back(v.name, [&, launch = v.launch] {
          check_cuda(launch(args, gpu.stream()), "launching");
        });
      runs.emplace_back("w8a16_gemm (" + w8a16_kernel_name(c.n) + ")", [&] {
        w8a16_gemm(dx.get(), c.k, w.packed.as<std::uint8_t>(), w.scales.get(), w.layout, m, y.get(),
                   gpu.stream());
      });
      for (const auto& [name, run] : runs) {
        CAPTURE(name);
        CAPTURE(c.n);
        CAPTURE(c.k);
        CAPTURE(m);
        check_cuda(cudaMemset(y.get(), 0xFF, y.bytes()), "poisoning");  // NaN if unwritten
        run();
        const double error =
            relative_error(download_f16(gpu, y, m * c.n), x, w.dequantised, m, c.n, c.k);
        CAPTURE(error);
        CHECK(error < 2e-3);  // exact products, fp32 sums: only the fp16 output rounds
      }
    }
  }
}

TEST_CASE("w8_dequantize inverts w8_pack") {
  if (!gpu_available()) return;
  GpuContext gpu;
  const Case c{37, 300};
  const Weights8 w = make_weights8(c.n, c.k);
  DeviceBuffer dense(static_cast<std::size_t>(w.layout.padded_n * w.layout.padded_k) * 2);
  w8_dequantize(w.packed.as<std::uint8_t>(), w.scales.get(), w.layout, dense.get(), gpu.stream());
  const std::vector<float> out = download_f16(gpu, dense, w.layout.padded_n * w.layout.padded_k);
  int wrong = 0;
  for (std::int64_t j = 0; j < w.layout.padded_n; ++j)
    for (std::int64_t kk = 0; kk < w.layout.padded_k; ++kk) {
      const float expected = j < c.n && kk < c.k ? w.dequantised[j * c.k + kk] : 0.0f;
      const float got = out[j * w.layout.padded_k + kk];
      if (std::fabs(got - expected) > 1e-3f * std::fabs(expected) + 1e-7f) ++wrong;
    }
  CHECK(wrong == 0);
}

}  // namespace cuda_w4a16_decode_test
