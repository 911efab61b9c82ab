#include "executor/kernels/w3a8.hpp"

namespace bitplan::kernels {
namespace {

// Where (k, n) lives in the packed bytes (w3a8.hpp): its byte j of plane A (B and C follow
// at P and 2·P) and its code index t = 4q + s.
struct W3Place {
  std::size_t a;
  int t;
};

W3Place w3_place(const PackedW3a8& p, std::int64_t k, std::int64_t n) {
  const std::int64_t in_group = k % p.group, quarter = p.panel / 4, col = n % p.panel;
  const std::int64_t octet = (k / p.group) * (p.group_padded / 8) + in_group / 8;
  return {static_cast<std::size_t>((n / p.panel) * p.panel_bytes() + octet * 3 * p.panel +
                                   (col % quarter) * 4 + in_group % 4),
          static_cast<int>(4 * (in_group / 4 % 2) + col / quarter)};
}

// Code t of the three bytes a[0], a[P], a[2P] (the table of w3a8.hpp).
std::int32_t w3_read(const std::uint8_t* a, std::int64_t P, int t) {
  if (t < 6) return (a[t / 2 * P] >> (3 * (t % 2))) & 7;
  return ((a[(t - 6) * P] >> 6) & 3) | (((a[2 * P] >> t) & 1) << 2);
}

void w3_write(std::uint8_t* a, std::int64_t P, int t, int c) {
  const auto put = [](std::uint8_t& byte, int bits) {
    byte = static_cast<std::uint8_t>(byte | bits);
  };
  if (t < 6) {
    put(a[t / 2 * P], c << (3 * (t % 2)));
  } else {
    put(a[(t - 6) * P], (c & 3) << 6);
    put(a[2 * P], (c >> 2) << t);
  }
}

}  // namespace

std::int64_t w3a8_panel_width(Isa isa) {
  return isa == Isa::avx512_vnni ? 64 : 32;
}

PackedW3a8 pack_w3a8(const W4a32Source& src, Isa isa) {
  PackedW3a8 p;
  pack_per_token_metadata(src, isa, "W3A8", 0, 7, 8, w3a8_panel_width(isa), p);
  p.codes.assign(static_cast<std::size_t>(p.panels * p.panel_bytes()), 0);
  for (std::int64_t k = 0; k < p.k; ++k)
    for (std::int64_t n = 0; n < p.n; ++n) {
      const W3Place at = w3_place(p, k, n);
      w3_write(p.codes.data() + at.a, p.panel, at.t,
               src.codes[k * src.stride_k + n * src.stride_n]);
    }
  return p;
}

int packed_code(const PackedW3a8& p, std::int64_t k, std::int64_t n) {
  const W3Place at = w3_place(p, k, n);
  return w3_read(p.codes.data() + at.a, p.panel, at.t);
}

namespace detail {

// The definition (per_token_panel_scalar) on the codes read back from the panel.
void w3a8_panel_scalar(const PackedW3a8& w, std::int64_t panel, const W4a8Activations& a,
                       std::int64_t row0, std::int64_t m, float* y, std::int64_t ldy) {
  const std::int64_t P = w.panel, quarter = P / 4, octets = w.group_padded / 8;
  const std::uint8_t* codes = w.codes.data() + panel * w.panel_bytes();
  per_token_panel_scalar(w, panel, a, row0, m, y, ldy,
                         [&](std::int64_t g, std::int64_t kk, std::int64_t j) -> std::int32_t {
                           const std::uint8_t* planes =
                               codes + (g * octets + kk / 8) * 3 * P + (j % quarter) * 4 + kk % 4;
                           return w3_read(planes, P,
                                          static_cast<int>(4 * (kk / 4 % 2) + j / quarter));
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
