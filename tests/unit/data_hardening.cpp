// Data files of issue 17: sizes from headers checked (including those a zero dim hides),
// untrusted header text shown escaped and whole in messages.
#include <doctest/doctest.h>

#include <cstdint>
#include <string>

#include "data/idx.hpp"
#include "data/image_folder.hpp"
#include "data/npy.hpp"
#include "data_test_util.hpp"

namespace bitplan::data_hardening_test {
namespace {

using test::check_error;
using test::idx_header;
using test::TempDir;
using test::write_bytes;
using namespace std::string_literals;

// A version 1.0 .npy file around `header` (no padding needed: the reader takes any length).
std::string npy_v1(std::string_view header, std::string_view data = {}) {
  std::string out = "\x93NUMPY\x01";
  out += '\0';
  out += static_cast<char>(header.size() & 0xff);
  out += static_cast<char>(header.size() >> 8);
  out += header;
  out += data;
  return out;
}

TEST_CASE("17.10 IDX dims [2^32-1, 2^32-1, 0] are refused: their non-zero product overflows") {
  TempDir dir;
  const auto path = write_bytes(dir / "x.idx", idx_header(0x08, {0xffffffffu, 0xffffffffu, 0}));
  check_error([&] { read_idx(path); }, {"x.idx", "dims [4294967295, 4294967295, 0]",
                                        "the product of the non-zero dims overflows 64 bits"});
  // The same header gzip-compressed takes the other path through the reader.
  const auto gz =
      write_bytes(dir / "x.idx.gz", test::gzip(idx_header(0x08, {0xffffffffu, 0xffffffffu, 0})));
  check_error([&] { read_idx(gz); }, {"x.idx.gz", "non-zero dims overflows 64 bits"});
}

TEST_CASE("17.10 IDX dims with a zero and a small product still read as an empty tensor") {
  TempDir dir;
  const auto path = write_bytes(dir / "x.idx", idx_header(0x0D, {0, 28, 28}));
  const Tensor t = read_idx(path);
  CHECK(t.dims() == Dims{0, 28, 28});
  CHECK(t.numel() == 0);
}

TEST_CASE("17.10 NPY shapes whose non-zero dims overflow are refused, a zero dim or not") {
  TempDir dir;
  for (const char* shape :
       {"(4294967296, 4294967296, 0)", "(0, 4294967296, 4294967296)", "(3037000500, 3037000500)"}) {
    CAPTURE(shape);
    const auto path = write_bytes(
        dir / "a.npy",
        npy_v1(std::string("{'descr': '<f4', 'fortran_order': False, 'shape': ") + shape + ", }"));
    check_error([&] { read_npy(path); },
                {"a.npy", "the product of the non-zero dimensions overflows 64 bits"});
  }
}

TEST_CASE("17.9 a NUL byte in an NPY descr is shown escaped, with the whole message") {
  TempDir dir;
  const auto path = write_bytes(
      dir / "a.npy", npy_v1("{'descr': '<f\0', 'fortran_order': False, 'shape': (1,), }"s));
  try {
    read_npy(path);
    FAIL("the file was accepted");
  } catch (const Error& e) {
    const std::string message = e.what();
    CHECK(message.find('\0') == std::string::npos);
    CHECK(message.find("descr '<f\\x00': bitplan reads float32") != std::string::npos);
    CHECK(message.find("'|b1')") != std::string::npos);  // the end of the line is there
  }
}

TEST_CASE("17.9 a NUL byte in an NPY header key or near a syntax error is shown escaped") {
  TempDir dir;
  auto path = write_bytes(dir / "a.npy",
                          npy_v1("{'de\0scr': '<f4', 'fortran_order': False, 'shape': (1,), }"s));
  check_error([&] { read_npy(path); }, {"header key 'de\\x00scr': the keys must be"});
  path = write_bytes(dir / "b.npy", npy_v1("{'descr' \0 '<f4'}"s));
  check_error([&] { read_npy(path); }, {"b.npy", "('\\x00 '<f4'}'): expected ':'"});
}

TEST_CASE("17.3 resizing a long thin image past the pixel limit is refused before allocating") {
  // resize 100000 of a 1x2000 image asks for 100000x200000000 pixels (20 TB of floats).
  const Image thin = test::gradient_image(1, 2000, 1);
  check_error([&] { resize_and_crop(thin, 100000, 0, "thin.png"); },
              {"preprocess image 'thin.png': resize 100000 of the 1x2000 image gives "
               "100000x200000000 pixels: must be at most 180000000 pixels"});
}

}  // namespace
}  // namespace bitplan::data_hardening_test
