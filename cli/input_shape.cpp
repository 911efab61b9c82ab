#include "cli/input_shape.hpp"

#include <charconv>

#include "cli/commands.hpp"

namespace bitplan {

std::vector<InputShape> parse_input_shapes(const std::vector<std::string>& texts,
                                           const char* flag) {
  std::vector<InputShape> shapes;
  for (const std::string& text : texts) {
    // Dims never hold '=', names may (ONNX allows any string): split at the last one.
    const std::size_t eq = text.rfind('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == text.size())
      fail(ErrorKind::usage,
           "{} '{}': expected NAME=D0,D1,... (e.g. images=N,3,640,640; N = the batch)", flag, text);
    InputShape shape{text.substr(0, eq), {}};
    const std::string dims = text.substr(eq + 1);
    if (dims.front() == ',' || dims.back() == ',' || dims.find(",,") != std::string::npos)
      fail(ErrorKind::usage, "{} '{}': a dimension is empty (give e.g. {}=N,3,640,640)", flag, text,
           shape.name);
    std::int64_t elements = 1;  // per batch item; bounded so that no size computed later overflows
    for (const std::string& item : split_list(dims)) {
      if (item == "N" && shape.dims.empty()) {
        shape.dims.push_back(InputShape::kBatchAxis);
        continue;
      }
      std::int64_t v = 0;
      const auto [end, ec] = std::from_chars(item.data(), item.data() + item.size(), v);
      if (ec != std::errc() || end != item.data() + item.size() || v < 1 || v > (1 << 24))
        fail(ErrorKind::usage, "{} '{}': dimension '{}' is not {}an integer in [1, 16777216]", flag,
             text, item, shape.dims.empty() ? "N (the batch) or " : "");
      shape.dims.push_back(v);
      elements *= v;
      if (elements > (std::int64_t{1} << 32))
        fail(ErrorKind::usage, "{} '{}': more than 2^32 elements per batch item", flag, text);
    }
    shapes.push_back(std::move(shape));
  }
  return shapes;
}

}  // namespace bitplan
