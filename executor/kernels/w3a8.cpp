#include "executor/kernels/w3a8.hpp"

namespace bitplan::kernels {
namespace {

// Where (k, n) lives in the packed bytes (w3a8.hpp): the byte of its low two bits, the byte
// of its high bit (the octet's last P bytes), and the bit positions in each.
struct W3Place {
  std::size_t low_byte, high_byte;
  int low_shift, high_bit;
};

W3Place w3_place(const PackedW3a8& p, std::int64_t k, std::int64_t n) {
  const std::int64_t in_group = k % p.group, quarter = p.panel / 4, col = n % p.panel;
  const std::int64_t octet = (k / p.group) * (p.group_padded / 8) + in_group / 8;
  const std::int64_t quad = in_group / 4 % 2, s = col / quarter;
  const std::int64_t base =
      (n / p.panel) * p.panel_bytes() + octet * 3 * p.panel + (col % quarter) * 4 + in_group % 4;
  return {static_cast<std::size_t>(base + quad * p.panel),
          static_cast<std::size_t>(base + 2 * p.panel), static_cast<int>(2 * s),
          static_cast<int>(4 * quad + s)};
}

}  // namespace

std::int64_t w3a8_panel_width(Isa isa) {
  return isa == Isa::avx512_vnni ? 64 : 32;
}

PackedW3a8 pack_w3a8(const W4a32Source& src, Isa isa) {
  PackedW3a8 p;
  pack_per_token_metadata(src, isa, "W3A8", 7, 8, w3a8_panel_width(isa), p);
  p.codes.assign(static_cast<std::size_t>(p.panels * p.panel_bytes()), 0);
  for (std::int64_t k = 0; k < p.k; ++k)
    for (std::int64_t n = 0; n < p.n; ++n) {
      const int c = src.codes[k * src.stride_k + n * src.stride_n];
      const W3Place at = w3_place(p, k, n);
      std::uint8_t &low = p.codes[at.low_byte], &high = p.codes[at.high_byte];
      low = static_cast<std::uint8_t>(low | ((c & 3) << at.low_shift));
      high = static_cast<std::uint8_t>(high | ((c >> 2) << at.high_bit));
    }
  return p;
}

int packed_code(const PackedW3a8& p, std::int64_t k, std::int64_t n) {
  const W3Place at = w3_place(p, k, n);
  return ((p.codes[at.low_byte] >> at.low_shift) & 3) |
         (((p.codes[at.high_byte] >> at.high_bit) & 1) << 2);
}

namespace detail {

// The definition (per_token_panel_scalar) on the codes read back from the panel.
void w3a8_panel_scalar(const PackedW3a8& w, std::int64_t panel, const W4a8Activations& a,
                       std::int64_t row0, std::int64_t m, float* y, std::int64_t ldy) {
  const std::int64_t P = w.panel, quarter = P / 4, octets = w.group_padded / 8;
  const std::uint8_t* codes = w.codes.data() + panel * w.panel_bytes();
  per_token_panel_scalar(w, panel, a, row0, m, y, ldy,
                         [&](std::int64_t g, std::int64_t kk, std::int64_t j) -> std::int32_t {
                           const std::int64_t quad = kk / 4 % 2, s = j / quarter;
                           const std::uint8_t* octet =
                               codes + (g * octets + kk / 8) * 3 * P + (j % quarter) * 4 + kk % 4;
                           return ((octet[quad * P] >> (2 * s)) & 3) |
                                  (((octet[2 * P] >> (4 * quad + s)) & 1) << 2);
                         });
}

}  // namespace detail

void w3a8_gemm(const PackedW3a8& w, const float* x, std::int64_t m, std::int64_t ldx, float* y,
               std::int64_t ldy, W4a8Activations& a, const GemmEpilogue& epilogue) {
  // Rows per pass over a panel (up to 64 columns: 16 rows fill the driver's tile).
  constexpr std::int64_t kW3a8RowBlock = 16;
  per_token_gemm<PackedW3a8>(
      w,
      per_token_panel_kernel<PackedW3a8>(w.isa, detail::w3a8_panel_scalar, detail::w3a8_panel_avx2,
                                         detail::w3a8_panel_avx512_vnni),
      kW3a8RowBlock, x, m, ldx, y, ldy, a, epilogue);
}

}  // namespace bitplan::kernels
