// Helpers shared by the data_*.cpp tests: temporary folders, file writers and encoders that
// produce valid (and, by editing their bytes, malformed) IDX, gzip, PNG and JPEG inputs.
#pragma once

#include <doctest/doctest.h>
#include <png.h>
#include <unistd.h>
#include <zlib.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include <jpeglib.h>  // after <cstdio>: it uses FILE and size_t without including them

#include "core/error.hpp"
#include "data/image_folder.hpp"
#include "tests/temp_dir.hpp"

namespace bitplan::test {

inline std::filesystem::path write_bytes(const std::filesystem::path& path,
                                         std::string_view bytes) {
  std::filesystem::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(out.good());
  return path;
}

inline std::string read_bytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

inline std::string big_endian_u32(std::uint32_t value) {
  return {static_cast<char>(value >> 24), static_cast<char>(value >> 16),
          static_cast<char>(value >> 8), static_cast<char>(value)};
}

// An IDX header: magic (type code, rank) and big-endian dims.
inline std::string idx_header(unsigned char type, std::initializer_list<std::uint32_t> dims) {
  std::string header{'\0', '\0', static_cast<char>(type), static_cast<char>(dims.size())};
  for (std::uint32_t dim : dims) header += big_endian_u32(dim);
  return header;
}

// One gzip member holding `bytes`.
inline std::string gzip(std::string_view bytes) {
  z_stream zs{};
  REQUIRE(deflateInit2(&zs, Z_BEST_COMPRESSION, Z_DEFLATED, 16 + MAX_WBITS, 8,
                       Z_DEFAULT_STRATEGY) == Z_OK);
  std::string out(deflateBound(&zs, bytes.size()), '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(bytes.data()));
  zs.avail_in = static_cast<uInt>(bytes.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  REQUIRE(deflate(&zs, Z_FINISH) == Z_STREAM_END);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

// A test image whose pixels vary smoothly, so JPEG keeps them close.
inline Image gradient_image(std::int64_t height, std::int64_t width, int channels) {
  Image image{height, width, channels, {}};
  for (std::int64_t y = 0; y < height; ++y)
    for (std::int64_t x = 0; x < width; ++x)
      for (int c = 0; c < channels; ++c)
        image.pixels.push_back(
            static_cast<std::uint8_t>(x * 150 / width + y * 50 / height + c * 20));
  return image;
}

inline std::string encode_png(const Image& image) {
  png_image png{};
  png.version = PNG_IMAGE_VERSION;
  png.width = static_cast<png_uint_32>(image.width);
  png.height = static_cast<png_uint_32>(image.height);
  png.format = image.channels == 1   ? PNG_FORMAT_GRAY
               : image.channels == 3 ? PNG_FORMAT_RGB
                                     : PNG_FORMAT_RGBA;
  png_alloc_size_t size = 0;
  REQUIRE(png_image_write_to_memory(&png, nullptr, &size, 0, image.pixels.data(), 0, nullptr));
  std::string out(size, '\0');
  REQUIRE(png_image_write_to_memory(&png, out.data(), &size, 0, image.pixels.data(), 0, nullptr));
  out.resize(size);
  return out;
}

inline std::string encode_jpeg(const Image& image, int quality = 95) {
  jpeg_compress_struct cinfo{};
  jpeg_error_mgr err{};
  cinfo.err = jpeg_std_error(&err);
  jpeg_create_compress(&cinfo);
  unsigned char* buffer = nullptr;
  unsigned long size = 0;
  jpeg_mem_dest(&cinfo, &buffer, &size);
  cinfo.image_width = static_cast<JDIMENSION>(image.width);
  cinfo.image_height = static_cast<JDIMENSION>(image.height);
  cinfo.input_components = image.channels;
  cinfo.in_color_space = image.channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_set_defaults(&cinfo);
  jpeg_set_quality(&cinfo, quality, TRUE);
  jpeg_start_compress(&cinfo, TRUE);
  const std::size_t stride = static_cast<std::size_t>(image.width * image.channels);
  while (cinfo.next_scanline < cinfo.image_height) {
    auto* row = const_cast<JSAMPLE*>(image.pixels.data() + stride * cinfo.next_scanline);
    jpeg_write_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_compress(&cinfo);
  jpeg_destroy_compress(&cinfo);
  std::string out(reinterpret_cast<const char*>(buffer), size);
  std::free(buffer);
  return out;
}

// Runs `fn`, which must throw a bitplan::Error of `kind` whose message contains every one
// of `parts` (typically the file and the rule it broke).
template <typename Fn>
void check_error(Fn&& fn, std::initializer_list<std::string_view> parts,
                 ErrorKind kind = ErrorKind::invalid_input) {
  try {
    fn();
    FAIL("expected an error containing '", *parts.begin(), "'");
  } catch (const Error& e) {
    const std::string message = e.what();
    INFO("message: ", message);
    CHECK(static_cast<int>(e.kind()) == static_cast<int>(kind));
    for (std::string_view part : parts) CHECK(message.find(part) != std::string::npos);
  }
}

}  // namespace bitplan::test
