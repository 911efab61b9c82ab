// IDX files (the MNIST family's "*-ubyte" format): a 4-byte magic number (two zero bytes, a
// type code, the number of dimensions), one big-endian uint32 per dimension, then the
// elements in row-major order, big-endian.
#pragma once

#include <cstdint>
#include <filesystem>

#include "core/tensor.hpp"

namespace bitplan {

// The largest IDX file read_idx accepts by default, compressed or decompressed: far above
// any real IDX data set, low enough that a hostile header or gzip bomb cannot exhaust memory.
inline constexpr std::uint64_t kMaxIdxBytes = std::uint64_t{4} << 30;

// Reads an IDX file, raw or gzip-compressed (recognised by its magic bytes, not its name).
// Element types: uint8 (0x08), int8 (0x09), int32 (0x0C), float32 (0x0D), float64 (0x0E);
// int16 (0x0B) has no bitplan dtype and is reported as unsupported. The tensor's dims are
// the header's. Every size the header declares is checked against the real (decompressed)
// length before the tensor is allocated, and decompression stops once it passes
// `max_bytes`; any mismatch fails with a message naming the file.
Tensor read_idx(const std::filesystem::path& path, std::uint64_t max_bytes = kMaxIdxBytes);

}  // namespace bitplan
