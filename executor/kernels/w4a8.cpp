#include "executor/kernels/w4a8.hpp"

namespace bitplan::kernels {

std::int64_t w4a8_panel_width(Isa isa) {
  return isa == Isa::avx512_vnni ? 32 : 16;
}

PackedW4a8 pack_w4a8(const W4a32Source& src, Isa isa) {
  PackedW4a8 p;
  pack_per_token_metadata(src, isa, "W4A8", 0, 15, 4, w4a8_panel_width(isa), p);
  p.codes.assign(static_cast<std::size_t>(p.panels * p.panel_bytes()), 0);
  const std::int64_t half = p.panel / 2, quad_bytes = 2 * p.panel;
  for (std::int64_t k = 0; k < p.k; ++k) {
    const std::int64_t g = k / p.group, in_group = k % p.group;
    const std::int64_t quad = g * (p.group_padded / 4) + in_group / 4;
    for (std::int64_t n = 0; n < p.n; ++n) {
      const int c = src.codes[k * src.stride_k + n * src.stride_n];
      const std::int64_t col = n % p.panel;
      std::uint8_t& byte = p.codes[static_cast<std::size_t>(
          (n / p.panel) * p.panel_bytes() + quad * quad_bytes + (col % half) * 4 + in_group % 4)];
      byte = static_cast<std::uint8_t>(byte | (c << (col < half ? 0 : 4)));
    }
  }
  return p;
}

int packed_code(const PackedW4a8& p, std::int64_t k, std::int64_t n) {
  const std::int64_t half = p.panel / 2, col = n % p.panel, in_group = k % p.group;
  const std::int64_t quad = (k / p.group) * (p.group_padded / 4) + in_group / 4;
  const std::uint8_t byte = p.codes[static_cast<std::size_t>(
      (n / p.panel) * p.panel_bytes() + quad * 2 * p.panel + (col % half) * 4 + in_group % 4)];
  return col < half ? byte & 0xF : byte >> 4;
}

namespace detail {

// The definition (per_token_panel_scalar) on the codes read back from the panel.
void w4a8_panel_scalar(const PackedW4a8& w, std::int64_t panel, const W4a8Activations& a,
                       std::int64_t row0, std::int64_t m, float* y, std::int64_t ldy) {
  const std::int64_t P = w.panel, half = P / 2, quads = w.group_padded / 4;
  const std::uint8_t* codes = w.codes.data() + panel * w.panel_bytes();
  per_token_panel_scalar(w, panel, a, row0, m, y, ldy,
                         [&](std::int64_t g, std::int64_t kk, std::int64_t j) -> std::int32_t {
                           const std::uint8_t b =
                               codes[(g * quads + kk / 4) * 2 * P + (j % half) * 4 + kk % 4];
                           return j < half ? b & 0xF : b >> 4;
                         });
}

}  // namespace detail

void w4a8_gemm(const PackedW4a8& w, const float* x, std::int64_t m, std::int64_t ldx, float* y,
               std::int64_t ldy, W4a8Activations& a, const GemmEpilogue& epilogue) {
  // Rows per pass over a panel: up to 32 rows' results in the driver's tile.
  constexpr std::int64_t kW4a8RowBlock = 32;
  per_token_gemm<PackedW4a8>(
      w,
      per_token_panel_kernel<PackedW4a8>(w.isa, detail::w4a8_panel_scalar, detail::w4a8_panel_avx2,
                                         detail::w4a8_panel_avx512_vnni),
      kW4a8RowBlock, x, m, ldx, y, ldy, a, epilogue);
}

}  // namespace bitplan::kernels
