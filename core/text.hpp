// Text for machine-readable outputs (JSON, CSV, HTML). Names that reach them come from
// users' files: ONNX node and tensor names, image-folder class names, file paths; none is
// promised to be UTF-8. Every writer goes through these helpers, so a stray byte becomes
// U+FFFD (the Unicode replacement character) instead of an invalid document or an error.
#pragma once

#include <string>
#include <string_view>

namespace bitplan {

// `text` with each byte that does not start or continue a valid UTF-8 sequence (overlong
// forms, surrogates and code points above U+10FFFF included) replaced by U+FFFD.
std::string valid_utf8(std::string_view text);

// A text field of a CSV row (RFC 4180): valid UTF-8 in double quotes, each quote inside
// doubled, so commas, quotes and line breaks in names cannot shift the columns.
std::string csv_field(std::string_view text);

// Text for HTML element content and attribute values: valid UTF-8, with & < > " ' escaped.
std::string html_text(std::string_view text);

// nlohmann::json / ordered_json serialised with invalid UTF-8 in strings replaced by U+FFFD
// (the plain dump() throws a type_error on them). `indent` < 0 gives one line.
template <typename Json>
std::string json_text(const Json& document, int indent = -1) {
  return document.dump(indent, ' ', false, Json::error_handler_t::replace);
}

}  // namespace bitplan
