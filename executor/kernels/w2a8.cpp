#include "executor/kernels/w2a8.hpp"

namespace bitplan::kernels {
namespace {

std::size_t w2_code_byte(const PackedW2a8& p, std::int64_t k, std::int64_t n) {
  const std::int64_t in_group = k % p.group, quarter = p.panel / 4;
  const std::int64_t quad = (k / p.group) * (p.group_padded / 4) + in_group / 4;
  return static_cast<std::size_t>((n / p.panel) * p.panel_bytes() + quad * p.panel +
                                  (n % p.panel % quarter) * 4 + in_group % 4);
}

int w2_code_shift(const PackedW2a8& p, std::int64_t n) {
  return static_cast<int>(2 * (n % p.panel / (p.panel / 4)));
}

}  // namespace

std::int64_t w2a8_panel_width(Isa isa) {
  return isa == Isa::avx512_vnni ? 64 : 32;
}

PackedW2a8 pack_w2a8(const W4a32Source& src, Isa isa) {
  PackedW2a8 p;
  pack_per_token_metadata(src, isa, "W2A8", 0, 3, 4, w2a8_panel_width(isa), p);
  p.codes.assign(static_cast<std::size_t>(p.panels * p.panel_bytes()), 0);
  for (std::int64_t k = 0; k < p.k; ++k)
    for (std::int64_t n = 0; n < p.n; ++n) {
      const int c = src.codes[k * src.stride_k + n * src.stride_n];
      std::uint8_t& byte = p.codes[w2_code_byte(p, k, n)];
      byte = static_cast<std::uint8_t>(byte | (c << w2_code_shift(p, n)));
    }
  return p;
}

int packed_code(const PackedW2a8& p, std::int64_t k, std::int64_t n) {
  return (p.codes[w2_code_byte(p, k, n)] >> w2_code_shift(p, n)) & 3;
}

namespace detail {

// The definition (per_token_panel_scalar) on the codes read back from the panel.
void w2a8_panel_scalar(const PackedW2a8& w, std::int64_t panel, const W4a8Activations& a,
                       std::int64_t row0, std::int64_t m, float* y, std::int64_t ldy) {
  const std::int64_t P = w.panel, quarter = P / 4, quads = w.group_padded / 4;
  const std::uint8_t* codes = w.codes.data() + panel * w.panel_bytes();
  per_token_panel_scalar(w, panel, a, row0, m, y, ldy,
                         [&](std::int64_t g, std::int64_t kk, std::int64_t j) -> std::int32_t {
                           const std::uint8_t b =
                               codes[(g * quads + kk / 4) * P + (j % quarter) * 4 + kk % 4];
                           return (b >> (2 * (j / quarter))) & 3;
                         });
}

}  // namespace detail

void w2a8_gemm(const PackedW2a8& w, const float* x, std::int64_t m, std::int64_t ldx, float* y,
               std::int64_t ldy, W4a8Activations& a, const GemmEpilogue& epilogue) {
  // Rows per pass over a panel (up to 64 columns: 16 rows fill the driver's tile).
  constexpr std::int64_t kW2a8RowBlock = 16;
  per_token_gemm<PackedW2a8>(
      w,
      per_token_panel_kernel<PackedW2a8>(w.isa, detail::w2a8_panel_scalar, detail::w2a8_panel_avx2,
                                         detail::w2a8_panel_avx512_vnni),
      kW2a8RowBlock, x, m, ldx, y, ldy, a, epilogue);
}

}  // namespace bitplan::kernels
