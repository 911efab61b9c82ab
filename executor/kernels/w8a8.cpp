#include "executor/kernels/w8a8.hpp"

namespace bitplan::kernels {
namespace {

constexpr std::int64_t kW8a8Panel = 32;

std::size_t w8_code_index(const PackedW8a8& p, std::int64_t k, std::int64_t n) {
  const std::int64_t in_group = k % p.group;
  const std::int64_t quad = (k / p.group) * (p.group_padded / 4) + in_group / 4;
  return static_cast<std::size_t>((n / p.panel) * p.panel_bytes() + quad * 4 * p.panel +
                                  (n % p.panel) * 4 + in_group % 4);
}

}  // namespace

std::int64_t w8a8_panel_width(Isa) {
  return kW8a8Panel;
}

PackedW8a8 pack_w8a8(const W4a32Source& src, Isa isa) {
  PackedW8a8 p;
  pack_per_token_metadata(src, isa, "W8A8", -128, 127, 4, w8a8_panel_width(isa), p);
  p.codes.assign(static_cast<std::size_t>(p.panels * p.panel_bytes()), 0);
  for (std::int64_t k = 0; k < p.k; ++k)
    for (std::int64_t n = 0; n < p.n; ++n)
      p.codes[w8_code_index(p, k, n)] =
          static_cast<std::uint8_t>(src.codes[k * src.stride_k + n * src.stride_n]);
  return p;
}

int packed_code(const PackedW8a8& p, std::int64_t k, std::int64_t n) {
  return static_cast<std::int8_t>(p.codes[w8_code_index(p, k, n)]);
}

namespace detail {

// The definition (per_token_panel_scalar) on the codes read back from the panel.
void w8a8_panel_scalar(const PackedW8a8& w, std::int64_t panel, const W4a8Activations& a,
                       std::int64_t row0, std::int64_t m, float* y, std::int64_t ldy) {
  const std::int64_t P = w.panel, quads = w.group_padded / 4;
  const std::uint8_t* codes = w.codes.data() + panel * w.panel_bytes();
  per_token_panel_scalar(
      w, panel, a, row0, m, y, ldy,
      [&](std::int64_t g, std::int64_t kk, std::int64_t j) -> std::int32_t {
        return static_cast<std::int8_t>(codes[(g * quads + kk / 4) * 4 * P + j * 4 + kk % 4]);
      });
}

}  // namespace detail

void w8a8_gemm(const PackedW8a8& w, const float* x, std::int64_t m, std::int64_t ldx, float* y,
               std::int64_t ldy, W4a8Activations& a, const GemmEpilogue& epilogue) {
  // Rows per pass over a panel: up to 32 rows' results in the driver's tile.
  constexpr std::int64_t kW8a8RowBlock = 32;
  // No AVX2 path (see the header): a panel packed for AVX2 runs the definition.
  per_token_gemm<PackedW8a8>(
      w,
      per_token_panel_kernel<PackedW8a8>(w.isa, detail::w8a8_panel_scalar,
                                         detail::w8a8_panel_scalar, detail::w8a8_panel_avx512_vnni),
      kW8a8RowBlock, x, m, ldx, y, ldy, a, epilogue);
}

}  // namespace bitplan::kernels
