// JPEG/PNG decoding as an image-folder dataset does it: decode keeping the file's channels,
// then the preprocess geometry (resize the shorter side, centre crop).
#include "data/image_folder.hpp"
#include "tests/fuzz/fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto path = bitplan::fuzz::write_input("image", data, size);
  bitplan::fuzz::expect_clean_error([&] {
    const bitplan::Image image = bitplan::read_image(path, 0);
    bitplan::resize_and_crop(image, 8, 6, path);
  });
  bitplan::fuzz::expect_clean_error([&] { bitplan::read_image(path, 1); });
  return 0;
}
