#include "data/npy.hpp"

#include <fmt/ranges.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cctype>
#include <cstring>
#include <string>
#include <string_view>

#include "core/checked.hpp"
#include "core/error.hpp"
#include "core/files.hpp"
#include "core/quote.hpp"
#include "data/input_file.hpp"

namespace bitplan {
namespace fs = std::filesystem;
namespace {

static_assert(std::endian::native == std::endian::little,
              "bitplan targets little-endian hosts; .npy data is copied without byte swaps");

constexpr std::string_view kMagic = "\x93NUMPY";
// NumPy itself refuses headers over 10,000 bytes by default; this is generous but still
// keeps a hostile header length from allocating much.
constexpr std::uint32_t kMaxNpyHeaderBytes = 1 << 20;
constexpr int kMaxNesting = 32;

// A value of the header's Python literal, restricted to what .npy headers can hold.
struct Literal {
  enum class Kind { string, integer, boolean, none, sequence, dict };
  Kind kind = Kind::none;
  std::string text;            // string
  std::int64_t integer = 0;    // integer
  bool boolean = false;        // boolean
  std::vector<Literal> items;  // sequence elements; for a dict, keys and values alternate
  bool is_tuple = false;       // sequence: (...) rather than [...]
};

std::string_view kind_name(const Literal& v) {
  switch (v.kind) {
    case Literal::Kind::string:
      return "a string";
    case Literal::Kind::integer:
      return "an integer";
    case Literal::Kind::boolean:
      return "a bool";
    case Literal::Kind::none:
      return "None";
    case Literal::Kind::sequence:
      return v.is_tuple ? "a tuple" : "a list";
    case Literal::Kind::dict:
      return "a dict";
  }
  return "?";
}

// Recursive-descent parser for the subset of Python literals NumPy writes: dicts, tuples,
// lists, strings, integers, True/False/None. Nesting is capped so a crafted header cannot
// exhaust the stack.
class LiteralParser {
 public:
  LiteralParser(std::string_view text, const fs::path& path) : text_(text), path_(path) {}

  Literal parse() {
    Literal value = parse_value(0);
    skip_space();
    if (pos_ != text_.size()) fail("unexpected text after the header dict");
    return value;
  }

 private:
  [[noreturn]] void fail(std::string_view rule) const {
    const std::string_view near = text_.substr(pos_, 20);
    fail_input("read NPY '{}': header character {} ('{}'): {}", path_.string(), pos_ + 1,
               escaped(near), rule);
  }

  void skip_space() {
    while (pos_ < text_.size() &&
           std::string_view(" \t\r\n").find(text_[pos_]) != std::string_view::npos)
      ++pos_;
  }
  bool consume(char c) {
    skip_space();
    if (pos_ < text_.size() && text_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }

  Literal parse_value(int depth) {
    if (depth > kMaxNesting) fail("the header nests too deeply");
    skip_space();
    if (pos_ == text_.size()) fail("the header ends where a value was expected");
    const char c = text_[pos_];
    if (c == '{') return parse_dict(depth);
    if (c == '(' || c == '[') return parse_sequence(depth);
    if (c == '\'' || c == '"') return parse_string();
    if (c == '-' || c == '+' || (c >= '0' && c <= '9')) return parse_integer();
    return parse_name();
  }

  Literal parse_dict(int depth) {
    ++pos_;  // '{'
    Literal dict;
    dict.kind = Literal::Kind::dict;
    while (!consume('}')) {
      Literal key = parse_value(depth + 1);
      if (key.kind != Literal::Kind::string) fail("dict keys must be strings");
      if (!consume(':')) fail("expected ':' after a dict key");
      dict.items.push_back(std::move(key));
      dict.items.push_back(parse_value(depth + 1));
      if (!consume(',')) {
        if (!consume('}')) fail("expected ',' or '}' in the dict");
        break;
      }
    }
    return dict;
  }

  // "(3,)" is a tuple, "(3)" just the parenthesised integer, as in Python.
  Literal parse_sequence(int depth) {
    const char close = text_[pos_] == '(' ? ')' : ']';
    Literal seq;
    seq.kind = Literal::Kind::sequence;
    seq.is_tuple = close == ')';
    ++pos_;
    bool saw_comma = false;
    while (!consume(close)) {
      seq.items.push_back(parse_value(depth + 1));
      if (!consume(',')) {
        if (!consume(close)) fail(close == ')' ? "expected ',' or ')'" : "expected ',' or ']'");
        break;
      }
      saw_comma = true;
    }
    if (seq.is_tuple && seq.items.size() == 1 && !saw_comma) return std::move(seq.items[0]);
    return seq;
  }

  // Escapes keep the escaped character as is: no header value NumPy writes needs more.
  Literal parse_string() {
    const char quote = text_[pos_++];
    Literal s;
    s.kind = Literal::Kind::string;
    while (pos_ < text_.size() && text_[pos_] != quote) {
      if (text_[pos_] == '\\') ++pos_;
      if (pos_ < text_.size()) s.text += text_[pos_++];
    }
    if (pos_ == text_.size()) fail("unterminated string");
    ++pos_;  // closing quote
    return s;
  }

  Literal parse_integer() {
    const bool negative = text_[pos_] == '-';
    if (text_[pos_] == '-' || text_[pos_] == '+') ++pos_;
    if (pos_ == text_.size() || text_[pos_] < '0' || text_[pos_] > '9') fail("expected a digit");
    // Accumulate negatively so INT64_MIN parses and overflow is one check.
    std::int64_t value = 0;
    while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') {
      if (__builtin_mul_overflow(value, 10, &value) ||
          __builtin_sub_overflow(value, text_[pos_] - '0', &value))
        fail("integer does not fit in 64 bits");
      ++pos_;
    }
    if (!negative && __builtin_mul_overflow(value, -1, &value))
      fail("integer does not fit in 64 bits");
    // Python 2 NumPy wrote long integers as "3L".
    if (pos_ < text_.size() && (text_[pos_] == 'L' || text_[pos_] == 'l')) ++pos_;
    Literal i;
    i.kind = Literal::Kind::integer;
    i.integer = value;
    return i;
  }

  Literal parse_name() {
    const std::size_t start = pos_;
    while (pos_ < text_.size() && std::isalpha(static_cast<unsigned char>(text_[pos_]))) ++pos_;
    const std::string_view name = text_.substr(start, pos_ - start);
    Literal v;
    if (name == "True" || name == "False") {
      v.kind = Literal::Kind::boolean;
      v.boolean = name == "True";
    } else if (name != "None") {
      pos_ = start;
      fail("expected a dict, tuple, list, string, integer, True, False or None");
    }
    return v;
  }

  std::string_view text_;
  const fs::path& path_;
  std::size_t pos_ = 0;
};

struct DescrEntry {
  std::string_view code;  // type character and size, after the byte-order character
  DType dtype;
};
constexpr std::array<DescrEntry, 7> kDescrs = {{{"f4", DType::f32},
                                                {"f8", DType::f64},
                                                {"u1", DType::u8},
                                                {"i1", DType::i8},
                                                {"i4", DType::i32},
                                                {"i8", DType::i64},
                                                {"b1", DType::boolean}}};

DType parse_descr(const Literal& descr, const fs::path& path) {
  if (descr.kind == Literal::Kind::sequence)
    fail_unsupported(
        "read NPY '{}': descr is a list: structured arrays are not supported; save a plain "
        "numeric array",
        path.string());
  if (descr.kind != Literal::Kind::string)
    fail_input("read NPY '{}': descr is {}: must be a dtype string such as '<f4'", path.string(),
               kind_name(descr));
  const std::string_view text = descr.text;
  const auto* entry = std::find_if(kDescrs.begin(), kDescrs.end(), [&](const DescrEntry& e) {
    return text.size() == 3 && text.substr(1) == e.code;
  });
  if (entry == kDescrs.end())
    fail_unsupported(
        "read NPY '{}': descr '{}': bitplan reads float32, float64, uint8, int8, int32, int64 "
        "and bool arrays ('<f4', '<f8', '|u1', '|i1', '<i4', '<i8', '|b1')",
        path.string(), escaped(text));
  const char order = text[0];
  if (order == '>')
    fail_unsupported(
        "read NPY '{}': descr '{}' is big-endian: only little-endian data is supported; save "
        "a.astype(a.dtype.newbyteorder('<'))",
        path.string(), escaped(text));
  if (order != '<' && order != '|')
    fail_input("read NPY '{}': descr '{}': the byte order must be '<' or '|'", path.string(),
               escaped(text));
  if (order == '|' && dtype_size(entry->dtype) != 1)
    fail_input("read NPY '{}': descr '{}': byte order '|' is only valid for 1-byte types",
               path.string(), escaped(text));
  return entry->dtype;
}

struct NpyHeader {
  DType dtype = DType::f32;
  Dims shape;
};

NpyHeader parse_header(std::string_view text, const fs::path& path) {
  const Literal dict = LiteralParser(text, path).parse();
  if (dict.kind != Literal::Kind::dict)
    fail_input("read NPY '{}': the header is {}: must be a dict", path.string(), kind_name(dict));
  const Literal* descr = nullptr;
  const Literal* fortran_order = nullptr;
  const Literal* shape = nullptr;
  for (std::size_t i = 0; i < dict.items.size(); i += 2) {
    const std::string& key = dict.items[i].text;
    const Literal** slot = key == "descr"           ? &descr
                           : key == "fortran_order" ? &fortran_order
                           : key == "shape"         ? &shape
                                                    : nullptr;
    if (!slot)
      fail_input("read NPY '{}': header key '{}': the keys must be descr, fortran_order, shape",
                 path.string(), escaped(key));
    if (*slot)
      fail_input("read NPY '{}': header key '{}' appears twice", path.string(), escaped(key));
    *slot = &dict.items[i + 1];
  }
  for (auto [value, key] : {std::pair{descr, "descr"}, std::pair{fortran_order, "fortran_order"},
                            std::pair{shape, "shape"}})
    if (!value)
      fail_input(
          "read NPY '{}': the header has no '{}': descr, fortran_order and shape are "
          "required",
          path.string(), key);

  NpyHeader header;
  header.dtype = parse_descr(*descr, path);
  if (fortran_order->kind != Literal::Kind::boolean)
    fail_input("read NPY '{}': fortran_order is {}: must be True or False", path.string(),
               kind_name(*fortran_order));
  if (fortran_order->boolean)
    fail_unsupported(
        "read NPY '{}': fortran_order True: only C-order arrays are supported; save "
        "np.ascontiguousarray(a)",
        path.string());
  if (shape->kind != Literal::Kind::sequence || !shape->is_tuple)
    fail_input("read NPY '{}': shape is {}: must be a tuple of integers", path.string(),
               kind_name(*shape));
  for (const Literal& dim : shape->items) {
    if (dim.kind != Literal::Kind::integer || dim.integer < 0)
      fail_input("read NPY '{}': shape has {}: dimensions must be non-negative integers",
                 path.string(),
                 dim.kind == Literal::Kind::integer ? std::to_string(dim.integer)
                                                    : std::string(kind_name(dim)));
    header.shape.push_back(dim.integer);
  }
  return header;
}

std::uint32_t read_le(const unsigned char* p, std::size_t bytes) {
  std::uint32_t value = 0;
  for (std::size_t i = bytes; i-- > 0;) value = value << 8 | p[i];
  return value;
}

std::string_view descr_of(DType dtype) {
  switch (dtype) {
    case DType::f32:
      return "<f4";
    case DType::f64:
      return "<f8";
    case DType::i64:
      return "<i8";
    case DType::i32:
      return "<i4";
    case DType::i8:
      return "|i1";
    case DType::u8:
      return "|u1";
    case DType::boolean:
      return "|b1";
  }
  return "?";
}

}  // namespace

Tensor read_npy(const fs::path& path) {
  InputFile file(path, "NPY file");
  std::array<unsigned char, 12> preamble{};
  if (file.size() < 10)
    fail_input("read NPY '{}': {} bytes: too short for the 10-byte preamble (truncated file?)",
               path.string(), file.size());
  file.read(preamble.data(), 8);
  if (std::memcmp(preamble.data(), kMagic.data(), kMagic.size()) != 0)
    fail_input("read NPY '{}': magic bytes: a .npy file starts with \"\\x93NUMPY\"", path.string());
  const int major = preamble[6];
  const int minor = preamble[7];
  if (major < 1 || major > 3 || minor != 0)
    fail_unsupported("read NPY '{}': format version {}.{}: bitplan reads 1.0, 2.0 and 3.0",
                     path.string(), major, minor);
  // Version 1.0 stores the header length in 2 bytes, later versions in 4.
  const std::size_t length_bytes = major == 1 ? 2 : 4;
  if (file.remaining() < length_bytes)
    fail_input("read NPY '{}': {} bytes: too short for the header length (truncated file?)",
               path.string(), file.size());
  file.read(preamble.data() + 8, length_bytes);
  const std::uint32_t header_bytes = read_le(preamble.data() + 8, length_bytes);
  if (header_bytes > file.remaining())
    fail_input(
        "read NPY '{}': header length {}: runs past the end of the file, which has {} bytes "
        "after the preamble (truncated file?)",
        path.string(), header_bytes, file.remaining());
  if (header_bytes > kMaxNpyHeaderBytes)
    fail_input("read NPY '{}': header length {}: exceeds the limit of {} bytes", path.string(),
               header_bytes, kMaxNpyHeaderBytes);
  std::string text(header_bytes, '\0');
  file.read(text.data(), text.size());
  const NpyHeader header = parse_header(text, path);

  // Checked on the non-zero dims too, so a zero dim cannot hide an overflowing shape that
  // later code (strides, sample sizes) would multiply.
  const auto count = checked_product(header.shape);
  if (!count)
    fail_input("read NPY '{}': shape {}: the product of the non-zero dimensions overflows 64 bits",
               path.string(), to_string(header.shape));
  const auto data_bytes =
      checked_mul(static_cast<std::uint64_t>(*count), std::uint64_t{dtype_size(header.dtype)});
  if (!data_bytes)
    fail_input("read NPY '{}': shape {} of {}: the data size overflows 64 bits", path.string(),
               to_string(header.shape), dtype_name(header.dtype));
  const std::uint64_t bytes = *data_bytes;
  if (bytes != file.remaining())
    fail_input(
        "read NPY '{}': shape {} of {} needs {} data bytes, but the file has {}: the header "
        "does not match the data (truncated file, or several arrays in one file?)",
        path.string(), to_string(header.shape), dtype_name(header.dtype), bytes, file.remaining());

  Tensor tensor(header.dtype, header.shape);
  file.read(tensor.raw(), bytes);
  if (header.dtype == DType::boolean) {
    // A bool holding anything but 0 or 1 is undefined behaviour, so such bytes are refused.
    const auto* p = static_cast<const unsigned char*>(tensor.raw());
    const auto* bad = std::find_if(p, p + bytes, [](unsigned char b) { return b > 1; });
    if (bad != p + bytes)
      fail_input("read NPY '{}': bool element {} is {}: bool values must be 0 or 1", path.string(),
                 bad - p, *bad);
  }
  return tensor;
}

void write_npy(const fs::path& path, const Tensor& tensor) {
  std::string shape = fmt::format("{}", fmt::join(tensor.dims(), ", "));
  if (tensor.rank() == 1) shape += ',';  // Python's one-element tuple is "(3,)"
  std::string header = fmt::format("{{'descr': '{}', 'fortran_order': False, 'shape': ({}), }}",
                                   descr_of(tensor.dtype()), shape);

  // The data starts 64-byte aligned (as NumPy writes it), after the preamble, the header
  // and its padding of spaces and a final newline.
  const bool v1 = header.size() + 64 <= 0xffff;  // the padding adds at most 64 bytes
  const std::size_t preamble = v1 ? 10 : 12;
  header.append(63 - (preamble + header.size()) % 64, ' ');
  header += '\n';

  std::string out(kMagic);
  out += static_cast<char>(v1 ? 1 : 2);
  out += '\0';
  for (std::size_t i = 0; i < preamble - 8; ++i)
    out += static_cast<char>((header.size() >> (8 * i)) & 0xff);
  out += header;
  out.append(static_cast<const char*>(tensor.raw()), tensor.nbytes());
  write_file_atomic(path, out);
}

}  // namespace bitplan
