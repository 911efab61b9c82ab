#include "data/idx.hpp"

#include <zlib.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cstring>
#include <functional>
#include <span>
#include <string>

#include "core/checked.hpp"
#include "core/error.hpp"
#include "data/input_file.hpp"

namespace bitplan {
namespace fs = std::filesystem;
namespace {

static_assert(std::endian::native == std::endian::little,
              "bitplan targets little-endian hosts; IDX data is byte-swapped unconditionally");

using Bytes = std::span<const unsigned char>;

// The magic number plus at most 255 dimensions of 4 bytes each.
constexpr std::uint64_t kMaxIdxHeaderBytes = 4 + 4 * 255;

bool is_gzip(std::string_view bytes) {
  return bytes.size() >= 2 && static_cast<unsigned char>(bytes[0]) == 0x1f &&
         static_cast<unsigned char>(bytes[1]) == 0x8b;
}

struct IdxLayout {
  DType dtype = DType::u8;
  Dims dims;
  std::uint64_t header_bytes = 0;
  std::uint64_t data_bytes = 0;
};

DType idx_dtype(unsigned char code, const fs::path& path) {
  switch (code) {
    case 0x08:
      return DType::u8;
    case 0x09:
      return DType::i8;
    case 0x0C:
      return DType::i32;
    case 0x0D:
      return DType::f32;
    case 0x0E:
      return DType::f64;
    case 0x0B:
      fail_unsupported("read IDX '{}': type code 0x0b (int16): bitplan has no int16 tensors",
                       path.string());
    default:
      fail_input(
          "read IDX '{}': type code 0x{:02x}: must be 0x08 (uint8), 0x09 (int8), 0x0b (int16), "
          "0x0c (int32), 0x0d (float32) or 0x0e (float64)",
          path.string(), code);
  }
}

// Validates the header in `head` (the first bytes of the decompressed file) against
// `total_bytes`, the file's real decompressed length.
IdxLayout parse_header(Bytes head, std::uint64_t total_bytes, const fs::path& path) {
  if (total_bytes < 4)
    fail_input("read IDX '{}': {} bytes: too short for the 4-byte magic number (truncated file?)",
               path.string(), total_bytes);
  if (head[0] != 0 || head[1] != 0)
    fail_input(
        "read IDX '{}': magic bytes {:02x} {:02x} {:02x} {:02x}: an IDX file starts with 00 00, "
        "a type code and the number of dimensions",
        path.string(), head[0], head[1], head[2], head[3]);
  IdxLayout layout;
  layout.dtype = idx_dtype(head[2], path);
  const unsigned ndims = head[3];
  if (ndims == 0)
    fail_input("read IDX '{}': 0 dimensions: an IDX file needs at least one", path.string());
  layout.header_bytes = 4 + 4 * std::uint64_t{ndims};
  if (total_bytes < layout.header_bytes)
    fail_input("read IDX '{}': {} bytes: the header of {} dimensions needs {} (truncated file?)",
               path.string(), total_bytes, ndims, layout.header_bytes);

  for (unsigned i = 0; i < ndims; ++i) {
    const unsigned char* p = head.data() + 4 + 4 * i;
    const std::uint32_t dim = (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) |
                              (std::uint32_t{p[2]} << 8) | std::uint32_t{p[3]};
    layout.dims.push_back(dim);
  }
  // Checked on the non-zero dims too: [2^32-1, 2^32-1, 0] holds no data, but later code
  // multiplying its first two dims (sample counts, strides) would overflow.
  const auto count = checked_product(layout.dims);
  if (!count)
    fail_input("read IDX '{}': dims {}: the product of the non-zero dims overflows 64 bits",
               path.string(), to_string(layout.dims));
  const auto data_bytes =
      checked_mul(static_cast<std::uint64_t>(*count), std::uint64_t{dtype_size(layout.dtype)});
  if (!data_bytes)
    fail_input("read IDX '{}': dims {} of {}: the data size overflows 64 bits", path.string(),
               to_string(layout.dims), dtype_name(layout.dtype));
  layout.data_bytes = *data_bytes;
  if (layout.data_bytes != total_bytes - layout.header_bytes)
    fail_input(
        "read IDX '{}': dims {} of {} need {} data bytes, but the file has {}: the header does "
        "not match the data (truncated or wrong file?)",
        path.string(), to_string(layout.dims), dtype_name(layout.dtype), layout.data_bytes,
        total_bytes - layout.header_bytes);
  return layout;
}

// Inflates `compressed` (one gzip member or several concatenated) and hands the output to
// `sink` in chunks. Fails once the output passes `max_bytes`, so a gzip bomb costs bounded
// time and no memory.
void gunzip(std::string_view compressed, std::uint64_t max_bytes, const fs::path& path,
            const std::function<void(Bytes)>& sink) {
  z_stream zs{};
  if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) throw std::bad_alloc();
  struct Cleanup {
    z_stream* zs;
    ~Cleanup() { inflateEnd(zs); }
  } cleanup{&zs};

  // zlib counts input in 32-bit uInt, so large inputs are fed in slices.
  constexpr std::size_t kMaxSlice = std::size_t{1} << 30;
  std::size_t fed = 0;
  std::array<unsigned char, 1 << 16> out;
  std::uint64_t total = 0;
  for (;;) {
    if (zs.avail_in == 0 && fed < compressed.size()) {
      const std::size_t slice = std::min(kMaxSlice, compressed.size() - fed);
      zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(compressed.data() + fed));
      zs.avail_in = static_cast<uInt>(slice);
      fed += slice;
    }
    zs.next_out = out.data();
    zs.avail_out = static_cast<uInt>(out.size());
    const int rc = inflate(&zs, Z_NO_FLUSH);
    const std::size_t produced = out.size() - zs.avail_out;
    total += produced;
    if (total > max_bytes)
      fail_input(
          "read IDX '{}': decompresses to more than {} bytes: the limit for IDX files (gzip "
          "bomb?)",
          path.string(), max_bytes);
    if (produced > 0) sink(Bytes(out.data(), produced));

    const bool input_left = zs.avail_in > 0 || fed < compressed.size();
    if (rc == Z_STREAM_END) {
      if (!input_left) return;
      inflateReset(&zs);  // another gzip member follows
    } else if (rc == Z_BUF_ERROR) {
      // No progress with fresh output space means the input ran out mid-stream.
      fail_input("read IDX '{}': the gzip stream ends early: the file is truncated", path.string());
    } else if (rc != Z_OK) {
      fail_input("read IDX '{}': corrupt gzip data: {}", path.string(),
                 zs.msg ? zs.msg : "inflate failed");
    }
  }
}

Tensor read_gzip_idx(std::string_view compressed, std::uint64_t max_bytes, const fs::path& path) {
  // Pass 1 measures the decompressed length (keeping the header bytes), so the header is
  // checked against the real length before anything the header asks for is allocated.
  std::string head;
  std::uint64_t total = 0;
  gunzip(compressed, max_bytes, path, [&](Bytes chunk) {
    const std::size_t keep = std::min<std::uint64_t>(chunk.size(), kMaxIdxHeaderBytes - head.size());
    head.append(reinterpret_cast<const char*>(chunk.data()), keep);
    total += chunk.size();
  });
  const IdxLayout layout = parse_header(
      Bytes(reinterpret_cast<const unsigned char*>(head.data()), head.size()), total, path);

  // Pass 2 decompresses again, straight into the tensor.
  Tensor tensor(layout.dtype, layout.dims);
  auto* dst = static_cast<unsigned char*>(tensor.raw());
  std::uint64_t position = 0;
  gunzip(compressed, max_bytes, path, [&](Bytes chunk) {
    // The header's bytes were parsed in pass 1; only the data after them is copied.
    const std::uint64_t begin = std::max(position, layout.header_bytes);
    const std::uint64_t end = position + chunk.size();
    if (end > begin)
      std::memcpy(dst + (begin - layout.header_bytes), chunk.data() + (begin - position),
                  end - begin);
    position = end;
  });
  return tensor;
}

void swap_to_native(Tensor& tensor) {
  const std::size_t size = dtype_size(tensor.dtype());
  auto* p = static_cast<unsigned char*>(tensor.raw());
  for (std::int64_t i = 0; i < tensor.numel(); ++i, p += size) std::reverse(p, p + size);
}

}  // namespace

Tensor read_idx(const fs::path& path, std::uint64_t max_bytes) {
  InputFile file(path, "IDX file");
  if (file.size() > max_bytes)
    fail_input("read IDX '{}': {} bytes: exceeds the limit of {} bytes for IDX files",
               path.string(), file.size(), max_bytes);
  std::string head(std::min(file.size(), kMaxIdxHeaderBytes), '\0');
  file.read(head.data(), head.size());

  Tensor tensor;
  if (is_gzip(head)) {
    const std::size_t head_size = head.size();
    std::string compressed = std::move(head);
    compressed.resize(file.size());
    file.read(compressed.data() + head_size, file.remaining());
    tensor = read_gzip_idx(compressed, max_bytes, path);
  } else {
    const IdxLayout layout = parse_header(
        Bytes(reinterpret_cast<const unsigned char*>(head.data()), head.size()), file.size(), path);
    tensor = Tensor(layout.dtype, layout.dims);
    // The head already holds the first data bytes; the rest come straight from the file.
    const std::uint64_t in_head = head.size() - layout.header_bytes;
    auto* dst = static_cast<unsigned char*>(tensor.raw());
    std::memcpy(dst, head.data() + layout.header_bytes, in_head);
    file.read(dst + in_head, layout.data_bytes - in_head);
  }
  if (dtype_size(tensor.dtype()) > 1) swap_to_native(tensor);
  return tensor;
}

}  // namespace bitplan
