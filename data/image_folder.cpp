#include "data/image_folder.hpp"

#include <fmt/ranges.h>
#include <png.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <string_view>
#include <utility>

#include <jpeglib.h>  // after <cstdio>: it uses FILE and size_t without including them

#include "core/checked.hpp"
#include "core/error.hpp"
#include "core/files.hpp"
#include "core/parallel.hpp"
#include "data/normalize.hpp"

namespace bitplan {
namespace fs = std::filesystem;
namespace {

// Refused before decoding: a few bytes of header can claim a gigapixel image. The limit is
// PIL's decompression-bomb threshold, rounded.
constexpr std::int64_t kMaxPixels = std::int64_t{180} * 1000 * 1000;
constexpr std::uint64_t kMaxImageFileBytes = std::uint64_t{256} << 20;

bool pixel_count_ok(std::int64_t width, std::int64_t height) {
  const auto pixels = checked_mul(width, height);
  return width > 0 && height > 0 && pixels && *pixels <= kMaxPixels;
}

void check_pixel_count(std::int64_t width, std::int64_t height, const fs::path& path) {
  if (!pixel_count_ok(width, height))
    fail_input("decode image '{}': {}x{} pixels: must be at least 1x1 and at most {} pixels",
               path.string(), width, height, kMaxPixels);
}

// ---- JPEG ------------------------------------------------------------------------------
// libjpeg reports errors by calling error_exit, which must not return; the default one
// calls exit(). This manager longjmps back to the decoder instead, which then throws.

struct JpegErrorManager {
  jpeg_error_mgr pub;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

void jpeg_error_exit(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<JpegErrorManager*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, err->message);
  std::longjmp(err->jump, 1);
}

// Warnings (level -1) are about corrupt data, e.g. a truncated file libjpeg would pad with
// gray; such an image must not be used silently. Trace messages (level >= 0) are ignored.
void jpeg_emit_message(j_common_ptr cinfo, int level) {
  if (level < 0) jpeg_error_exit(cinfo);
}

// The setjmp frame: it holds no object with a destructor, so a longjmp back into it skips
// none. Returns false when libjpeg reported an error (the message is in err.message).
bool run_jpeg_decoder(jpeg_decompress_struct& cinfo, JpegErrorManager& err, std::string_view bytes,
                      Image& image, const fs::path& path) {
  if (setjmp(err.jump)) return false;
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, reinterpret_cast<const unsigned char*>(bytes.data()),
               static_cast<unsigned long>(bytes.size()));
  jpeg_read_header(&cinfo, TRUE);
  if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK)
    fail_unsupported(
        "decode image '{}': CMYK JPEG: only gray and colour JPEGs are supported; "
        "convert it to RGB",
        path.string());
  check_pixel_count(cinfo.image_width, cinfo.image_height, path);
  cinfo.out_color_space = cinfo.jpeg_color_space == JCS_GRAYSCALE ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_start_decompress(&cinfo);
  image.height = cinfo.output_height;
  image.width = cinfo.output_width;
  image.channels = cinfo.output_components;
  const std::size_t stride = static_cast<std::size_t>(image.width) * image.channels;
  image.pixels.resize(stride * static_cast<std::size_t>(image.height));
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW row = image.pixels.data() + stride * cinfo.output_scanline;
    jpeg_read_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_decompress(&cinfo);
  return true;
}

Image decode_jpeg(std::string_view bytes, const fs::path& path) {
  jpeg_decompress_struct cinfo{};
  JpegErrorManager err{};
  cinfo.err = jpeg_std_error(&err.pub);
  err.pub.error_exit = jpeg_error_exit;
  err.pub.emit_message = jpeg_emit_message;
  struct Destroy {
    jpeg_decompress_struct* cinfo;
    ~Destroy() { jpeg_destroy_decompress(cinfo); }  // safe on a never-created struct
  } destroy{&cinfo};
  Image image;
  if (!run_jpeg_decoder(cinfo, err, bytes, image, path))
    fail_input("decode image '{}': corrupt JPEG: {}", path.string(), err.message);
  return image;
}

// ---- PNG -------------------------------------------------------------------------------
// libpng, like libjpeg, reports errors through a callback that must not return; it
// records the message and longjmps back to the decoder.

struct PngState {
  std::string_view bytes;
  std::size_t position = 0;
  char message[256] = {};
};

void png_error_fn(png_structp png, png_const_charp message) {
  auto* state = static_cast<PngState*>(png_get_error_ptr(png));
  std::snprintf(state->message, sizeof state->message, "%s", message);
  png_longjmp(png, 1);
}

// Warnings are about ancillary data (colour profiles, text chunks), never the pixels.
void png_warning_fn(png_structp, png_const_charp) {}

void png_read_fn(png_structp png, png_bytep dst, png_size_t size) {
  auto* state = static_cast<PngState*>(png_get_io_ptr(png));
  if (size > state->bytes.size() - state->position)
    png_error(png, "the file ends early (truncated?)");
  std::memcpy(dst, state->bytes.data() + state->position, size);
  state->position += size;
}

// The setjmp frame, as for JPEG: no destructors here, so `rows` lives in the caller.
bool run_png_decoder(png_structp png, png_infop info, Image& image, std::vector<png_bytep>& rows,
                     const fs::path& path) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_read_info(png, info);
  check_pixel_count(png_get_image_width(png, info), png_get_image_height(png, info), path);
  png_set_expand(png);  // palette -> RGB, gray below 8 bits -> 8 bits, tRNS -> alpha
  png_set_strip_16(png);
  png_set_strip_alpha(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  image.height = png_get_image_height(png, info);
  image.width = png_get_image_width(png, info);
  image.channels = png_get_channels(png, info);
  const std::size_t stride = static_cast<std::size_t>(image.width) * image.channels;
  image.pixels.resize(stride * static_cast<std::size_t>(image.height));
  rows.resize(static_cast<std::size_t>(image.height));
  for (std::size_t y = 0; y < rows.size(); ++y) rows[y] = image.pixels.data() + y * stride;
  png_read_image(png, rows.data());
  png_read_end(png, nullptr);
  return true;
}

Image decode_png(std::string_view bytes, const fs::path& path) {
  PngState state{bytes};
  png_structp png =
      png_create_read_struct(PNG_LIBPNG_VER_STRING, &state, png_error_fn, png_warning_fn);
  if (!png) throw std::bad_alloc();
  png_infop info = png_create_info_struct(png);
  struct Destroy {
    png_structp* png;
    png_infop* info;
    ~Destroy() { png_destroy_read_struct(png, *info ? info : nullptr, nullptr); }
  } destroy{&png, &info};
  if (!info) throw std::bad_alloc();
  png_set_read_fn(png, &state, png_read_fn);
  Image image;
  std::vector<png_bytep> rows;
  if (!run_png_decoder(png, info, image, rows, path))
    fail_input("decode image '{}': corrupt PNG: {}", path.string(), state.message);
  return image;
}

// ---- Pixels ----------------------------------------------------------------------------

Image convert_channels(Image image, int channels) {
  if (channels == 0 || channels == image.channels) return image;
  Image out{image.height, image.width, channels, {}};
  const auto pixels = static_cast<std::size_t>(image.height * image.width);
  out.pixels.resize(pixels * static_cast<std::size_t>(channels));
  const std::uint8_t* src = image.pixels.data();
  if (channels == 3) {
    for (std::size_t i = 0; i < pixels; ++i) std::fill_n(&out.pixels[3 * i], 3, src[i]);
  } else {
    // PIL's "L" conversion: ITU-R 601 luma in 16-bit fixed point.
    for (std::size_t i = 0; i < pixels; ++i, src += 3)
      out.pixels[i] = static_cast<std::uint8_t>(
          (src[0] * 19595u + src[1] * 38470u + src[2] * 7471u + 0x8000u) >> 16);
  }
  return out;
}

// Taps of a 1-D resampling from `in` to `out` samples: output i is the weighted sum of
// inputs [start[i], start[i] + count[i]) with weights[i * max_taps + k].
struct Taps {
  std::vector<std::int64_t> start, count;
  std::vector<float> weights;
  std::int64_t max_taps = 0;
};

// PIL's bilinear filter: a triangle of radius 1 at the output sample's centre, widened by
// the scale factor when shrinking; weights are normalised to sum to 1.
Taps bilinear_taps(std::int64_t in, std::int64_t out) {
  const double scale = static_cast<double>(in) / static_cast<double>(out);
  const double support = std::max(scale, 1.0);
  Taps taps;
  taps.max_taps = static_cast<std::int64_t>(std::ceil(support)) * 2 + 1;
  taps.start.resize(out);
  taps.count.resize(out);
  taps.weights.assign(static_cast<std::size_t>(out * taps.max_taps), 0.0f);
  for (std::int64_t i = 0; i < out; ++i) {
    const double center = (static_cast<double>(i) + 0.5) * scale;
    const auto lo = std::max<std::int64_t>(0, static_cast<std::int64_t>(center - support + 0.5));
    const auto hi = std::min<std::int64_t>(in, static_cast<std::int64_t>(center + support + 0.5));
    float* w = &taps.weights[static_cast<std::size_t>(i * taps.max_taps)];
    double total = 0.0;
    for (std::int64_t j = lo; j < hi; ++j) {
      const double x = std::abs((static_cast<double>(j) + 0.5 - center) / support);
      w[j - lo] = static_cast<float>(std::max(0.0, 1.0 - x));
      total += w[j - lo];
    }
    for (std::int64_t k = 0; k < hi - lo; ++k) w[k] = static_cast<float>(w[k] / total);
    taps.start[i] = lo;
    taps.count[i] = hi - lo;
  }
  return taps;
}

std::vector<std::string> sorted_names(std::vector<fs::directory_entry> entries) {
  std::vector<std::string> names;
  for (const auto& entry : entries) names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());  // bytewise: std::string compares char_traits<char>
  return names;
}

std::vector<fs::directory_entry> list_folder(const fs::path& folder) {
  std::error_code ec;
  std::vector<fs::directory_entry> entries;
  for (fs::directory_iterator it(folder, ec), end; !ec && it != end; it.increment(ec))
    if (!it->path().filename().string().starts_with('.')) entries.push_back(*it);
  if (ec) fail_input("open image folder '{}': {}", folder.string(), ec.message());
  return entries;
}

bool has_image_extension(const fs::path& path) {
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return ext == ".jpg" || ext == ".jpeg" || ext == ".png";
}

class ImageFolderDataset final : public Dataset {
 public:
  ImageFolderDataset(ImageFolderListing listing, Normalizer normalizer,
                     const Preprocess& preprocess, Dims sample_dims, std::int64_t height,
                     std::int64_t width)
      : Dataset({DataInput{"", listing.files.at(0).parent_path().parent_path().string(),
                           DType::f32, std::move(sample_dims)}},
                static_cast<std::int64_t>(listing.files.size()), std::move(listing.labels),
                std::move(listing.class_names),
                preprocess.scale ? fmt::format("scale {} (preprocess.scale)", *preprocess.scale)
                                 : "scale 1/255 (the default for uint8 images)"),
        files_(std::move(listing.files)),
        normalizer_(std::move(normalizer)),
        resize_(preprocess.resize),
        crop_(preprocess.crop),
        height_(height),
        width_(width) {}

  void load(std::span<const std::int64_t> indices, float* dst) const override {
    const std::int64_t numel = sample_numel();
    // Grain 1: decoding one image far outweighs scheduling it.
    parallel_for(static_cast<std::int64_t>(indices.size()), 1, [&](std::int64_t b, std::int64_t e) {
      for (std::int64_t i = b; i < e; ++i) {
        const std::int64_t index = indices[static_cast<std::size_t>(i)];
        BITPLAN_ASSERT(index >= 0 && index < size());
        const fs::path& path = files_[static_cast<std::size_t>(index)];
        const Image image = prepare(path);
        if (image.height != height_ || image.width != width_)
          fail_input(
              "load image '{}': {}x{} after preprocessing: differs from the dataset's "
              "samples, {}x{} (set dataset.preprocess.resize and crop to give every image "
              "one size)",
              path.string(), image.height, image.width, height_, width_);
        normalizer_.apply(image.pixels.data(), false, height_ * width_, dst + i * numel);
      }
    });
  }

 private:
  Image prepare(const fs::path& path) const {
    return resize_and_crop(read_image(path, static_cast<int>(normalizer_.channels())), resize_,
                           crop_, path);
  }

  std::vector<fs::path> files_;
  Normalizer normalizer_;
  int resize_, crop_;
  std::int64_t height_, width_;
};

}  // namespace

Image read_image(const fs::path& path, int channels) {
  BITPLAN_ASSERT(channels == 0 || channels == 1 || channels == 3);
  const std::string bytes = read_file(path, kMaxImageFileBytes, "image");
  const auto starts_with = [&](std::string_view magic) { return bytes.starts_with(magic); };
  Image image;
  if (starts_with("\xff\xd8\xff"))
    image = decode_jpeg(bytes, path);
  else if (starts_with("\x89PNG\r\n\x1a\n"))
    image = decode_png(bytes, path);
  else
    fail_input("decode image '{}': unknown content: must be a JPEG or PNG image", path.string());
  return convert_channels(std::move(image), channels);
}

Image resize_bilinear(const Image& image, std::int64_t height, std::int64_t width) {
  BITPLAN_ASSERT(height > 0 && width > 0);
  const std::int64_t c_count = image.channels;
  // Horizontal pass into floats, then vertical pass, rounding once at the end.
  const Taps h = bilinear_taps(image.width, width);
  std::vector<float> rows(static_cast<std::size_t>(image.height * width * c_count));
  for (std::int64_t y = 0; y < image.height; ++y)
    for (std::int64_t x = 0; x < width; ++x)
      for (std::int64_t c = 0; c < c_count; ++c) {
        float sum = 0.0f;
        const float* w = &h.weights[static_cast<std::size_t>(x * h.max_taps)];
        for (std::int64_t k = 0; k < h.count[x]; ++k)
          sum += w[k] * image.pixels[static_cast<std::size_t>(
                            (y * image.width + h.start[x] + k) * c_count + c)];
        rows[static_cast<std::size_t>((y * width + x) * c_count + c)] = sum;
      }
  const Taps v = bilinear_taps(image.height, height);
  Image out{height, width, image.channels, {}};
  out.pixels.resize(static_cast<std::size_t>(height * width * c_count));
  const std::int64_t row_size = width * c_count;
  for (std::int64_t y = 0; y < height; ++y) {
    const float* w = &v.weights[static_cast<std::size_t>(y * v.max_taps)];
    for (std::int64_t i = 0; i < row_size; ++i) {
      float sum = 0.0f;
      for (std::int64_t k = 0; k < v.count[y]; ++k)
        sum += w[k] * rows[static_cast<std::size_t>((v.start[y] + k) * row_size + i)];
      out.pixels[static_cast<std::size_t>(y * row_size + i)] =
          static_cast<std::uint8_t>(std::clamp(std::lround(sum), 0L, 255L));
    }
  }
  return out;
}

Image resize_and_crop(const Image& image, int resize, int crop, const fs::path& path) {
  BITPLAN_ASSERT(image.height > 0 && image.width > 0);
  Image out = image;
  if (resize > 0) {
    const bool portrait = image.height > image.width;
    const std::int64_t shorter = portrait ? image.width : image.height;
    const std::int64_t longer = portrait ? image.height : image.width;
    const std::int64_t scaled = resize * longer / shorter;
    const std::int64_t height = portrait ? scaled : resize;
    const std::int64_t width = portrait ? resize : scaled;
    // A long, thin image resized by its short side can ask for far more pixels than it has.
    if (!pixel_count_ok(width, height))
      fail_input(
          "preprocess image '{}': resize {} of the {}x{} image gives {}x{} pixels: must be at "
          "most {} pixels",
          path.string(), resize, image.height, image.width, height, width, kMaxPixels);
    if (height != image.height || width != image.width) out = resize_bilinear(image, height, width);
  }
  if (crop > 0) {
    if (crop > out.height || crop > out.width)
      fail_input("preprocess image '{}': crop {}: larger than the {}x{} image{}", path.string(),
                 crop, out.height, out.width, resize > 0 ? " after resizing" : "");
    // torchvision rounds the offsets half to even, as nearbyint does by default.
    const auto top = static_cast<std::int64_t>(std::nearbyint((out.height - crop) / 2.0));
    const auto left = static_cast<std::int64_t>(std::nearbyint((out.width - crop) / 2.0));
    Image cropped{crop, crop, out.channels, {}};
    const std::size_t row_bytes = static_cast<std::size_t>(crop) * out.channels;
    cropped.pixels.resize(row_bytes * static_cast<std::size_t>(crop));
    for (std::int64_t y = 0; y < crop; ++y)
      std::memcpy(
          &cropped.pixels[static_cast<std::size_t>(y) * row_bytes],
          &out.pixels[static_cast<std::size_t>(((top + y) * out.width + left) * out.channels)],
          row_bytes);
    out = std::move(cropped);
  }
  return out;
}

ImageFolderListing list_image_folder(const fs::path& root) {
  std::error_code ec;
  if (!fs::exists(root, ec))
    fail_input("open image folder '{}': the folder does not exist", root.string());
  if (!fs::is_directory(root, ec))
    fail_input("open image folder '{}': not a folder: images must be in <folder>/<class>/",
               root.string());
  std::vector<fs::directory_entry> class_dirs = list_folder(root);
  std::erase_if(class_dirs, [](const fs::directory_entry& e) {
    std::error_code ignored;
    return !e.is_directory(ignored);
  });
  ImageFolderListing listing;
  listing.class_names = sorted_names(std::move(class_dirs));
  if (listing.class_names.empty())
    fail_input(
        "open image folder '{}': no class folders: images must be in "
        "<folder>/<class>/<image>.jpg (or .jpeg, .png)",
        root.string());
  for (std::size_t label = 0; label < listing.class_names.size(); ++label) {
    const fs::path class_dir = root / listing.class_names[label];
    std::vector<fs::directory_entry> files = list_folder(class_dir);
    std::erase_if(files, [](const fs::directory_entry& e) {
      std::error_code ignored;
      return !e.is_regular_file(ignored) || !has_image_extension(e.path());
    });
    if (files.empty())
      fail_input("open image folder '{}': class folder '{}': has no .jpg, .jpeg or .png files",
                 root.string(), listing.class_names[label]);
    for (const std::string& name : sorted_names(std::move(files))) {
      listing.files.push_back(class_dir / name);
      listing.labels.push_back(static_cast<std::int64_t>(label));
    }
  }
  return listing;
}

std::unique_ptr<Dataset> open_image_folder(const DatasetConfig& config) {
  const Preprocess& preprocess = config.preprocess;
  if (preprocess.channels != 0 && preprocess.channels != 1 && preprocess.channels != 3)
    fail_input("open dataset '{}': preprocess.channels {}: must be 0, 1 or 3",
               config.images.string(), preprocess.channels);
  if (preprocess.resize < 0 || preprocess.crop < 0)
    fail_input("open dataset '{}': preprocess.resize {} and crop {}: must not be negative",
               config.images.string(), preprocess.resize, preprocess.crop);
  ImageFolderListing listing = list_image_folder(config.images);
  if (!config.class_names.empty() && config.class_names != listing.class_names)
    fail_input(
        "open dataset '{}': class_names [{}]: the class folders are [{}]; they must be equal "
        "(or leave class_names out)",
        config.images.string(), fmt::join(config.class_names, ", "),
        fmt::join(listing.class_names, ", "));

  // The first image fixes the sample size (and, for channels 0, the channel count).
  const Image first = resize_and_crop(read_image(listing.files[0], preprocess.channels),
                                      preprocess.resize, preprocess.crop, listing.files[0]);
  Normalizer normalizer(preprocess, first.channels, DType::u8, config.images.string());
  Dims sample_dims = normalizer.sample_dims(first.height, first.width);
  return std::make_unique<ImageFolderDataset>(std::move(listing), std::move(normalizer), preprocess,
                                              std::move(sample_dims), first.height, first.width);
}

}  // namespace bitplan
