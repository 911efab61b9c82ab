#include <doctest/doctest.h>

#include <cstring>
#include <string>
#include <vector>

#include "data/idx.hpp"
#include "data_test_util.hpp"

namespace bitplan::data_idx_test {
namespace {

using test::check_error;
using test::gzip;
using test::idx_header;
using test::TempDir;
using test::write_bytes;

const std::string kPixels = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};

TEST_CASE("read_idx reads raw and gzip-compressed uint8 files alike") {
  TempDir dir;
  const std::string file = idx_header(0x08, {2, 2, 3}) + kPixels;
  // The names say nothing about compression: the reader goes by the magic bytes.
  for (const auto& path :
       {write_bytes(dir / "raw-ubyte", file), write_bytes(dir / "packed-ubyte", gzip(file)),
        write_bytes(dir / "misnamed.gz", file)}) {
    CAPTURE(path);
    const Tensor t = read_idx(path);
    CHECK(t.dtype() == DType::u8);
    CHECK(t.dims() == Dims{2, 2, 3});
    CHECK(std::string(static_cast<const char*>(t.raw()), t.nbytes()) == kPixels);
  }
}

TEST_CASE("read_idx converts big-endian int8, int32, float32 and float64 elements") {
  TempDir dir;
  SUBCASE("int8") {
    const Tensor t = read_idx(write_bytes(dir / "i8", idx_header(0x09, {3}) + "\xff\x7f\x80"));
    CHECK(t.to_int64_vector() == std::vector<std::int64_t>{-1, 127, -128});
  }
  SUBCASE("int32") {
    const std::string data = test::big_endian_u32(1) + test::big_endian_u32(0xfffffffe) +
                             test::big_endian_u32(0x01020304);
    const Tensor t = read_idx(write_bytes(dir / "i32", idx_header(0x0C, {1, 3}) + data));
    CHECK(t.dims() == Dims{1, 3});
    CHECK(t.to_int64_vector() == std::vector<std::int64_t>{1, -2, 0x01020304});
  }
  SUBCASE("float32") {
    std::string data;
    for (float v : {1.5f, -2.25f}) {
      std::uint32_t bits;
      std::memcpy(&bits, &v, 4);
      data += test::big_endian_u32(bits);
    }
    const Tensor t = read_idx(write_bytes(dir / "f32", gzip(idx_header(0x0D, {2}) + data)));
    CHECK(t.to_double_vector() == std::vector<double>{1.5, -2.25});
  }
  SUBCASE("float64") {
    const double v = -3.125;
    std::uint64_t bits;
    std::memcpy(&bits, &v, 8);
    const std::string data = test::big_endian_u32(static_cast<std::uint32_t>(bits >> 32)) +
                             test::big_endian_u32(static_cast<std::uint32_t>(bits));
    const Tensor t = read_idx(write_bytes(dir / "f64", idx_header(0x0E, {1}) + data));
    CHECK(t.to_double_vector() == std::vector<double>{-3.125});
  }
}

TEST_CASE("read_idx accepts concatenated gzip members, as gzip itself does") {
  TempDir dir;
  const std::string file = idx_header(0x08, {12}) + kPixels;
  const auto path = write_bytes(dir / "multi", gzip(file.substr(0, 7)) + gzip(file.substr(7)));
  CHECK(read_idx(path).dims() == Dims{12});
}

TEST_CASE("read_idx rejects malformed headers, naming the file and the rule") {
  TempDir dir;
  SUBCASE("missing file") {
    check_error([&] { read_idx(dir / "none"); }, {"none", "does not exist"});
  }
  SUBCASE("too short for the magic number") {
    const auto path = write_bytes(dir / "short", std::string("\0\0", 2));
    check_error([&] { read_idx(path); }, {"short", "2 bytes", "too short"});
  }
  SUBCASE("bad magic") {
    const auto path =
        write_bytes(dir / "magic", "\x01\x02\x08\x01" + test::big_endian_u32(1) + "x");
    check_error([&] { read_idx(path); }, {"magic", "01 02 08 01", "starts with 00 00"});
  }
  SUBCASE("unknown type code") {
    const auto path = write_bytes(dir / "type", idx_header(0x07, {1}) + "x");
    check_error([&] { read_idx(path); }, {"type", "type code 0x07", "must be 0x08"});
  }
  SUBCASE("int16 is unsupported rather than malformed") {
    const auto path = write_bytes(dir / "i16", idx_header(0x0B, {1}) + "xx");
    check_error([&] { read_idx(path); }, {"i16", "int16"}, ErrorKind::unsupported);
  }
  SUBCASE("no dimensions") {
    const auto path = write_bytes(dir / "rank0", idx_header(0x08, {}) + "x");
    check_error([&] { read_idx(path); }, {"rank0", "0 dimensions"});
  }
  SUBCASE("truncated header") {
    // Three dimensions declared, only one present.
    const auto path = write_bytes(dir / "head", idx_header(0x08, {2, 3, 4}).substr(0, 8));
    check_error([&] { read_idx(path); },
                {"head", "8 bytes", "the header of 3 dimensions needs 16"});
  }
  SUBCASE("truncated header, gzip-compressed") {
    const auto path = write_bytes(dir / "headgz", gzip(idx_header(0x08, {2, 3, 4}).substr(0, 10)));
    check_error([&] { read_idx(path); }, {"headgz", "10 bytes", "needs 16"});
  }
}

TEST_CASE("read_idx checks the declared size against the real data before allocating") {
  TempDir dir;
  SUBCASE("truncated data") {
    const auto path = write_bytes(dir / "trunc", idx_header(0x08, {2, 3}) + "12345");
    check_error([&] { read_idx(path); },
                {"trunc", "[2, 3] of uint8 need 6 data bytes, but the file has 5"});
  }
  SUBCASE("truncated data, gzip-compressed") {
    const auto path = write_bytes(dir / "truncgz", gzip(idx_header(0x0C, {2}) + "1234567"));
    check_error([&] { read_idx(path); },
                {"truncgz", "[2] of int32 need 8 data bytes, but the file has 7"});
  }
  SUBCASE("extra data") {
    const auto path = write_bytes(dir / "extra", idx_header(0x08, {2, 3}) + "1234567");
    check_error([&] { read_idx(path); }, {"extra", "need 6 data bytes, but the file has 7"});
  }
  SUBCASE("a huge declared size fails on the mismatch, not on allocation") {
    const auto path = write_bytes(dir / "huge", idx_header(0x0E, {65536, 65536, 65536}));
    check_error([&] { read_idx(path); }, {"huge", "need 2251799813685248 data bytes"});
  }
  SUBCASE("dims whose product overflows") {
    const auto path =
        write_bytes(dir / "overflow", idx_header(0x08, {0xffffffff, 0xffffffff, 0xffffffff}) + "x");
    check_error([&] { read_idx(path); },
                {"overflow", "[4294967295, 4294967295, 4294967295]", "overflows 64 bits"});
  }
  SUBCASE("element size pushes the byte count past 64 bits") {
    const auto path =
        write_bytes(dir / "bytes", idx_header(0x0E, {0x80000000, 0x80000000, 2}) + "x");
    check_error([&] { read_idx(path); }, {"bytes", "overflows 64 bits"});
  }
}

TEST_CASE("read_idx rejects corrupt gzip streams and gzip bombs") {
  TempDir dir;
  const std::string file = idx_header(0x08, {12}) + kPixels;
  SUBCASE("stream cut short") {
    const std::string packed = gzip(file);
    const auto path = write_bytes(dir / "cut", packed.substr(0, packed.size() - 10));
    check_error([&] { read_idx(path); }, {"cut", "gzip stream ends early"});
  }
  SUBCASE("damaged stream") {
    std::string packed = gzip(file);
    packed[packed.size() - 6] ^= 0x55;  // inside the CRC-32 trailer
    const auto path = write_bytes(dir / "damaged", packed);
    check_error([&] { read_idx(path); }, {"damaged", "corrupt gzip data"});
  }
  SUBCASE("garbage after the stream") {
    const auto path = write_bytes(dir / "trailing", gzip(file) + "garbage");
    check_error([&] { read_idx(path); }, {"trailing", "corrupt gzip data"});
  }
  SUBCASE("bomb: decompression stops at the limit") {
    // A 1 MiB payload (compressing to about 1 KiB) against a 64 KiB limit.
    const std::string payload = idx_header(0x08, {1 << 20}) + std::string(1 << 20, '\0');
    const auto path = write_bytes(dir / "bomb", gzip(payload));
    check_error([&] { read_idx(path, 1 << 16); },
                {"bomb", "decompresses to more than 65536 bytes"});
  }
  SUBCASE("raw file over the limit") {
    const auto path = write_bytes(dir / "big", file);
    check_error([&] { read_idx(path, 10); }, {"big", "exceeds the limit of 10 bytes"});
  }
}

}  // namespace
}  // namespace bitplan::data_idx_test
