// Image-folder datasets: root/<class_name>/<file>.{jpg,jpeg,png}, one folder per class, and
// the JPEG/PNG decoding and resizing they need.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "data/dataset.hpp"

namespace bitplan {

// 8-bit pixels, interleaved: pixels[(y * width + x) * channels + c].
struct Image {
  std::int64_t height = 0;
  std::int64_t width = 0;
  int channels = 0;  // 1 (gray) or 3 (RGB)
  std::vector<std::uint8_t> pixels;
};

// Decodes a JPEG or PNG file, recognised by its content rather than its extension.
// `channels` 1 gives gray, 3 gives RGB, 0 keeps what the file holds (1 for grayscale, 3 for
// colour). Alpha is dropped, palettes expanded and 16-bit samples reduced to 8 bits; RGB to
// gray uses ITU-R 601 luma, as PIL does. Corrupt or truncated files fail with the decoder's
// message and the file name (libjpeg's warnings count as errors: they mean corrupt data);
// CMYK JPEGs are unsupported.
Image read_image(const std::filesystem::path& path, int channels = 0);

// Bilinear resampling to height x width. Like PIL's, the filter widens when shrinking, so
// downscaling averages all the source pixels it covers instead of aliasing.
Image resize_bilinear(const Image& image, std::int64_t height, std::int64_t width);

// Preprocess's geometry, as torchvision's Resize(resize) + CenterCrop(crop): the shorter
// side becomes `resize` (the longer keeps the aspect ratio, rounded down; 0 = no resize),
// then the centre crop x crop pixels are kept (0 = no crop). A crop larger than the
// image fails naming `path`.
Image resize_and_crop(const Image& image, int resize, int crop, const std::filesystem::path& path);

struct ImageFolderListing {
  std::vector<std::string> class_names;      // sub-folder names, sorted bytewise
  std::vector<std::filesystem::path> files;  // by class, then by file name
  std::vector<std::int64_t> labels;          // class index of each file
};

// Lists root's class folders and their .jpg/.jpeg/.png files (any letter case), without
// decoding anything. Files in nested folders are not included, and names starting with '.'
// are skipped (e.g. ".ipynb_checkpoints"). A root without class folders, or a class folder
// without images, is an error.
ImageFolderListing list_image_folder(const std::filesystem::path& root);

// The dataset of config.images (a root folder). Classes are the folder names; when
// config.class_names is given it must list the same names in the same order. The sample
// size comes from the first image after preprocessing; every image must give the same size
// (set preprocess.resize and crop otherwise), and with channels 0 every image is converted
// to the first image's channel count. Images are decoded in load(), in parallel.
std::unique_ptr<Dataset> open_image_folder(const DatasetConfig& config);

}  // namespace bitplan
