#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "data/image_folder.hpp"
#include "data_test_util.hpp"

namespace bitplan::data_image_folder_test {
namespace {

namespace fs = std::filesystem;
using test::check_error;
using test::encode_jpeg;
using test::encode_png;
using test::gradient_image;
using test::TempDir;
using test::write_bytes;

int max_difference(const Image& a, const Image& b) {
  REQUIRE(a.pixels.size() == b.pixels.size());
  int worst = 0;
  for (std::size_t i = 0; i < a.pixels.size(); ++i)
    worst = std::max(worst, std::abs(int{a.pixels[i]} - int{b.pixels[i]}));
  return worst;
}

Image gray_row(std::vector<std::uint8_t> values) {
  return Image{1, static_cast<std::int64_t>(values.size()), 1, std::move(values)};
}

TEST_CASE("read_image decodes PNG exactly and JPEG closely, in gray and colour") {
  TempDir dir;
  for (int channels : {1, 3}) {
    CAPTURE(channels);
    const Image image = gradient_image(12, 20, channels);
    const Image png = read_image(write_bytes(dir / "a.png", encode_png(image)));
    CHECK(png.height == 12);
    CHECK(png.width == 20);
    CHECK(png.channels == channels);
    CHECK(png.pixels == image.pixels);

    const Image jpeg = read_image(write_bytes(dir / "a.jpg", encode_jpeg(image, 98)));
    CHECK(jpeg.channels == channels);
    CHECK(max_difference(jpeg, image) <= 8);
  }
}

TEST_CASE("read_image goes by content, drops alpha and converts channels as asked") {
  TempDir dir;
  const Image rgb = gradient_image(4, 5, 3);
  // A PNG named .jpg (ImageNet has such files) still decodes.
  const auto misnamed = write_bytes(dir / "png.jpg", encode_png(rgb));
  CHECK(read_image(misnamed).pixels == rgb.pixels);

  Image rgba = gradient_image(4, 5, 4);
  const Image stripped = read_image(write_bytes(dir / "rgba.png", encode_png(rgba)));
  REQUIRE(stripped.channels == 3);
  for (std::size_t p = 0; p < 20; ++p)
    for (std::size_t c = 0; c < 3; ++c) CHECK(stripped.pixels[3 * p + c] == rgba.pixels[4 * p + c]);

  const Image gray = read_image(misnamed, 1);
  REQUIRE(gray.channels == 1);
  for (std::size_t p = 0; p < 20; ++p) {
    const double luma =
        0.299 * rgb.pixels[3 * p] + 0.587 * rgb.pixels[3 * p + 1] + 0.114 * rgb.pixels[3 * p + 2];
    CHECK(std::abs(gray.pixels[p] - luma) <= 0.51);
  }
  const Image gray_png = gradient_image(4, 5, 1);
  const Image expanded = read_image(write_bytes(dir / "g.png", encode_png(gray_png)), 3);
  REQUIRE(expanded.channels == 3);
  for (std::size_t p = 0; p < 20; ++p)
    for (std::size_t c = 0; c < 3; ++c) CHECK(expanded.pixels[3 * p + c] == gray_png.pixels[p]);
}

TEST_CASE("read_image turns corrupt files into errors naming the file") {
  TempDir dir;
  const Image image = gradient_image(32, 32, 3);
  const std::string jpeg = encode_jpeg(image);
  const std::string png = encode_png(image);
  SUBCASE("truncated JPEG") {
    const auto path = write_bytes(dir / "cut.jpg", jpeg.substr(0, jpeg.size() / 2));
    check_error([&] { read_image(path); }, {"cut.jpg", "corrupt JPEG", "Premature end"});
  }
  SUBCASE("JPEG with a garbage body") {
    const auto path = write_bytes(dir / "garbage.jpg", "\xff\xd8\xff" + std::string(200, 'x'));
    check_error([&] { read_image(path); }, {"garbage.jpg", "corrupt JPEG"});
  }
  SUBCASE("truncated PNG") {
    const auto path = write_bytes(dir / "cut.png", png.substr(0, png.size() / 2));
    check_error([&] { read_image(path); }, {"cut.png", "corrupt PNG", "ends early"});
  }
  SUBCASE("PNG with damaged pixel data") {
    std::string damaged = png;
    const std::size_t idat = damaged.find("IDAT");
    REQUIRE(idat != std::string::npos);
    damaged[idat + 10] ^= 0x5a;
    const auto path = write_bytes(dir / "damaged.png", damaged);
    check_error([&] { read_image(path); }, {"damaged.png", "corrupt PNG"});
  }
  SUBCASE("neither JPEG nor PNG") {
    const auto path = write_bytes(dir / "text.png", "hello");
    check_error([&] { read_image(path); }, {"text.png", "must be a JPEG or PNG"});
  }
}

TEST_CASE("resize_bilinear interpolates like PIL and averages when shrinking") {
  // Upscaling 2 -> 4: sample centres at 0.25, 0.75, 1.25, 1.75 source pixels.
  CHECK(resize_bilinear(gray_row({0, 255}), 1, 4).pixels ==
        std::vector<std::uint8_t>{0, 64, 191, 255});
  // A constant image stays constant at any size.
  const Image flat{7, 9, 3, std::vector<std::uint8_t>(7 * 9 * 3, 77)};
  const Image resized = resize_bilinear(flat, 3, 13);
  CHECK(resized.height == 3);
  CHECK(resized.width == 13);
  CHECK(std::all_of(resized.pixels.begin(), resized.pixels.end(), [](auto v) { return v == 77; }));
  // Shrinking alternating columns by 8: the widened filter averages them instead of picking
  // one phase.
  std::vector<std::uint8_t> stripes(64);
  for (std::size_t x = 0; x < stripes.size(); ++x) stripes[x] = x % 2 ? 255 : 0;
  for (std::uint8_t v : resize_bilinear(gray_row(stripes), 1, 8).pixels) {
    CHECK(v >= 120);
    CHECK(v <= 135);
  }
}

TEST_CASE("resize_and_crop resizes the shorter side, then crops the centre") {
  const Image landscape = gradient_image(40, 60, 3);
  const Image resized = resize_and_crop(landscape, 20, 0, "x");
  CHECK(resized.height == 20);
  CHECK(resized.width == 30);
  const Image portrait = resize_and_crop(gradient_image(61, 40, 1), 20, 16, "x");
  CHECK(portrait.height == 16);
  CHECK(portrait.width == 16);

  // Pixel value = column: the crop's first column shows its left offset, which rounds half
  // to even like torchvision's (9 - 4) / 2 = 2.5 -> 2 and (11 - 4) / 2 = 3.5 -> 4.
  const auto columns = [](std::int64_t width) {
    std::vector<std::uint8_t> values(static_cast<std::size_t>(width * width));
    for (std::size_t i = 0; i < values.size(); ++i)
      values[i] = static_cast<std::uint8_t>(i % width);
    return Image{width, width, 1, values};
  };
  CHECK(resize_and_crop(columns(10), 0, 4, "x").pixels[0] == 3);
  CHECK(resize_and_crop(columns(9), 0, 4, "x").pixels[0] == 2);
  CHECK(resize_and_crop(columns(11), 0, 4, "x").pixels[0] == 4);

  check_error([&] { resize_and_crop(landscape, 20, 24, "img.png"); },
              {"img.png", "crop 24", "larger than the 20x30 image after resizing"});
}

// root/<class>/<file> with PNGs of `height` x `width`; returns the images written.
std::vector<Image> make_folder(const fs::path& root,
                               const std::vector<std::pair<std::string, std::string>>& files,
                               std::int64_t height = 6, std::int64_t width = 5) {
  std::vector<Image> images;
  for (std::size_t i = 0; i < files.size(); ++i) {
    Image image = gradient_image(height, width, 3);
    for (auto& v : image.pixels) v = static_cast<std::uint8_t>(v + 10 * i);
    write_bytes(root / files[i].first / files[i].second, encode_png(image));
    images.push_back(std::move(image));
  }
  return images;
}

TEST_CASE("list_image_folder sorts classes and files bytewise and filters by extension") {
  TempDir dir;
  const fs::path root = dir / "root";
  make_folder(root, {{"b", "2.PNG"}, {"b", "10.png"}, {"B", "x.Jpeg"}, {"a", "z.jpg"}});
  write_bytes(root / "a" / "notes.txt", "not an image");
  write_bytes(root / "a" / ".hidden.png", "");
  write_bytes(root / ".cache" / "x.png", "");        // hidden folders are not classes
  write_bytes(root / "a" / "nested" / "y.png", "");  // nor are nested folders searched
  write_bytes(root / "README.md", "");

  const ImageFolderListing listing = list_image_folder(root);
  CHECK(listing.class_names == std::vector<std::string>{"B", "a", "b"});
  std::vector<std::string> names;
  for (const auto& file : listing.files)
    names.push_back(file.parent_path().filename().string() + "/" + file.filename().string());
  CHECK(names == std::vector<std::string>{"B/x.Jpeg", "a/z.jpg", "b/10.png", "b/2.PNG"});
  CHECK(listing.labels == std::vector<std::int64_t>{0, 1, 2, 2});
}

TEST_CASE("list_image_folder rejects missing, empty and image-less folders") {
  TempDir dir;
  check_error([&] { list_image_folder(dir / "none"); }, {"none", "does not exist"});
  write_bytes(dir / "file", "x");
  check_error([&] { list_image_folder(dir / "file"); }, {"file", "not a folder"});
  fs::create_directories(dir / "empty");
  check_error([&] { list_image_folder(dir / "empty"); }, {"empty", "no class folders"});
  write_bytes(dir / "sparse" / "cat" / "a.png", "x");
  write_bytes(dir / "sparse" / "dog" / "a.txt", "x");
  check_error([&] { list_image_folder(dir / "sparse"); },
              {"sparse", "class folder 'dog'", "has no .jpg, .jpeg or .png files"});
}

DatasetConfig folder_config(const fs::path& root) {
  DatasetConfig config;
  config.format = "image_folder";
  config.images = root;
  return config;
}

TEST_CASE("an image-folder dataset decodes and normalises samples on load") {
  TempDir dir;
  const fs::path root = dir / "root";
  const auto images = make_folder(root, {{"cat", "a.png"}, {"cat", "b.png"}, {"dog", "c.png"}});
  DatasetConfig config = folder_config(root);
  config.preprocess.mean = {0.5f, 0.25f, 0.0f};
  config.preprocess.std = {0.5f, 2.0f, 1.0f};

  SUBCASE("NCHW") {
    const auto dataset = open_dataset(config);
    CHECK(dataset->size() == 3);
    CHECK(dataset->sample_dims() == Dims{3, 6, 5});
    CHECK(dataset->class_names() == std::vector<std::string>{"cat", "dog"});
    CHECK(dataset->label(2) == 1);
    const std::vector<std::int64_t> indices = {2, 0};
    std::vector<float> batch(2 * 90);
    dataset->load(indices, batch.data());
    for (std::size_t s = 0; s < indices.size(); ++s)
      for (std::size_t c = 0; c < 3; ++c)
        for (std::size_t p = 0; p < 30; ++p) {
          const float v = images[indices[s]].pixels[3 * p + c] / 255.0f;
          CHECK(batch[s * 90 + c * 30 + p] ==
                doctest::Approx((v - config.preprocess.mean[c]) / config.preprocess.std[c]));
        }
  }
  SUBCASE("NHWC, gray, resized and cropped") {
    config.preprocess = Preprocess{};
    config.preprocess.layout = "NHWC";
    config.preprocess.channels = 1;
    config.preprocess.resize = 8;
    config.preprocess.crop = 7;
    const auto dataset = open_dataset(config);
    CHECK(dataset->sample_dims() == Dims{7, 7, 1});
    const std::vector<std::int64_t> indices = {1};
    std::vector<float> sample(49);
    dataset->load(indices, sample.data());
    Image expected = resize_and_crop(read_image(root / "cat" / "b.png", 1), 8, 7, "");
    for (std::size_t p = 0; p < 49; ++p)
      CHECK(sample[p] == doctest::Approx(expected.pixels[p] / 255.0f));
  }
}

TEST_CASE("an image-folder dataset loads large batches in parallel, in index order") {
  TempDir dir;
  std::vector<std::pair<std::string, std::string>> files;
  for (int i = 0; i < 40; ++i)
    files.emplace_back(i % 2 ? "odd" : "even", fmt::format("{:02}.png", i));
  make_folder(dir / "root", files);
  const auto dataset = open_dataset(folder_config(dir / "root"));
  std::vector<std::int64_t> all(40);
  for (std::int64_t i = 0; i < 40; ++i) all[i] = 39 - i;
  std::vector<float> batch(40 * 90);
  dataset->load(all, batch.data());
  for (std::int64_t i = 0; i < 40; ++i) {
    std::vector<float> one(90);
    const std::int64_t index = all[i];
    dataset->load(std::span(&index, 1), one.data());
    CHECK(std::equal(one.begin(), one.end(), batch.begin() + i * 90));
  }
}

TEST_CASE("an image-folder dataset reports bad images and settings") {
  TempDir dir;
  const fs::path root = dir / "root";
  make_folder(root, {{"cat", "a.png"}, {"dog", "b.png"}});

  SUBCASE("a corrupt image fails the batch that decodes it") {
    write_bytes(root / "dog" / "c.jpg", encode_jpeg(gradient_image(6, 5, 3)).substr(0, 100));
    const auto dataset = open_dataset(folder_config(root));  // listing decodes only the first
    const std::vector<std::int64_t> indices = {0, 1, 2};
    std::vector<float> batch(3 * 90);
    check_error([&] { dataset->load(indices, batch.data()); }, {"c.jpg", "corrupt JPEG"});
  }
  SUBCASE("images of another size need resize and crop") {
    write_bytes(root / "dog" / "c.png", encode_png(gradient_image(8, 5, 3)));
    const auto dataset = open_dataset(folder_config(root));
    const std::vector<std::int64_t> indices = {2};
    std::vector<float> batch(90);
    check_error([&] { dataset->load(indices, batch.data()); },
                {"c.png", "8x5 after preprocessing", "differs from the dataset's samples, 6x5",
                 "resize and crop"});
  }
  SUBCASE("class names must match the folders") {
    DatasetConfig config = folder_config(root);
    config.class_names = {"dog", "cat"};
    check_error([&] { open_dataset(config); },
                {"class_names [dog, cat]", "the class folders are [cat, dog]"});
  }
  SUBCASE("one mean per channel") {
    DatasetConfig config = folder_config(root);
    config.preprocess.mean = {0.5f};
    check_error([&] { open_dataset(config); },
                {"root", "preprocess.mean has 1 values", "one per channel (3)"});
  }
}

TEST_CASE("the CIFAR-10 JPEG test folder loads with its 10 classes") {
  const fs::path root = "/work/shared/data/cifar10/test";
  if (!fs::is_directory(root)) {
    MESSAGE("skipped: ", root.string(), " is absent (it is only on the project's machines)");
    return;
  }
  DatasetConfig config = folder_config(root);
  config.class_names = {"airplane", "automobile", "bird",  "cat",  "deer",
                        "dog",      "frog",       "horse", "ship", "truck"};
  const auto dataset = open_dataset(config);
  CHECK(dataset->size() == 10000);
  CHECK(dataset->num_classes() == 10);
  CHECK(dataset->sample_dims() == Dims{3, 32, 32});
  const std::vector<std::int64_t> indices = {0, 1000, 5555, 9999};
  std::vector<float> batch(indices.size() * 3 * 32 * 32);
  dataset->load(indices, batch.data());
  CHECK(dataset->label(9999) == 9);
  const auto [lo, hi] = std::minmax_element(batch.begin(), batch.end());
  CHECK(*lo >= 0.0f);
  CHECK(*hi <= 1.0f);
  CHECK(*hi > *lo);
}

}  // namespace
}  // namespace bitplan::data_image_folder_test
