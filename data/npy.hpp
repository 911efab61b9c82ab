// NumPy .npy files (format versions 1.0, 2.0 and 3.0): the magic "\x93NUMPY", a version, a
// little-endian header length, a Python dict literal {'descr', 'fortran_order', 'shape'}
// and the raw array data.
#pragma once

#include <filesystem>

#include "core/tensor.hpp"

namespace bitplan {

// Reads a C-order, little-endian array of float32, float64, uint8, int8, int32, int64 or
// bool ('<f4', '<f8', '|u1', '|i1', '<i4', '<i8', '|b1'). The header length and the shape's
// byte size are checked against the file size before the tensor is allocated. Malformed
// files fail as invalid input; well-formed arrays bitplan cannot hold (big-endian, Fortran
// order, other dtypes, structured arrays) fail as unsupported, with the fix in the message.
Tensor read_npy(const std::filesystem::path& path);

// Writes `tensor` as a version 1.0 .npy file (2.0 only when the header outgrows 1.0's
// 64 KiB, as NumPy does), atomically: readers never see half a file.
void write_npy(const std::filesystem::path& path, const Tensor& tensor);

}  // namespace bitplan
